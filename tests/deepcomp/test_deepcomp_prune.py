"""Magnitude pruning: the q*std rule on golden values, mask monotonicity, masks through retraining."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from neon_ray.deepcomp.lenet import LeNet5, lenet_300_100_spec
from neon_ray.deepcomp.prune import (
    apply_masks,
    layer_kind,
    magnitude_prune,
    prunable_weights,
    prune_step,
    retrain_masked,
    threshold_mask,
)
from neon_ray.errors import ConfigError
from neon_ray.nets.spec import ArchSpec, build_mlp
from neon_ray.nets.training import TrainConfig, evaluate, fit


def test_threshold_uses_population_std_not_rms():
    # mean 4.5, population std sqrt(5.25) = 2.2913: q=1 drops 1 and 2 only (RMS 5.05 would drop 1..5).
    w = torch.arange(1.0, 9.0).reshape(2, 4)
    assert threshold_mask(w, 1.0).tolist() == [[False, False, True, True], [True, True, True, True]]


def test_threshold_golden_around_the_cut():
    # std of [1,-1,1,-1,3,-3,0,0] is sqrt(22/8) = 1.6583: 0.6*std = 0.995 keeps the ones, 0.61*std = 1.0116 does not.
    w = torch.tensor([[1.0, -1.0, 1.0, -1.0], [3.0, -3.0, 0.0, 0.0]])
    assert threshold_mask(w, 0.6).tolist() == [[True] * 4, [True, True, False, False]]
    assert threshold_mask(w, 0.61).tolist() == [[False] * 4, [True, True, False, False]]
    assert threshold_mask(w, 0.0).all()
    with pytest.raises(ConfigError, match="q must be >= 0"):
        threshold_mask(w, -1.0)
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")


def test_masks_only_shrink_across_steps():
    model = build_mlp(ArchSpec(10, 3, (20,), ("relu",), ("none",)), seed=0)
    first = prune_step(model, None, 1.0)
    second = prune_step(model, first, 0.1)  # a small q alone would keep almost everything
    for name in first:
        assert torch.equal(second[name], first[name])
    for name, w in prunable_weights(model).items():
        assert torch.all(w[~second[name]] == 0)


def test_q_scale_prunes_named_layers_less_and_rejects_unknown_names():
    model = build_mlp(ArchSpec(10, 3, (20,), ("relu",), ("none",)), seed=0)
    masks = prune_step(model, None, 1.0, {"head.weight": 0.0})
    assert masks["head.weight"].all() and not masks["blocks.0.linear.weight"].all()
    with pytest.raises(ConfigError, match="unknown weights"):
        prune_step(model, None, 1.0, {"head.bias": 0.5})


def test_prunable_weights_and_kinds():
    assert list(prunable_weights(build_mlp(lenet_300_100_spec()))) == ["blocks.0.linear.weight", "blocks.1.linear.weight", "head.weight"]
    lenet = LeNet5()
    assert [layer_kind(lenet, n) for n in prunable_weights(lenet)] == ["conv", "conv", "fc", "fc"]


def toy_data(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 12, generator=g)
    y = (X[:, :4] @ torch.tensor([[1.0, -1.0, 0.0], [0.5, 1.0, -1.0], [0.0, 0.5, 1.0], [-1.0, 0.0, 0.5]])).argmax(1)
    return X, y


@pytest.mark.parametrize("optimizer, lr", [("adam", 1e-2), ("sgd", 5e-2)])
def test_pruned_weights_stay_exactly_zero_through_retraining_with_l2(optimizer, lr):
    model = build_mlp(ArchSpec(12, 3, (32, 16), ("relu", "relu"), ("batchnorm", "dropout")), seed=0)
    X, y = toy_data()
    masks = prune_step(model, None, 0.8)
    before = {n: w.detach().clone() for n, w in prunable_weights(model).items()}
    cfg = TrainConfig(max_epochs=4, lr=lr, batch_size=32, patience=4, optimizer=optimizer)
    result = retrain_masked(model, masks, (X, y), (X, y), cfg, l2=1e-3)
    assert result.best_epoch > 0  # it trained and kept a better state than the start
    for name, w in prunable_weights(model).items():
        assert torch.all(w[~masks[name]] == 0), name
        assert not torch.equal(w[masks[name]], before[name][masks[name]]), name


def test_magnitude_prune_schedule_grows_sparsity_and_keeps_accuracy():
    model = build_mlp(ArchSpec(12, 3, (64,), ("relu",), ("none",)), seed=0)
    X, y = toy_data(1024)
    nn.init.normal_(model.head.weight, std=0.3)
    fit(model, (X, y), (X, y), TrainConfig(max_epochs=15, lr=1e-2, batch_size=64))
    _, acc_dense = evaluate(model, X, y)
    masks = magnitude_prune(model, (X, y), (X, y), (0.5, 1.0), TrainConfig(max_epochs=3, lr=5e-3, batch_size=64, patience=3))
    kept = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    _, acc = evaluate(model, X, y)
    assert kept < 0.5
    assert acc > acc_dense - 0.05


def test_apply_masks_zeroes_in_place():
    model = build_mlp(ArchSpec(4, 2, (3,), ("relu",), ("none",)), seed=0)
    masks = {n: torch.zeros_like(w, dtype=torch.bool) for n, w in prunable_weights(model).items()}
    apply_masks(model, masks)
    assert all(torch.count_nonzero(w) == 0 for w in prunable_weights(model).values())


def _retrained_with_dropout(rng_noise: int) -> dict:
    torch.rand(rng_noise)  # whatever ran before in this process (another Ray task) must not matter
    model = build_mlp(ArchSpec(12, 3, (32,), ("relu",), ("dropout",)), seed=0)
    X, y = toy_data()
    masks = prune_step(model, None, 0.8)
    retrain_masked(model, masks, (X, y), (X, y), TrainConfig(max_epochs=2, batch_size=32, patience=None), seed=3)
    return model.state_dict()


def test_masked_retraining_depends_on_the_seed_only_not_on_global_rng_state():
    a, b = _retrained_with_dropout(1), _retrained_with_dropout(1000)
    assert all(torch.equal(a[k], b[k]) for k in a)
