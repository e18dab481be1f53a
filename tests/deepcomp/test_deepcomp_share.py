"""k-means weight sharing: each initialisation on a known bimodal distribution, and centroid gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from neon_ray.deepcomp.prune import prunable_weights, prune_step
from neon_ray.deepcomp.share import (
    finetune_centroids,
    init_centroids,
    kmeans_1d,
    share_layer,
    share_weights,
    shared_forward,
)
from neon_ray.errors import ConfigError
from neon_ray.nets.spec import ArchSpec, build_mlp
from neon_ray.nets.training import TrainConfig


@pytest.fixture
def bimodal() -> np.ndarray:
    """Two tight modes at -1 (600 values) and +1 (400 values), plus one rare large weight at 3."""
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(-1, 0.05, 600), rng.normal(1, 0.05, 400), [3.0]])


def near_modes(centroids: np.ndarray) -> int:
    return int(np.sum(np.minimum(np.abs(centroids - 1), np.abs(centroids + 1)) < 0.2))


def test_linear_init_spans_min_to_max_evenly(bimodal):
    c = init_centroids(bimodal, 9, "linear", np.random.default_rng(0))
    assert c[0] == bimodal.min() and c[-1] == bimodal.max()
    assert np.allclose(np.diff(c), (bimodal.max() - bimodal.min()) / 8)


def test_density_init_concentrates_at_modes(bimodal):
    rng = np.random.default_rng(0)
    density = init_centroids(bimodal, 16, "density", rng)
    linear = init_centroids(bimodal, 16, "linear", rng)
    assert near_modes(density) == 16  # every CDF quantile lies inside a mode
    assert near_modes(linear) < 8
    # 60% of the mass is at -1, so ~60% of density's centroids are there.
    assert np.sum(density < 0) in (9, 10)
    assert np.all(np.diff(density) >= 0)


def test_forgy_init_picks_distinct_existing_weights(bimodal):
    c = init_centroids(bimodal, 12, "forgy", np.random.default_rng(3))
    assert set(c.tolist()) <= set(bimodal.tolist()) and len(set(c.tolist())) == 12
    assert np.all(np.diff(c) > 0)
    assert not np.array_equal(c, init_centroids(bimodal, 12, "forgy", np.random.default_rng(4)))


@pytest.mark.parametrize("init", ["linear", "density", "forgy"])
def test_kmeans_recovers_the_two_modes(init):
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(-1, 0.05, 600), rng.normal(1, 0.05, 400)])
    centroids, labels = kmeans_1d(values, 2, init, seed=0)
    assert np.allclose(centroids, [values[:600].mean(), values[600:].mean()])
    assert labels.tolist() == [0] * 600 + [1] * 400


@pytest.mark.parametrize("init", ["linear", "density", "forgy"])
def test_kmeans_reaches_a_lloyd_fixed_point(init, bimodal):
    centroids, labels = kmeans_1d(bimodal, 8, init, seed=0)
    nearest = np.abs(bimodal[:, None] - centroids[None, :]).argmin(1)
    assert np.array_equal(labels, nearest)
    for j in np.unique(labels):
        assert np.isclose(centroids[j], bimodal[labels == j].mean())


def test_linear_init_keeps_the_rare_large_weight(bimodal):
    for init, keeps in (("linear", True), ("density", False)):
        centroids, _ = kmeans_1d(bimodal, 4, init)
        assert np.isclose(centroids, 3.0).any() == keeps


def test_kmeans_with_fewer_values_than_clusters():
    centroids, labels = kmeans_1d(np.array([0.5, -0.25]), 8)
    assert centroids.tolist() == [-0.25, 0.5] and labels.tolist() == [1, 0]
    with pytest.raises(ConfigError, match="initialisation"):
        kmeans_1d(np.ones(4), 2, "kmeans++")


def test_share_layer_uses_at_most_2_pow_bits_values_and_keeps_zeros():
    torch.manual_seed(0)
    w = torch.randn(40, 30)
    mask = w.abs() > 0.5
    sw = share_layer(w * mask, mask, bits=3, init="linear", seed=0)
    dense = sw.weight()
    assert sw.codebook.numel() == 8
    assert torch.all(dense[~mask] == 0)
    assert len(torch.unique(dense[mask])) <= 8
    nearest = sw.codebook[(w[mask][:, None] - sw.codebook[None, :]).abs().argmin(1)]
    assert torch.equal(dense[mask], nearest)  # every survivor takes its nearest centroid


def test_share_layer_drops_empty_clusters(bimodal):
    # Linear init over the bimodal values leaves the centroids between the modes without members.
    w = torch.from_numpy(bimodal).float().reshape(1, -1)
    sw = share_layer(w, torch.ones_like(w, dtype=torch.bool), bits=4, init="linear", seed=0)
    assert 3 <= sw.codebook.numel() < 16
    assert torch.equal(torch.unique(sw.index), torch.arange(sw.codebook.numel()))


def small_mlp_and_data():
    spec = ArchSpec(6, 3, (16, 8), ("relu", "tanh"), ("batchnorm", "none"))
    model = build_mlp(spec, seed=0)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(256, 6, generator=g)
    y = (X[:, :3] * torch.tensor([1.0, -2.0, 0.5])).argmax(1)
    return model, X, y


def test_centroid_gradient_is_the_sum_of_member_gradients():
    model, X, y = small_mlp_and_data()
    masks = prune_step(model, None, 0.5)
    shared = share_weights(model, masks, {n: 2 for n in masks}, "linear", 0)
    # Reference: ordinary gradients of the dense (shared-valued) weights, summed per cluster.
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(X), y).backward()
    weights = prunable_weights(model)
    codebooks = [sw.codebook.clone().requires_grad_(True) for sw in shared.values()]
    torch.nn.functional.cross_entropy(shared_forward(model, shared, codebooks, X), y).backward()
    for (name, sw), cb in zip(shared.items(), codebooks):
        grad = weights[name].grad
        expected = [grad[sw.mask & (sw.index == j)].sum() for j in range(len(cb))]
        assert torch.allclose(cb.grad, torch.stack(expected), atol=1e-6), name


def test_finetuning_moves_centroids_and_keeps_structure():
    model, X, y = small_mlp_and_data()
    masks = prune_step(model, None, 0.8)
    shared = share_weights(model, masks, {n: 2 for n in masks}, "density", 0)
    before = {n: sw.codebook.clone() for n, sw in shared.items()}
    finetune_centroids(model, shared, (X, y), (X, y), TrainConfig(max_epochs=5, lr=1e-2, batch_size=32, patience=3), seed=0)
    weights = prunable_weights(model)
    assert any(not torch.equal(before[n], sw.codebook) for n, sw in shared.items())
    for name, sw in shared.items():
        assert torch.equal(weights[name].detach(), sw.weight())  # the model holds exactly codebook[index]
        assert torch.all(weights[name][~masks[name]] == 0)
