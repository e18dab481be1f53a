"""Fine-tuning after a pruning step, with a bounded budget and early stopping on val.

Scope 'affected' (NEON's "learn new layers only", method.md §4) trains only what the step
changed: the Linear into hidden layer `layer` (`blocks[layer].linear`), the Linear out of it
(`blocks[layer+1].linear` or `head`) and a BatchNorm on that width (`blocks[layer+1].pre`).
Everything else is frozen, and frozen means inference behaviour: frozen BatchNorms keep their
running statistics bit for bit, and only the Dropouts directly in front of a trained Linear
stay active (they regularise the weights being trained, as in base training).

Since the blocks before `layer` are frozen and run in eval mode, their outputs on the train and
val rows never change during fine-tuning: they are computed once and the suffix
(`blocks[layer:]` + head) trains on them. This is exact, not an approximation, given that rule.

Scope 'all' trains the whole network in train mode (every BatchNorm and Dropout active).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from neon_ray.errors import ConfigError
from neon_ray.nets.checks import MAX_SEED, check_int, check_number
from neon_ray.nets.spec import MLP
from neon_ray.nets.metrics import count_flops, predict
from neon_ray.nets.training import FitResult, TrainConfig, fit, native_bf16

SCOPES = ("affected", "all")
TARGETS = ("labels", "original")
PRECISIONS = ("fp32", "bf16", "auto")
AUTO_BF16_FLOPS = 4e7
"""'auto' precision trains in bf16 from this many forward FLOPs per mini-batch (batch size x the
trained suffix's FLOPs per row). Measured on one core with AMX (Sapphire Rapids-class Xeon): bf16 was
0.6-0.9x as fast as fp32 below 2.5e7 (casts and oneDNN's per-call cost dominate), 1.06-1.2x at
4-7e7, 1.6-2x from 1.3e8."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Budget and scope of the fine-tuning inside each pruning step.

    The training budget fields are `TrainConfig`'s (Adam, early stopping); `train_config()` is that
    TrainConfig. Scope, validation rows and seed are the episode's own.
    """

    scope: str = "affected"
    """'affected': only the layers the step changed; 'all': the whole network."""
    max_epochs: int = 10
    """Upper bound on epochs (the original trained up to 100)."""
    batch_size: int = 128
    """Mini-batch size."""
    lr: float = 1e-3
    """Adam learning rate."""
    patience: int = 2
    """Stop after this many epochs without a better validation loss."""
    max_train_rows: int | None = 8192
    """Training rows per epoch (a fresh random subset each epoch); None uses every row."""
    max_val_rows: int | None = 4096
    """Validation rows for early stopping (a fixed random subset); None uses every row."""
    seed: int = 0
    """Default seed of the row order and Dropout masks when `finetune` gets none."""
    precision: str = "auto"
    """'fp32'; 'bf16': mixed-precision training passes (`TrainConfig.precision`: bf16 matmuls, fp32
    weights, optimiser and validation); 'auto': bf16 where it is faster, i.e. on a CPU with native
    bfloat16 matmuls and for steps of at least AUTO_BF16_FLOPS per mini-batch, else fp32. Accuracy
    after a reference episode was the same in both (`bench step --reference`, README)."""
    targets: str = "labels"
    """What the pruned network is fitted and early-stopped to: 'labels' (the dataset's classes) or
    'original' (the unpruned network's predicted classes on the same rows: distillation, which
    keeps the pruned network's predictions, and so its accuracy, close to the original's)."""

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ConfigError(f"FinetuneConfig.scope must be one of {SCOPES}, got {self.scope!r}")
        if self.targets not in TARGETS:
            raise ConfigError(f"FinetuneConfig.targets must be one of {TARGETS}, got {self.targets!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"FinetuneConfig.precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("max_epochs", "batch_size", "patience"):
            check_int(f"FinetuneConfig.{name}", getattr(self, name), 1)
        for name in ("max_train_rows", "max_val_rows"):
            if getattr(self, name) is not None:  # None: every row
                check_int(f"FinetuneConfig.{name}", getattr(self, name), 2)
        check_number("FinetuneConfig.lr", self.lr, 0, None, lo_open=True)
        check_int("FinetuneConfig.seed", self.seed, 0, MAX_SEED)

    @classmethod
    def from_dict(cls, d: dict | None) -> "FinetuneConfig":
        """Build from a plain dict (e.g. the env_config's `finetune` entry), naming unknown keys."""
        d = dict(d or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"finetune: unknown key(s) {unknown}, accepted: {sorted(known)}")
        return cls(**d)

    def train_config(self, flops_per_row: int = 0) -> TrainConfig:
        """The `fit` settings of this budget (Adam at `lr`, early stopping) for a network whose trained
        part costs `flops_per_row` forward FLOPs per row (what 'auto' precision decides on)."""
        return TrainConfig(
            max_epochs=self.max_epochs, batch_size=self.batch_size, lr=self.lr,
            patience=self.patience, max_train_rows=self.max_train_rows,
            precision=self.resolved_precision(flops_per_row),
        )

    def resolved_precision(self, flops_per_row: int) -> str:
        """'fp32' or 'bf16': what this budget trains a network of `flops_per_row` forward FLOPs per row in."""
        if self.precision != "auto":
            return self.precision
        return "bf16" if self.batch_size * flops_per_row >= AUTO_BF16_FLOPS and native_bf16() else "fp32"


@dataclass(frozen=True)
class Targets:
    """The unpruned network's predicted classes on a dataset's train and val rows (distillation targets)."""

    y_train: torch.Tensor
    """int64 [n_train]."""
    y_val: torch.Tensor
    """int64 [n_val]."""

    @classmethod
    def of(cls, model: MLP, dataset) -> "Targets":
        return cls(predict(model, dataset.X_train), predict(model, dataset.X_val))


@dataclass(frozen=True)
class FinetuneResult(FitResult):
    """`FitResult` plus how many validation rows early stopping looked at."""

    val_rows: int
    """Rows behind `val_acc` and `best_val_loss` (all of val when it is not subsampled)."""
    precision: str
    """Arithmetic the training passes ran in: 'fp32' or 'bf16'."""


class _Suffix(nn.Module):
    """blocks[layer:] and the head of a model, sharing its parameters.

    `train()` switches only the `active` modules; everything else stays in eval mode so
    that frozen BatchNorm statistics do not move and frozen Dropouts stay off.
    """

    def __init__(self, model: MLP, layer: int, active: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(model.blocks[layer:])
        self.head = model.head
        self._active = active  # a plain list: not registered again as submodules

    def train(self, mode: bool = True) -> "_Suffix":
        for module in self.modules():
            module.training = False
        for module in self._active:
            module.training = mode
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def affected_modules(model: MLP, layer: int) -> tuple[list[nn.Module], list[nn.Module]]:
    """(modules trained, Dropouts kept active) by an 'affected' fine-tune of hidden layer `layer`."""
    last = layer + 1 == model.spec.depth
    out_linear = model.head if last else model.blocks[layer + 1].linear
    trained: list[nn.Module] = [model.blocks[layer].linear, out_linear]
    dropouts: list[nn.Module] = []
    if isinstance(model.blocks[layer].pre, nn.Dropout):
        dropouts.append(model.blocks[layer].pre)
    if not last:
        pre = model.blocks[layer + 1].pre
        if isinstance(pre, nn.BatchNorm1d):
            trained.append(pre)
        elif isinstance(pre, nn.Dropout):
            dropouts.append(pre)
    return trained, dropouts


@torch.no_grad()
def prefix_outputs(model: MLP, layer: int, X: torch.Tensor, batch: int = 8192) -> torch.Tensor:
    """What blocks[:layer] feed into blocks[layer], in eval mode."""
    if layer == 0:
        return X
    was_training = model.training
    model.eval()
    chunks = []
    for i in range(0, len(X), batch):
        x = X[i : i + batch]
        for block in model.blocks[:layer]:
            x = block(x)
        chunks.append(x)
    model.train(was_training)
    return torch.cat(chunks) if chunks else X.new_zeros((0, model.blocks[layer].linear.in_features))


def _val_subset(X: torch.Tensor, y: torch.Tensor, rows: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if rows is None or len(X) <= rows:
        return X, y
    idx = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))[:rows]
    return X[idx], y[idx]


def _fit_affected(model: MLP, layer: int, dataset, cfg: FinetuneConfig, seed: int) -> FinetuneResult:
    trained, dropouts = affected_modules(model, layer)
    params = [p for m in trained for p in m.parameters()]
    trained_ids = {id(p) for p in params}
    frozen = [p for p in model.parameters() if id(p) not in trained_ids and p.requires_grad]
    X_val, y_val = _val_subset(dataset.X_val, dataset.y_val, cfg.max_val_rows, seed)
    train = (prefix_outputs(model, layer, dataset.X_train), dataset.y_train)
    val = (prefix_outputs(model, layer, X_val), y_val)
    suffix = _Suffix(model, layer, trained + dropouts)
    for p in frozen:  # no weight gradients for frozen tensors: saves their backward matmuls
        p.requires_grad_(False)
    train_cfg = cfg.train_config(count_flops(suffix))
    try:
        result = fit(suffix, train, val, train_cfg, seed=seed, params=params)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return FinetuneResult(**vars(result), val_rows=len(y_val), precision=train_cfg.precision)


def _fit_all(model: MLP, dataset, cfg: FinetuneConfig, seed: int) -> FinetuneResult:
    X_val, y_val = _val_subset(dataset.X_val, dataset.y_val, cfg.max_val_rows, seed)
    train_cfg = cfg.train_config(count_flops(model))
    result = fit(model, (dataset.X_train, dataset.y_train), (X_val, y_val), train_cfg, seed=seed)
    return FinetuneResult(**vars(result), val_rows=len(y_val), precision=train_cfg.precision)


def finetune(model: MLP, layer: int, dataset, cfg: FinetuneConfig = FinetuneConfig(), seed: int | None = None,
             original: "Targets | None" = None) -> FinetuneResult:
    """Fine-tune `model` in place after a step at hidden layer `layer`; best val weights are kept.

    `dataset` is a `data.Dataset` (train rows fit, val rows early-stop). With cfg.targets
    'original', `original` holds the unpruned network's predictions on those rows (`Targets.of`),
    which replace the labels. Deterministic for a given seed (default `cfg.seed`): row order, row
    subsets and Dropout masks are all seeded. The model is left in eval mode.
    """
    if not 0 <= layer < model.spec.depth:
        raise ConfigError(f"finetune: hidden layer {layer} out of range for {model.spec.describe()} (layers 0..{model.spec.depth - 1})")
    seed = cfg.seed if seed is None else int(seed)
    if cfg.targets == "original":
        if original is None:
            raise ConfigError("finetune with targets 'original' needs the original network's predictions (original=Targets.of(...))")
        dataset = replace(dataset, y_train=original.y_train, y_val=original.y_val)
    # `fit` seeds the row order and Dropout masks (on a forked global RNG); _val_subset has its own generator
    if cfg.scope == "all":
        result = _fit_all(model, dataset, cfg, seed)
    else:
        result = _fit_affected(model, layer, dataset, cfg, seed)
    model.eval()
    return result
