"""Fine-tuning: only the affected tensors move, prefix caching is exact, runs are reproducible."""
from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from neon_ray.data.datasets import load_dataset
from neon_ray.errors import ConfigError
from neon_ray.nets.spec import ArchSpec, build_mlp
from neon_ray.nets.training import evaluate, fit
from neon_ray.nets.metrics import predict
from neon_ray.pruning.finetune import AUTO_BF16_FLOPS, FinetuneConfig, Targets, _Suffix, affected_modules, finetune
from neon_ray.pruning.structured import prune_layer

CFG = FinetuneConfig(max_epochs=3, batch_size=64, patience=3)


@pytest.fixture(scope="module")
def data():
    return load_dataset("sklearn:breast_cancer", seed=0)


def _model(data, pre=("batchnorm", "dropout", "batchnorm", "none"), seed=0):
    spec = ArchSpec(data.n_features, data.n_classes, (16, 12, 10, 8), ("relu", "tanh", "relu", "sigmoid"), pre)
    model = build_mlp(spec, seed=seed)
    fit(model, data.split("train"), data.split("val"), FinetuneConfig(max_epochs=2).train_config(), seed=seed)
    return model


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("layer", [0, 1, 2, 3])
def test_only_affected_tensors_change(data, layer):
    model = prune_layer(_model(data), layer, 0.6)
    before = _state(model)
    finetune(model, layer, data, CFG, seed=1)
    after = model.state_dict()
    out_key = "head" if layer == 3 else f"blocks.{layer + 1}.linear"
    affected = {f"blocks.{layer}.linear.weight", f"blocks.{layer}.linear.bias", f"{out_key}.weight", f"{out_key}.bias"}
    if layer == 1:  # blocks[2].pre is a BatchNorm on layer 1's width: trained with it
        affected |= {f"blocks.2.pre.{n}" for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    for key, value in after.items():
        if key in affected:
            assert not torch.equal(value, before[key]), f"{key} should have been fine-tuned"
        else:
            assert torch.equal(value, before[key]), f"{key} should be bit-identical"
    assert all(p.requires_grad for p in model.parameters())
    assert not model.training


def test_prefix_caching_is_exact(data):
    """Training the suffix on cached prefix outputs equals training the whole network under the same freezing rule."""
    layer = 2
    model = prune_layer(_model(data), layer, 0.7)
    reference = build_mlp(model.spec)
    reference.load_state_dict(model.state_dict())

    result = finetune(model, layer, data, CFG, seed=4)

    trained, dropouts = affected_modules(reference, layer)
    params = [p for m in trained for p in m.parameters()]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        ref_result = fit(_Suffix(reference, 0, trained + dropouts), data.split("train"), data.split("val"), CFG.train_config(), seed=4, params=params)
    assert result.epochs == ref_result.epochs and result.best_epoch == ref_result.best_epoch
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, reference.state_dict()[key], rtol=1e-5, atol=1e-6)


