"""Supervised training: the one training loop (`fit`) and its config, for every network the project trains.

Used for base networks of the zoo (ending with a 'settle' phase in eval mode,
`TrainConfig.settle_epochs`), for the fine-tuning inside each pruning step, for the magnitude
baseline and for both retraining stages of Deep Compression (through the `regulariser` and
`after_step` hooks), and for the dense LeNets of the Deep Compression job (SGD with a cosine
schedule). It is written for speed on CPU: tensors are batched by index (no DataLoader),
evaluation runs in one large batch under no_grad, and the best weights are kept in memory.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import nn

from neon_ray.errors import ConfigError
from neon_ray.nets.checks import MAX_EPOCHS, check_int, check_number

log = logging.getLogger(__name__)

"""Upper bound of TrainConfig.max_epochs and TrainConfig.patience."""
MAX_BATCH_SIZE = 1_000_000
"""Upper bound of TrainConfig.batch_size."""
MAX_LR = 10.0
"""Upper bound of TrainConfig.lr and TrainConfig.weight_decay."""
OPTIMIZERS = ("adam", "sgd")
PRECISIONS = ("fp32", "bf16")
LR_SCHEDULES = ("constant", "cosine", "plateau")
SETTLED: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._BatchNorm, nn.Dropout)
"""Module types the settle phase (`TrainConfig.settle_epochs`) keeps in eval mode."""
STOP_REASONS = ("max_epochs", "patience")
"""Why `fit` stopped: the epoch budget ran out, or `patience` epochs brought no better val loss
(under 'plateau': at the last rate, after `lr_drops` cuts)."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule and stopping budget for `fit`."""

    max_epochs: int = 100
    """Upper bound on passes over the training rows."""
    batch_size: int = 64
    """Mini-batch size."""
    lr: float = 1e-3
    """Learning rate (the peak rate under a schedule)."""
    weight_decay: float = 0.0
    """L2 penalty of the optimiser (coupled weight_decay of Adam or SGD)."""
    patience: int | None = 5
    """Stop after this many epochs without a better validation loss and restore the best weights;
    None trains all `max_epochs` and keeps the final weights (for a fixed budget with a schedule)."""
    max_train_rows: int | None = None
    """Use at most this many training rows per epoch (a fresh random subset each epoch)."""
    optimizer: str = "adam"
    """'adam', or 'sgd' (with Nesterov momentum when `momentum` > 0, as Han et al. and Caffe trained)."""
    momentum: float = 0.9
    """SGD momentum, in [0, 1); unused by Adam."""
    lr_schedule: str = "constant"
    """'constant'; 'cosine': the rate decays to zero over every step of `max_epochs`; 'plateau': after
    `patience` epochs without a better val loss the rate is multiplied by `lr_factor`, and training
    stops at the next such plateau once the rate fell `lr_drops` times (needs `patience`)."""
    lr_factor: float = 0.5
    """'plateau' only: factor of each rate cut, in (0, 1)."""
    lr_drops: int = 3
    """'plateau' only: rate cuts before a plateau stops training."""
    settle_epochs: int = 0
    """After the main training, up to this many epochs of a 'settle' phase (0: none; needs `patience`):
    the network trains in its inference regime, every BatchNorm and Dropout in eval mode (`SETTLED`:
    running statistics fixed, affine weights still trained, no dropout), with the same optimiser,
    schedule and early stopping restarted and the best val weights kept (the phase's epoch 0 is the
    main training's result, so it never ends worse on val). Why: a network trained only in train
    mode is not converged in the regime it is used and pruned in. BatchNorm statistics collected
    behind an active Dropout are never what eval mode sees, and a pruning step's fine-tuning, which
    runs frozen BatchNorms and most Dropouts in eval mode, then gained 10-38 pp on the unpruned
    network (method.md §11, `zoo check`'s no-op gain); a settle phase with Dropout still on left
    most of that gain. Networks with neither module skip it (there it is the main training again)."""

    precision: str = "fp32"
    """Arithmetic of the training passes: 'fp32', or 'bf16' (mixed precision: forward and backward
    matmuls in bfloat16 under `torch.autocast`, weights, optimiser state and validation in fp32).
    'bf16' pays only on CPUs with native bfloat16 matmuls (AMX or AVX512-BF16: 2-3x over fp32 on
    the widest networks, `bench step`); elsewhere it is emulated and slower."""

    def __post_init__(self) -> None:
        """Refuse out-of-range settings (ConfigError naming the field, value and allowed range)."""
        check_int("TrainConfig.max_epochs", self.max_epochs, 1, MAX_EPOCHS)
        check_int("TrainConfig.batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        if self.patience is not None:
            check_int("TrainConfig.patience", self.patience, 1, MAX_EPOCHS)
        if self.max_train_rows is not None:
            check_int("TrainConfig.max_train_rows", self.max_train_rows, 2)  # BatchNorm trains on >= 2 rows
        check_number("TrainConfig.lr", self.lr, 0, MAX_LR, lo_open=True)
        check_number("TrainConfig.weight_decay", self.weight_decay, 0, MAX_LR)
        check_number("TrainConfig.momentum", self.momentum, 0, 1)
        if self.momentum == 1:
            raise ConfigError("TrainConfig.momentum must be below 1 (1 never forgets a gradient), got 1")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"TrainConfig.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"TrainConfig.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        check_number("TrainConfig.lr_factor", self.lr_factor, 0, 1, lo_open=True)
        if self.lr_factor == 1:
            raise ConfigError("TrainConfig.lr_factor must be below 1 (1 never cuts the rate), got 1")
        check_int("TrainConfig.lr_drops", self.lr_drops, 0, 64)
        check_int("TrainConfig.settle_epochs", self.settle_epochs, 0, MAX_EPOCHS)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"TrainConfig.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.settle_epochs and self.patience is None:
            raise ConfigError(f"TrainConfig.settle_epochs {self.settle_epochs} needs a patience (the phase keeps its best val weights), got patience None")
        if self.lr_schedule == "plateau" and self.patience is None:
            raise ConfigError("TrainConfig.lr_schedule 'plateau' needs a patience (it cuts the rate on val plateaus), got patience None")


@dataclass(frozen=True)
class FitResult:
    """What one `fit` did."""

    epochs: int
    """Epochs run."""
    best_epoch: int
    """Epoch whose weights were kept (0: the starting weights)."""
    best_val_loss: float
    """Validation loss of the kept weights."""
    val_acc: float
    """Validation accuracy of the kept weights."""
    seconds: float
    """Wall time."""
    stop_reason: str
    """One of STOP_REASONS: 'max_epochs' (the budget ran out, also for a fixed budget) or 'patience'."""
    settle_epochs: int
    """Epochs of the settle phase (`TrainConfig.settle_epochs`; 0: none ran); `epochs` excludes them."""
    settle_best_epoch: int
    """Settle epoch whose weights were kept (0: the main training's)."""


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch: int = 8192) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` on (X, y), in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(X), batch):
        logits = model(X[i : i + batch])
        loss_sum += nn.functional.cross_entropy(logits, y[i : i + batch], reduction="sum").item()
        correct += (logits.argmax(1) == y[i : i + batch]).sum().item()
    model.train(was_training)
    n = max(len(X), 1)
    return loss_sum / n, correct / n


def fit(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    cfg: TrainConfig,
    seed: int = 0,
    params: list[nn.Parameter] | None = None,
    regulariser: Callable[[], torch.Tensor] | None = None,
    after_step: Callable[[], None] | None = None,
    frozen: tuple[type[nn.Module], ...] = (),
) -> FitResult:
    """Train `model` (or only `params`, which must be its parameters) to minimise cross-entropy on `train`.

    With `cfg.patience`, stops early on the validation loss and restores the best weights.
    `regulariser`, if given, is called with no arguments after each loss and its value added
    (for example an L2 term over selected tensors). `after_step`, if given, runs after every
    optimiser step (for example to re-apply pruning masks); it must leave `model` consistent,
    since evaluation and the kept weights read the model. Row order and Dropout masks depend on
    `seed` alone: the global RNG is forked and seeded, so a network trains the same whichever
    tasks ran before it in the same worker process. The model is left in eval mode.

    `frozen` lists module types kept in eval mode while the rest trains: a frozen BatchNorm
    normalises with its running statistics and keeps them (its affine weights train if among
    `params`), a frozen Dropout passes its input through. With `cfg.settle_epochs`, the settle
    phase follows the main training: the same loop again with `frozen=SETTLED` (skipped when
    `model` has no module of those types).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        hooks = (params, regulariser, after_step)
        result = _fit(model, train, val, cfg, gen, *hooks, frozen)
        if not cfg.settle_epochs or not _modules_of(model, SETTLED):
            return result
        settle = _fit(model, train, val, replace(cfg, max_epochs=cfg.settle_epochs), gen, *hooks, SETTLED)
    return replace(result, best_val_loss=settle.best_val_loss, val_acc=settle.val_acc,
                   seconds=result.seconds + settle.seconds, settle_epochs=settle.epochs,
                   settle_best_epoch=settle.best_epoch)


def _modules_of(model: nn.Module, kinds: tuple[type[nn.Module], ...]) -> list[nn.Module]:
    return [m for m in model.modules() if kinds and isinstance(m, kinds)]


def _optimizer(params: list[torch.Tensor], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.momentum > 0)
    # fused: one kernel for all tensors instead of a loop of small ops (12% less CPU per step, bench step)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def _batches(n_rows: int, cfg: TrainConfig) -> int:
    """Optimiser steps per epoch (`_epoch` skips a last batch of one row)."""
    rows = min(n_rows, cfg.max_train_rows or n_rows)
    steps = -(-rows // cfg.batch_size)
    return steps - 1 if rows > 1 and rows % cfg.batch_size == 1 else steps


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, n_rows: int):
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, cfg.max_epochs * _batches(n_rows, cfg)))
    return None


def _epoch(model, X, y, cfg: TrainConfig, gen, opt, sched, regulariser, after_step, frozen) -> None:
    """One pass over a fresh random order of the training rows (at most cfg.max_train_rows), `frozen` modules in eval mode."""
    model.train()
    for module in frozen:
        module.eval()
    order = torch.randperm(len(X), generator=gen)
    if cfg.max_train_rows is not None:
        order = order[: cfg.max_train_rows]
    # one gather per epoch, then contiguous slices: a gather per mini-batch costs a kernel and a copy each
    X, y = X[order], y[order]
    for i in range(0, len(order), cfg.batch_size):
        xb, yb = X[i : i + cfg.batch_size], y[i : i + cfg.batch_size]
        if len(yb) < 2 and len(order) > 1:
            continue  # BatchNorm cannot train on a single row
        with _precision(cfg):
            loss = nn.functional.cross_entropy(model(xb), yb)
        if regulariser is not None:
            loss = loss + regulariser()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if after_step is not None:
            after_step()


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AMX tiles or AVX512-BF16)."""
    cpu = torch.cpu
    return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


def _precision(cfg: TrainConfig):
    # a disabled autocast still costs ~40 us per mini-batch (7% of a small network's step): skip it
    return torch.autocast("cpu", dtype=torch.bfloat16) if cfg.precision == "bf16" else contextlib.nullcontext()


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _fit(model, train, val, cfg: TrainConfig, gen, params, regulariser, after_step, kinds) -> FitResult:
    start = time.perf_counter()
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    opt = _optimizer(params, cfg)
    sched = _scheduler(opt, cfg, len(train[0]))
    frozen = _modules_of(model, kinds)

    def run_epoch() -> None:
        _epoch(model, *train, cfg, gen, opt, sched, regulariser, after_step, frozen)

    if cfg.patience is None:  # a fixed budget: validation only scores the final weights
        for _ in range(cfg.max_epochs):
            run_epoch()
        epochs, best_epoch, (best_loss, best_acc) = cfg.max_epochs, cfg.max_epochs, evaluate(model, *val)
        reason = "max_epochs"
    else:
        epochs, best_epoch, best_loss, best_acc, reason = _early_stopping(model, val, cfg, opt, run_epoch)
    model.eval()
    return FitResult(epochs, best_epoch, best_loss, best_acc, time.perf_counter() - start, reason, 0, 0)


def _early_stopping(model, val, cfg: TrainConfig, opt, run_epoch) -> tuple[int, int, float, float, str]:
    """Epochs until `patience` epochs bring no better validation loss; restores the best weights.

    Under 'plateau' the first `lr_drops` such plateaus cut the rate instead of stopping (the
    weights carry on from where they are, as torch's ReduceLROnPlateau does).
    Returns (epochs run, best epoch, its validation loss and accuracy, stop reason).
    """
    best_loss, best_acc = evaluate(model, *val)
    best_state = _snapshot(model)
    best_epoch, since_best, epoch, drops, reason = 0, 0, 0, 0, "max_epochs"
    max_cuts = cfg.lr_drops if cfg.lr_schedule == "plateau" else 0
    for epoch in range(1, cfg.max_epochs + 1):
        run_epoch()
        val_loss, val_acc = evaluate(model, *val)
        log.debug("epoch %d/%d: val loss %.4f, val accuracy %.4f", epoch, cfg.max_epochs, val_loss, val_acc)
        if val_loss < best_loss - 1e-6:
            best_loss, best_acc, best_epoch, since_best, best_state = val_loss, val_acc, epoch, 0, _snapshot(model)
            continue
        since_best += 1
        if since_best < cfg.patience:
            continue
        if drops >= max_cuts:
            reason = "patience"
            break
        drops, since_best = drops + 1, 0
        for group in opt.param_groups:
            group["lr"] *= cfg.lr_factor
        log.debug("epoch %d: val loss plateaued, learning rate cut to %.3g", epoch, opt.param_groups[0]["lr"])
    model.load_state_dict(best_state)
    return epoch, best_epoch, best_loss, best_acc, reason
