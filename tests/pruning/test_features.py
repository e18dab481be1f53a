"""The observation: fixed length, finite and bounded, NaN-free on dead neurons, about the current network."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from neon_ray.pruning.structured import prune_layer
from neon_ray.pruning.observation import OBS_FEATURES, OBS_NAMES, OBS_SIZE, EpisodeContext, Progress, moments, observe, probe_rows
from neon_ray.nets.metrics import count_params
from neon_ray.nets.spec import ArchSpec, build_mlp


def _setup(hidden=(12, 9, 6), pre=("batchnorm", "dropout", "none"), act=("relu", "tanh", "sigmoid"), tol=5.0):
    model = build_mlp(ArchSpec(8, 3, hidden, act, pre), seed=0).eval()
    probe = torch.rand(64, 8, generator=torch.Generator().manual_seed(0))
    ctx = EpisodeContext(probe, count_params(model), len(hidden), rows=1000, features=8, classes=3, tolerance=tol, loops=4, total_steps=4 * len(hidden))
    return model, ctx


def _obs(model, ctx, layer=0, step=0, loop=0, acc=0.0, width_orig=None):
    width_orig = width_orig or model.spec.hidden[layer]
    return observe(model, layer, ctx, Progress(step, loop, acc, width_orig))


def _get(obs, name):
    return float(obs[OBS_NAMES.index(name)])


def test_every_feature_is_documented_and_the_length_is_fixed():
    assert len(set(OBS_NAMES)) == OBS_SIZE
    assert all(desc for _, desc in OBS_FEATURES)
    model, ctx = _setup()
    for layer in range(3):
        obs = _obs(model, ctx, layer)
        assert obs.shape == (OBS_SIZE,) and obs.dtype == np.float32
    single, ctx1 = _setup(hidden=(5,), pre=("none",), act=("relu",))
    assert _obs(single, ctx1).shape == (OBS_SIZE,)


def test_finite_and_bounded_with_dead_and_constant_neurons():
    model, ctx = _setup()
    with torch.no_grad():
        model.blocks[0].linear.weight.zero_()  # every neuron of layer 0 constant
        model.blocks[0].linear.bias.fill_(-1.0)  # ... and dead under ReLU
        model.blocks[1].linear.weight.fill_(1e6)  # huge weights
    for layer in range(3):
        obs = _obs(model, ctx, layer)
        assert np.isfinite(obs).all()
        assert np.abs(obs).max() <= 10.0
    obs0 = _obs(model, ctx, 0)
    assert _get(obs0, "a_dead") == 1.0
    assert _get(obs0, "w_skew") == 0.0 and _get(obs0, "w_kurtosis") == 0.0
    assert _get(obs0, "a_skew") == 0.0 and _get(obs0, "a_kurtosis") == 0.0


def test_moments_match_their_definitions():
    x = torch.tensor([1.0, 2.0, 3.0, 10.0])
    mean, std, skew, kurt, lo, hi = moments(x)
    d = x.double() - x.double().mean()
    assert mean == pytest.approx(4.0) and std == pytest.approx(d.pow(2).mean().sqrt().item())
    assert skew == pytest.approx((d.pow(3).mean() / d.pow(2).mean() ** 1.5).item())
    assert kurt == pytest.approx((d.pow(4).mean() / d.pow(2).mean() ** 2).item() - 3)
    assert (lo, hi) == (1.0, 10.0)
    assert moments(torch.full((5,), 3.0))[:4] == [3.0, 0.0, 0.0, 0.0]


def test_observation_reflects_the_current_network_after_a_prune():
    model, ctx = _setup()
    before = _obs(model, ctx, 1)
    pruned = prune_layer(model, 1, 0.6)
    after = _obs(pruned, ctx, 1, step=1, width_orig=9)
    assert _get(before, "width_k") == pytest.approx(0.009)
    assert _get(after, "width_k") == pytest.approx(math.ceil(0.6 * 9) / 1000)
    assert _get(after, "width_kept") == pytest.approx(6 / 9)
    assert _get(before, "params_removed") == pytest.approx(0.0)
    expected_removed = 1 - count_params(pruned) / count_params(model)
    assert _get(after, "params_removed") == pytest.approx(expected_removed, rel=1e-5)
    assert expected_removed > 0
    # the neighbours see it too: layer 2's input width and layer 0's output width shrink
    assert _get(_obs(pruned, ctx, 2), "in_k") == pytest.approx(0.006)
    assert _get(_obs(pruned, ctx, 0), "out_k") == pytest.approx(0.006)
    assert not np.array_equal(before[OBS_NAMES.index("a_mean"):], after[OBS_NAMES.index("a_mean"):])


def test_position_kind_task_and_progress_entries():
    model, ctx = _setup(tol=5.0)
    obs = _obs(model, ctx, 2, step=7, loop=2, acc=-0.013)
    assert _get(obs, "layer_position") == 1.0 and _get(obs, "is_last_layer") == 1.0
    assert _get(obs, "pre_in_none") == 1.0 and _get(obs, "pre_out_none") == 1.0 and _get(obs, "act_sigmoid") == 1.0
    obs1 = _obs(model, ctx, 0)
    assert _get(obs1, "pre_in_batchnorm") == 1.0 and _get(obs1, "pre_out_dropout") == 1.0 and _get(obs1, "act_relu") == 1.0
    assert _get(obs, "step_fraction") == pytest.approx(7 / 12)
    assert _get(obs, "loop") == pytest.approx(0.5)
    assert _get(obs, "acc_change") == pytest.approx(-0.013)
    assert _get(obs, "tolerance") == pytest.approx(0.05) and _get(obs, "tolerance_log") == pytest.approx(math.log1p(5))
    assert _get(obs, "data_rows") == pytest.approx(3.0) and _get(obs, "data_classes") == pytest.approx(math.log10(3))


def test_eval_mode_and_model_untouched():
    model, ctx = _setup()
    model.train()
    a, b = _obs(model, ctx, 1), _obs(model, ctx, 1)
    assert np.array_equal(a, b)  # dropout in front of layer 1 stays off
    assert model.training


def test_probe_rows_are_fixed_by_seed():
    X = torch.arange(2000.0).reshape(1000, 2)
    assert torch.equal(probe_rows(X, 100, 3), probe_rows(X, 100, 3))
    assert not torch.equal(probe_rows(X, 100, 3), probe_rows(X, 100, 4))
    assert probe_rows(X[:10], 100, 0).shape == (10, 2)


def test_observe_is_cheap_on_a_wide_layer():
    model = build_mlp(ArchSpec(20, 2, (1000, 800, 600), ("relu",) * 3, ("none", "batchnorm", "dropout")), seed=0).eval()
    probe = torch.rand(512, 20)
    ctx = EpisodeContext(probe, count_params(model), 3, 10000, 20, 2, 1.0, 4, 12)
    _obs(model, ctx, 1)
    t0 = time.perf_counter()
    for layer in range(3):
        _obs(model, ctx, layer)
    assert (time.perf_counter() - t0) / 3 < 0.25  # generous: a step fine-tunes for seconds on such a network