def test_deterministic_under_seed(data):
    base = prune_layer(_model(data), 1, 0.6)
    states = []
    for seed in (7, 7, 8):
        model = build_mlp(base.spec)
        model.load_state_dict(base.state_dict())
        finetune(model, 1, data, CFG, seed=seed)
        states.append(_state(model))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert any(not torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_best_validation_weights_are_kept(data):
    model = prune_layer(_model(data), 0, 0.6)
    loss_before, _ = evaluate(model, *data.split("val"))
    result = finetune(model, 0, data, CFG, seed=0)
    loss_after, acc_after = evaluate(model, *data.split("val"))
    assert loss_after <= loss_before + 1e-6
    assert result.val_rows == len(data.y_val)
    assert result.val_acc == pytest.approx(acc_after)
    assert 1 <= result.epochs <= CFG.max_epochs


def test_scope_all_trains_every_layer(data):
    model = prune_layer(_model(data), 1, 0.6)
    before = _state(model)
    finetune(model, 1, data, FinetuneConfig(scope="all", max_epochs=2, patience=2), seed=0)
    assert not torch.equal(model.state_dict()["blocks.3.linear.weight"], before["blocks.3.linear.weight"])
    assert not torch.equal(model.state_dict()["blocks.0.pre.running_mean"], before["blocks.0.pre.running_mean"])


def test_val_subset_bounds_early_stopping_rows(data):
    model = prune_layer(_model(data), 0, 0.6)
    result = finetune(model, 0, data, FinetuneConfig(max_epochs=1, max_val_rows=20, max_train_rows=64), seed=0)
    assert result.val_rows == 20


def test_bad_config_is_refused(data):
    with pytest.raises(ConfigError, match="scope"):
        FinetuneConfig(scope="everything")
    with pytest.raises(ConfigError, match="max_epochs"):
        FinetuneConfig(max_epochs=0)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['epochs'\]"):
        FinetuneConfig.from_dict({"epochs": 3})
    with pytest.raises(ConfigError, match="out of range"):
        finetune(_model(data), 4, data, CFG)


def test_distillation_fits_the_original_networks_predictions(data):
    original = _model(data, pre=("none", "none", "none", "none"))
    fit(original, (data.X_train, data.y_train), (data.X_val, data.y_val), FinetuneConfig(max_epochs=5).train_config(), seed=0)
    original.eval()
    targets = Targets.of(original, data)
    cfg = FinetuneConfig(max_epochs=8, patience=8, targets="original")
    agree = {}
    for kind, config in (("original", cfg), ("labels", FinetuneConfig(max_epochs=8, patience=8))):
        pruned = prune_layer(original, 1, 0.3)
        finetune(pruned, 1, data, config, seed=0, original=targets)
        agree[kind] = float((predict(pruned, data.X_val) == targets.y_val).float().mean())
    assert agree["original"] >= agree["labels"] - 0.02  # distillation keeps the original's answers at least as well
    with pytest.raises(ConfigError, match="needs the original network's predictions"):
        finetune(prune_layer(original, 1, 0.5), 1, data, cfg, seed=0)
    with pytest.raises(ConfigError, match="targets"):
        FinetuneConfig(targets="teacher")


def test_auto_precision_trains_in_bf16_only_where_it_pays(monkeypatch):
    auto = FinetuneConfig(batch_size=128)
    assert auto.precision == "auto" and FinetuneConfig(precision="fp32").resolved_precision(10**9) == "fp32"
    assert FinetuneConfig(precision="bf16").resolved_precision(1) == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    small, large = 1000, int(AUTO_BF16_FLOPS // 128) + 1
    assert auto.resolved_precision(small) == "fp32" and auto.resolved_precision(large) == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert auto.resolved_precision(large) == "fp32"  # emulated bf16 is slower than fp32
    with pytest.raises(ConfigError, match="FinetuneConfig.precision must be one of"):
        FinetuneConfig(precision="fp16")


def test_bf16_finetune_keeps_fp32_weights_and_is_reproducible(data):
    cfg = FinetuneConfig(max_epochs=3, batch_size=64, patience=3, precision="bf16")
    base = prune_layer(_model(data), 1, 0.6)
    runs = []
    for _ in range(2):
        model = copy.deepcopy(base)
        result = finetune(model, 1, data, cfg, seed=3)
        assert result.precision == "bf16" and result.epochs >= 1
        assert all(p.dtype == torch.float32 for p in model.parameters())
        runs.append(_state(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    fp32 = copy.deepcopy(base)
    finetune(fp32, 1, data, replace(cfg, precision="fp32"), seed=3)
    assert not all(torch.equal(runs[0][k], v) for k, v in fp32.state_dict().items())  # bf16 really ran
    assert abs(evaluate(model, data.X_val, data.y_val)[1] - evaluate(fp32, data.X_val, data.y_val)[1]) < 0.05
