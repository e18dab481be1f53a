"""Deep Compression end to end: prune -> share -> Huffman, with one table row per stage.

    model, table = compress_model(model, dataset, DeepCompConfig(), "net.nrdc")

Rows (dicts, JSON-ready): stage, params, nonzeros, bytes, compression (dense bytes / bytes),
test_accuracy, test_error, seconds. Bytes are real encodings: stage 0 is dense storage of
the state_dict (`metrics.dense_bytes`); later stages are the length of the file format's encoding
(fixed-width streams for "pruned" and "shared", Huffman streams for "huffman", which is the
file written to `out_path`). The returned model is decoded from that file, and is checked to
hold exactly the weights of the in-memory shared model. Works after NEON's structured pruning
(any `ArchSpec` MLP) as well as for LeNet-5.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from neon_ray.deepcomp import fileformat
from neon_ray.deepcomp.prune import MAX_Q, layer_kind, magnitude_prune
from neon_ray.deepcomp.share import INITS, MAX_BITS, finetune_centroids, share_weights
from neon_ray.errors import ConfigError
from neon_ray.nets import metrics
from neon_ray.nets.checks import MAX_SEED, check_int, check_number
from neon_ray.nets.training import MAX_LR, TrainConfig



@dataclass(frozen=True)
class DeepCompConfig:
    """Every knob of the three stages."""

    q_schedule: tuple[float, ...] = (0.5, 1.0, 1.4, 1.7, 2.0, 2.3)
    """Pruning quality parameters, one prune+retrain step each (a weight goes when |w| < q*std);
    the default leaves ~8% of LeNet-300-100's weights, as in the paper."""
    q_scale: dict[str, float] = field(default_factory=dict)
    """Per-weight multiplier of q, by state_dict name (e.g. {"head.weight": 0.5} prunes the output layer less)."""
    prune_retrain: TrainConfig | None = TrainConfig(max_epochs=6, batch_size=128, lr=5e-4, patience=2)
    """Retraining after each pruning step (masks fixed); None prunes without retraining."""
    prune_l2: float = 1e-5
    """Coefficient of sum(w**2) over prunable weights added to the loss while retraining after pruning
    (Han et al. retrain with L2)."""
    share_retrain: TrainConfig | None = TrainConfig(max_epochs=3, batch_size=128, lr=2e-5, patience=1)
    """Centroid fine-tuning after k-means; None keeps the k-means centroids."""
    fc_bits: int = 6
    """Cluster-index bits of Linear layers (2**bits shared values per layer)."""
    conv_bits: int = 8
    """Cluster-index bits of Conv2d layers."""
    init: str = "linear"
    """k-means initialisation: linear, density or forgy."""
    seed: int = 0
    """Seed of batch order and forgy initialisation."""

    def __post_init__(self) -> None:
        if not isinstance(self.q_schedule, (tuple, list)) or not self.q_schedule:
            raise ConfigError(f"DeepCompConfig.q_schedule needs at least one q in [0, {MAX_Q:g}], got {self.q_schedule!r}")
        for i, q in enumerate(self.q_schedule):
            check_number(f"DeepCompConfig.q_schedule[{i}]", q, 0, MAX_Q)
        if not isinstance(self.q_scale, dict):
            raise ConfigError(f"DeepCompConfig.q_scale must map weight names to multipliers, got {self.q_scale!r}")
        for name, scale in self.q_scale.items():
            check_number(f"DeepCompConfig.q_scale[{name!r}]", scale, 0, MAX_Q)
        for name in ("prune_retrain", "share_retrain"):
            if not isinstance(getattr(self, name), (TrainConfig, type(None))):
                raise ConfigError(f"DeepCompConfig.{name} must be a TrainConfig or None, got {getattr(self, name)!r}")
        check_number("DeepCompConfig.prune_l2", self.prune_l2, 0, MAX_LR)
        check_int("DeepCompConfig.fc_bits", self.fc_bits, 1, MAX_BITS)
        check_int("DeepCompConfig.conv_bits", self.conv_bits, 1, MAX_BITS)
        if self.init not in INITS:
            raise ConfigError(f"DeepCompConfig.init must be one of {INITS}, got {self.init!r}")
        check_int("DeepCompConfig.seed", self.seed, 0, MAX_SEED)

    def to_dict(self) -> dict:
        return asdict(self)


