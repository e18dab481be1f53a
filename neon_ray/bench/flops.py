"""FLOPs of one fine-tuning (counted through `nets.metrics`) and the matmul FLOP rate it is judged against.

FLOPs of one fine-tuning (scope 'affected', trained = the Linear into layer L, the Linear out
of it and a BatchNorm on its width; the suffix = blocks[L:] + head runs on cached prefix
outputs, see pruning/finetune.py). With fwd(m) = metrics.count_flops(m) per row and, for a
Linear, mm = metrics.linear_flops without the bias (2*in*out):

    per row, forward   F = count_flops(suffix)
    per row, backward  B = sum(fwd of the trained Linears)               (weight gradients)
                         + sum(mm of every suffix Linear but the first)  (input gradients; the
                           first Linear's input is a constant, autograd computes none for it)
                         + the suffix's elementwise FLOPs once more      (activation/BatchNorm grads)
    fine-tune FLOPs    = train_rows_per_epoch * epochs * (F + B)         (the training passes)
                       + val_rows * (epochs + 1) * F                     (val loss before and after each epoch)
                       + (train_rows + val_rows) * count_flops(blocks[:L])  (prefix outputs, once)

train_rows_per_epoch = min(train rows, max_train_rows), less one if the last mini-batch would
hold a single row (fit skips it); val_rows = min(val rows, max_val_rows); epochs from
info["finetune_epochs"]. B lies between 1x and 2x F, so F + B is what autograd really does,
somewhat less than the "3x forward" rule of thumb (also reported, as `nominal_3x_gflop`).
For scope 'all' the suffix is the whole network and every Linear is trained.

The yardstick is a plain `torch.mm` of [batch x w] @ [w x w] with the current thread count.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from neon_ray.nets.metrics import count_flops, linear_flops
from neon_ray.pruning.finetune import affected_modules


def _fwd(linear: nn.Linear) -> int:
    """A Linear's FLOPs per row, bias included (its forward pass, and its weight and bias gradients)."""
    return linear_flops(linear.in_features, linear.out_features, linear.bias is not None)


def _mm(linear: nn.Linear) -> int:
    """A Linear's FLOPs per row without the bias: what the input gradient's matmul costs."""
    return linear_flops(linear.in_features, linear.out_features, bias=False)


def finetune_flops_per_row(model, layer: int, scope: str = "affected") -> dict:
    """Per-row FLOPs of one fine-tuning of hidden layer `layer` (see the module docstring)."""
    if scope == "all":
        start, trained = 0, list(model.modules())
    else:
        start, trained = layer, affected_modules(model, layer)[0]
    suffix = nn.ModuleList([*model.blocks[start:], model.head])
    linears = [m for m in suffix.modules() if isinstance(m, nn.Linear)]
    forward = count_flops(suffix)
    linear_fwd = sum(_fwd(l) for l in linears)
    weight_grads = sum(_fwd(l) for l in linears if any(l is t for t in trained))
    input_grads = sum(_mm(l) for l in linears[1:])
    backward = weight_grads + input_grads + (forward - linear_fwd)
    prefix = count_flops(nn.ModuleList(model.blocks[:start])) if start else 0
    return {"forward": forward, "backward": backward, "prefix": prefix}


def finetune_flops(model, layer: int, cfg, n_train: int, n_val: int, epochs: int) -> dict:
    """FLOPs of one fine-tuning that ran `epochs` epochs (cfg: the env's FinetuneConfig)."""
    per_row = finetune_flops_per_row(model, layer, cfg.scope)
    rows = min(n_train, cfg.max_train_rows) if cfg.max_train_rows is not None else n_train
    if rows > 1 and rows % cfg.batch_size == 1:
        rows -= 1  # fit skips a last mini-batch of one row
    val_rows = min(n_val, cfg.max_val_rows) if cfg.max_val_rows is not None else n_val
    train = rows * epochs * (per_row["forward"] + per_row["backward"])
    val = val_rows * (epochs + 1) * per_row["forward"]
    prefix = (n_train + val_rows) * per_row["prefix"]
    return {
        "train_rows_per_epoch": rows, "val_rows": val_rows, "epochs": epochs,
        "forward_flops_per_row": per_row["forward"], "backward_flops_per_row": per_row["backward"],
        "train_gflop": train / 1e9, "val_gflop": val / 1e9, "prefix_gflop": prefix / 1e9,
        "total_gflop": (train + val + prefix) / 1e9,
        "nominal_3x_gflop": 3 * rows * epochs * per_row["forward"] / 1e9,
    }


def matmul_gflops(batch: int, width: int, seconds: float = 0.25, repeats: int = 5, cpu: bool = False):
    """FLOP rate (GFLOP/s) of [batch x width] @ [width x width] with the current thread count.

    Median over `repeats` timings of as many back-to-back products as fit in `seconds`. With
    `cpu`, returns (wall-clock rate, process-CPU-time rate): on shared cores the second one
    does not count the time the process waited for a core.
    """
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(batch, width, generator=gen)
    b = torch.randn(width, width, generator=gen)
    out = torch.empty(batch, width)
    flops = 2.0 * batch * width * width
    for _ in range(3):
        torch.mm(a, b, out=out)
    t0 = time.perf_counter()
    torch.mm(a, b, out=out)
    n = max(1, int(seconds / max(time.perf_counter() - t0, 1e-7) / repeats))
    wall, proc = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            torch.mm(a, b, out=out)
        t1, c1 = time.perf_counter(), time.process_time()
        wall.append(flops * n / (t1 - t0) / 1e9)
        proc.append(flops * n / max(c1 - c0, 1e-9) / 1e9)
    return (statistics.median(wall), statistics.median(proc)) if cpu else statistics.median(wall)


def matmul_reference(batch: int, widths) -> dict[int, tuple[float, float]]:
    """(wall, cpu) GFLOP/s of the matmul yardstick per width (the given ones and 512)."""
    return {int(w): matmul_gflops(batch, int(w), cpu=True) for w in sorted(set(widths) | {512})}
