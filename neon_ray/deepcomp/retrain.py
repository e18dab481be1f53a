"""The small training loop behind both retraining stages of Deep Compression.

Masked retraining must re-apply masks after every optimiser step and centroid fine-tuning must
rebuild weights from centroids; both are callbacks of one loop. It keeps `train.fit`'s habits
(index batching, Adam, early stopping on validation loss, best weights restored) so it stays
fast on CPU.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from neon_ray.deepcomp.checks import check_float, check_int
from neon_ray.errors import ConfigError
from neon_ray.nets.training import evaluate

MAX_EPOCHS = 100_000
"""Upper bound of RetrainConfig.epochs and .patience."""
MAX_BATCH_SIZE = 1_000_000
"""Upper bound of RetrainConfig.batch_size."""
MAX_LR = 10.0
"""Upper bound of RetrainConfig.lr and .l2."""


@dataclass(frozen=True)
class RetrainConfig:
    """Budget and optimiser of one retraining run."""

    epochs: int = 8
    """Most passes over the training rows."""
    batch_size: int = 128
    """Mini-batch size."""
    lr: float = 1e-3
    """Adam learning rate."""
    l2: float = 0.0
    """Coefficient of sum(w**2) over prunable weights added to the loss (Han et al. retrain with L2)."""
    patience: int = 3
    """Stop after this many epochs without a better validation loss."""
    max_train_rows: int | None = None
    """Use at most this many training rows per epoch (a fresh random subset each epoch)."""
    optimizer: str = "adam"
    """'adam', or 'sgd' (Nesterov momentum 0.9, the optimiser Han et al. retrained with)."""

    def __post_init__(self) -> None:
        check_int("RetrainConfig.epochs", self.epochs, 0, MAX_EPOCHS)
        check_int("RetrainConfig.batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        check_float("RetrainConfig.lr", self.lr, 0, MAX_LR, lo_open=True)
        check_float("RetrainConfig.l2", self.l2, 0, MAX_LR)
        check_int("RetrainConfig.patience", self.patience, 1, MAX_EPOCHS)
        if self.max_train_rows is not None:
            check_int("RetrainConfig.max_train_rows", self.max_train_rows, 2)  # BatchNorm trains on >= 2 rows
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"RetrainConfig: optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")


@dataclass(frozen=True)
class RetrainResult:
    """What one retraining run did."""

    epochs: int
    """Epochs run."""
    best_epoch: int
    """Epoch whose weights were kept (0: the starting weights)."""
    best_val_loss: float
    """Validation loss of the kept weights."""
    seconds: float
    """Wall time."""


def run(
    model: nn.Module,
    params: list[torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    cfg: RetrainConfig,
    seed: int = 0,
    after_backward: Callable[[], None] | None = None,
    after_step: Callable[[], None] | None = None,
) -> RetrainResult:
    """Adam on `params` minimising `loss_fn(X_batch, y_batch)`; keeps the best-validation state of `model` and `params`.

    `after_step` must leave `model` consistent (evaluation and snapshots read the model).
    """
    start = time.perf_counter()
    X, y = train
    gen = torch.Generator().manual_seed(seed)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True)
    else:
        opt = torch.optim.Adam(params, lr=cfg.lr)

    def snapshot():
        return {k: v.detach().clone() for k, v in model.state_dict().items()}, [p.detach().clone() for p in params]

    best_loss, _ = evaluate(model, *val)
    best, best_epoch, since_best, epoch = snapshot(), 0, 0, 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(len(X), generator=gen)[: cfg.max_train_rows]
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            if len(idx) < 2 and len(order) > 1:
                continue  # BatchNorm cannot train on a single row
            loss = loss_fn(X[idx], y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if after_backward is not None:
                after_backward()
            opt.step()
            if after_step is not None:
                after_step()
        val_loss, _ = evaluate(model, *val)
        if val_loss < best_loss - 1e-6:
            best_loss, best, best_epoch, since_best = val_loss, snapshot(), epoch, 0
        else:
            since_best += 1
            if since_best >= cfg.patience:
                break
    state, saved = best
    model.load_state_dict(state)
    with torch.no_grad():
        for p, s in zip(params, saved):
            p.copy_(s)
    model.eval()
    return RetrainResult(epoch, best_epoch, best_loss, time.perf_counter() - start)