def _row(stage: str, model: nn.Module, nbytes: int, base_bytes: int, dataset, seconds: float) -> dict:
    acc, _ = metrics.accuracy_f1(model, dataset.X_test, dataset.y_test)
    return {
        "stage": stage,
        "params": metrics.count_params(model),
        "nonzeros": metrics.count_nonzero(model),
        "bytes": int(nbytes),
        "compression": base_bytes / nbytes,
        "test_accuracy": acc,
        "test_error": 1.0 - acc,
        "seconds": seconds,
    }


def _check_same_weights(decoded: nn.Module, model: nn.Module, where: Path) -> None:
    ours, theirs = model.state_dict(), decoded.state_dict()
    for name, tensor in ours.items():
        if not torch.equal(tensor, theirs[name]):
            raise RuntimeError(f"{where}: decoded tensor {name!r} differs from the compressed model (a bug)")


def compress_model(
    model: nn.Module,
    dataset,
    cfg: DeepCompConfig = DeepCompConfig(),
    out_path: str | Path = "model.nrdc",
    log: Callable[[str], None] | None = None,
) -> tuple[nn.Module, list[dict]]:
    """Run all stages on a copy of `model` (a neon_ray MLP or LeNet5); write `out_path`; return (decoded model, rows).

    `dataset` needs X_/y_ train, val and test tensors: train fits, val early-stops, test is reported.
    """
    say = log or (lambda _msg: None)
    out_path = Path(out_path)
    fileformat.describe_model(model)  # fail before hours of work on an unstorable model
    model = copy.deepcopy(model).eval()
    train, val = (dataset.X_train, dataset.y_train), (dataset.X_val, dataset.y_val)
    base = metrics.dense_bytes(model)
    rows = [_row("dense", model, base, base, dataset, 0.0)]

    t0 = time.perf_counter()
    masks = magnitude_prune(model, train, val, cfg.q_schedule, cfg.prune_retrain, cfg.q_scale, cfg.seed, say, cfg.prune_l2)
    rows.append(_row("pruned", model, len(fileformat.encode(model, None, "fixed")), base, dataset, time.perf_counter() - t0))
    say(_describe(rows[-1]))

    t0 = time.perf_counter()
    bits = {name: cfg.conv_bits if layer_kind(model, name) == "conv" else cfg.fc_bits for name in masks}
    shared = share_weights(model, masks, bits, cfg.init, cfg.seed)
    acc, _ = metrics.accuracy_f1(model, dataset.X_test, dataset.y_test)
    say(f"k-means ({cfg.init}, bits {sorted(set(bits.values()))}): test error before fine-tuning {1 - acc:.2%}")
    if cfg.share_retrain is not None:
        result = finetune_centroids(model, shared, train, val, cfg.share_retrain, cfg.seed)
        say(f"centroid fine-tuning: {result.epochs} epochs (best {result.best_epoch}, {result.seconds:.0f}s)")
    rows.append(_row("shared", model, len(fileformat.encode(model, shared, "fixed")), base, dataset, time.perf_counter() - t0))
    say(_describe(rows[-1]))

    t0 = time.perf_counter()
    nbytes = fileformat.write(out_path, model, shared, "huffman")
    decoded = fileformat.read(out_path)
    _check_same_weights(decoded, model, out_path)
    rows.append(_row("huffman", decoded, nbytes, base, dataset, time.perf_counter() - t0))
    say(_describe(rows[-1]))
    return decoded, rows


def _describe(row: dict) -> str:
    return (f"{row['stage']}: {row['nonzeros']:,} nonzeros, {row['bytes']:,} bytes (x{row['compression']:.1f}), "
            f"test error {row['test_error']:.2%}")


def format_stage_table(rows: list[dict], extra: dict[str, list[str]] | None = None) -> str:
    """A markdown table of the stage rows; `extra` adds columns (header -> one cell per row)."""
    extra = extra or {}
    head = ["stage", "params", "nonzeros", "params/nonzeros", "bytes", "KB", "compression", "test error", *extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in enumerate(rows):
        cells = [r["stage"], f"{r['params']:,}", f"{r['nonzeros']:,}", f"x{r['params'] / max(r['nonzeros'], 1):.1f}",
                 f"{r['bytes']:,}", f"{r['bytes'] / 1000:.1f}",
                 f"x{r['compression']:.1f}", f"{r['test_error']:.2%}", *(col[i] for col in extra.values())]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
