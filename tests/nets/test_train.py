import pytest
import torch

from neon_ray.errors import ConfigError
from neon_ray.nets.spec import ArchSpec, build_mlp
from neon_ray.nets.training import TrainConfig, evaluate, fit


def data(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 4, generator=g)
    return X, (X[:, 0] + X[:, 1] > 1).long()


def trained(rng_noise: int):
    torch.rand(rng_noise)  # whatever ran before in this process must not matter
    model = build_mlp(ArchSpec(4, 2, (16,), ("relu",), ("dropout",)), seed=3)
    fit(model, data(), data(60, 1), TrainConfig(max_epochs=4, patience=10, batch_size=16), seed=5)
    return model


def test_training_depends_on_the_seed_only_not_on_global_rng_state():
    a, b = trained(1), trained(1000)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_best_validation_weights_are_restored_and_model_left_in_eval():
    model = build_mlp(ArchSpec(4, 2, (16,), ("relu",), ("none",)), seed=0)
    before, _ = evaluate(model, *data(60, 1))
    result = fit(model, data(), data(60, 1), TrainConfig(max_epochs=30, patience=3), seed=0)
    after, _ = evaluate(model, *data(60, 1))
    assert after == result.best_val_loss and after <= before
    assert not model.training


def test_fixed_budget_sgd_with_cosine_schedule_keeps_the_final_weights():
    model = build_mlp(ArchSpec(4, 2, (16,), ("relu",), ("none",)), seed=0)
    cfg = TrainConfig(max_epochs=5, batch_size=16, lr=0.1, patience=None, optimizer="sgd", momentum=0.9, lr_schedule="cosine")
    result = fit(model, data(), data(60, 1), cfg, seed=0)
    assert result.epochs == result.best_epoch == 5
    assert evaluate(model, *data(60, 1))[0] == result.best_val_loss


def test_after_step_runs_after_every_optimiser_step():
    model = build_mlp(ArchSpec(4, 2, (16,), ("relu",), ("batchnorm",)), seed=0)
    steps = []
    # 120 rows in batches of 17: 7 full batches and a last one of 1 row, which is skipped
    fit(model, data(), data(60, 1), TrainConfig(max_epochs=2, batch_size=17, patience=None), after_step=lambda: steps.append(1))
    assert len(steps) == 2 * 7


@pytest.mark.parametrize("kw, field", [
    ({"optimizer": "rmsprop"}, "optimizer"), ({"lr_schedule": "step"}, "lr_schedule"),
    ({"momentum": 1.0}, "momentum"), ({"momentum": -0.1}, "momentum"), ({"patience": 0}, "patience"),
])
def test_config_refuses_bad_optimiser_settings(kw, field):
    with pytest.raises(ConfigError, match=f"TrainConfig.{field}"):
        TrainConfig(**kw)


def test_stop_reasons_and_plateau_schedule():
    fixed = fit(build_mlp(ArchSpec(4, 2, (16,), ("relu",), ("none",)), seed=0), data(), data(60, 1),
                TrainConfig(max_epochs=3, patience=None), seed=0)
    assert fixed.stop_reason == "max_epochs"
    # lr 1.0 overshoots at once, so val loss plateaus: constant stops after `patience` epochs,
    # plateau halves the rate `lr_drops` times first (each cut restarts the patience count)
    noisy = dict(max_epochs=200, patience=2, lr=1.0, batch_size=16)
    constant = fit(build_mlp(ArchSpec(4, 2, (16,), ("relu",), ("none",)), seed=0), data(), data(60, 1),
                   TrainConfig(**noisy), seed=0)
    plateau = fit(build_mlp(ArchSpec(4, 2, (16,), ("relu",), ("none",)), seed=0), data(), data(60, 1),
                  TrainConfig(**noisy, lr_schedule="plateau", lr_drops=2), seed=0)
    assert constant.stop_reason == plateau.stop_reason == "patience"
    assert constant.epochs == constant.best_epoch + 2
    assert plateau.epochs >= constant.epochs + 2 * 2


@pytest.mark.parametrize("kw, field", [
    ({"lr_schedule": "plateau", "patience": None}, "lr_schedule"), ({"lr_factor": 1.0}, "lr_factor"),
    ({"lr_factor": 0.0}, "lr_factor"), ({"lr_drops": -1}, "lr_drops"), ({"lr_drops": 1.5}, "lr_drops"),
])
def test_config_refuses_bad_plateau_settings(kw, field):
    with pytest.raises(ConfigError, match=f"TrainConfig.{field}"):
        TrainConfig(**kw)


def test_frozen_modules_stay_in_eval_mode_while_the_rest_trains():
    model = build_mlp(ArchSpec(4, 2, (16, 8), ("relu", "relu"), ("dropout", "batchnorm")), seed=0)
    bn = model.blocks[1].pre
    stats = (bn.running_mean.clone(), bn.running_var.clone(), bn.weight.detach().clone())
    fit(model, data(), data(60, 1), TrainConfig(max_epochs=3, patience=None, batch_size=16),
        frozen=(torch.nn.BatchNorm1d, torch.nn.Dropout))
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
    assert not torch.equal(bn.weight, stats[2])  # the affine weights still train


def test_settle_phase_follows_the_main_training_and_never_worsens_val():
    spec = ArchSpec(4, 2, (16, 16), ("relu", "relu"), ("dropout", "batchnorm"))
    main = dict(max_epochs=20, patience=3, batch_size=16)
    plain = fit(build_mlp(spec, seed=0), data(), data(60, 1), TrainConfig(**main), seed=0)
    model = build_mlp(spec, seed=0)
    settled = fit(model, data(), data(60, 1), TrainConfig(**main, settle_epochs=20), seed=0)
    assert settled.epochs == plain.epochs and settled.best_epoch == plain.best_epoch  # same main phase
    assert 1 <= settled.settle_epochs <= 20 and plain.settle_epochs == 0
    assert settled.best_val_loss <= plain.best_val_loss == pytest.approx(plain.best_val_loss)
    assert evaluate(model, *data(60, 1))[0] == settled.best_val_loss and not model.training
    # with neither BatchNorm nor Dropout, eval mode is train mode: no settle phase
    none = ArchSpec(4, 2, (16,), ("relu",), ("none",))
    assert fit(build_mlp(none, seed=0), data(), data(60, 1), TrainConfig(**main, settle_epochs=20)).settle_epochs == 0


def test_settle_phase_needs_early_stopping():
    with pytest.raises(ConfigError, match="TrainConfig.settle_epochs 5 needs a patience"):
        TrainConfig(patience=None, settle_epochs=5)
    with pytest.raises(ConfigError, match="TrainConfig.settle_epochs"):
        TrainConfig(settle_epochs=-1)


def test_precision_is_checked():
    assert TrainConfig().precision == "fp32" and TrainConfig(precision="bf16").precision == "bf16"
    with pytest.raises(ConfigError, match="TrainConfig.precision must be one of"):
        TrainConfig(precision="auto")  # resolved by the caller (FinetuneConfig), never by fit
