"""The one place that counts: parameters, FLOPs, bytes, latency, memory, accuracy.

Every method (agent, baselines, Deep Compression) and every report measures networks through
these functions, so their numbers are comparable.

Conventions:
- parameters: every `nn.Parameter` (weights, biases, BatchNorm affine). BatchNorm running
  statistics are buffers, not parameters; they are counted in bytes.
- FLOPs: per input row, multiply and add counted separately (a Linear of n_in x n_out costs
  2*n_in*n_out + n_out with bias, `linear_flops`); BatchNorm in eval costs 2 per element
  (folded scale and shift), activations 1 per element, Dropout 0 (identity in eval).
- bytes: the size of the serialised state_dict (`torch.save`, `state_dict_bytes`), the raw
  tensor bytes of dense storage (`dense_bytes`, Deep Compression's baseline), or of a sparse
  layout for networks with pruned individual weights (`sparse_bytes`).
"""
from __future__ import annotations

import io
import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Every parameter: weights, biases and BatchNorm affine terms."""
    return sum(p.numel() for p in model.parameters())


def count_nonzero(model: nn.Module) -> int:
    """Parameters that are not exactly zero (what survives weight-level pruning)."""
    return sum(int(torch.count_nonzero(p).item()) for p in model.parameters())


def linear_flops(n_in: int, n_out: int, bias: bool = True, rows: int = 1) -> int:
    """FLOPs of a dense n_in x n_out Linear on `rows` rows: a multiply and an add per weight, one add per bias."""
    return rows * (2 * n_in * n_out + (n_out if bias else 0))


def count_flops(model: nn.Module, nonzero_only: bool = False) -> int:
    """FLOPs of one forward pass for one input row.

    With `nonzero_only`, Linear layers cost 2 per non-zero weight (what a sparse kernel does).
    Works for the MLP layout of `spec.py` and any module built from Linear, BatchNorm1d and
    elementwise activations in sequence; Conv2d layers are not counted (Deep Compression
    reports a convolutional network's bytes and accuracy, not its FLOPs).
    """
    total = 0
    width = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            width = module.out_features
            bias = module.bias is not None
            if nonzero_only:
                total += 2 * int(torch.count_nonzero(module.weight).item()) + (module.out_features if bias else 0)
            else:
                total += linear_flops(module.in_features, module.out_features, bias)
        elif isinstance(module, nn.BatchNorm1d):
            total += 2 * module.num_features  # folded scale and shift
        elif isinstance(module, (nn.ReLU, nn.Tanh, nn.Sigmoid)) and width is not None:
            total += width
    return total


def _tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def dense_bytes(model: nn.Module) -> int:
    """Raw bytes of every state_dict tensor stored densely (float32 for float32 tensors), no container."""
    return sum(_tensor_bytes(t) for t in model.state_dict().values())


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of the state_dict as `torch.save` writes it (dense float32 plus container overhead)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def sparse_bytes(model: nn.Module, value_bytes: int = 4, index_bytes: int = 4) -> int:
    """Bytes of a CSR layout for every weight matrix plus dense storage of the other tensors.

    A matrix of R rows with nnz non-zeros costs nnz*(value + column index) + (R+1) row pointers.
    This is how a sparse format would store magnitude-pruned weights; Deep Compression reports
    its real file size instead.
    """
    total = 0
    for name, tensor in model.state_dict().items():
        if tensor.dim() >= 2:
            rows = tensor.shape[0]
            nnz = int(torch.count_nonzero(tensor).item())
            total += nnz * (value_bytes + index_bytes) + (rows + 1) * index_bytes
        else:
            total += _tensor_bytes(tensor)
    return total


@torch.no_grad()
def latency_ms(model: nn.Module, n_features: int, batch: int = 1, repeats: int = 30, warmup: int = 5) -> float:
    """Median wall-clock milliseconds of one eval-mode forward pass on `batch` random rows."""
    model.eval()
    x = torch.randn(batch, n_features)
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


@torch.no_grad()
def peak_memory_bytes(model: nn.Module, n_features: int, batch: int = 1024) -> int:
    """Peak bytes held during one eval-mode forward pass on `batch` rows.

    Resident weights and buffers plus the largest (input + output) activation pair of any leaf
    module, taken from the real tensors through forward hooks: a sequential network frees each
    activation once the next layer has consumed it, so that pair is the high-water mark.
    """
    model.eval()
    resident = dense_bytes(model)
    peak = 0

    def hook(_module, inputs, output):
        nonlocal peak
        in_bytes = sum(_tensor_bytes(t) for t in inputs if isinstance(t, torch.Tensor))
        peak = max(peak, in_bytes + _tensor_bytes(output))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        model(torch.randn(batch, n_features))
    finally:
        for h in handles:
            h.remove()
    return resident + peak


@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor, batch: int = 8192) -> torch.Tensor:
    """Predicted class per row, eval mode."""
    model.eval()
    return torch.cat([model(X[i : i + batch]).argmax(1) for i in range(0, len(X), batch)]) if len(X) else torch.empty(0, dtype=torch.long)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> float:
    """Macro-averaged F1 over the classes present in y_true or y_pred."""
    labels = np.union1d(y_true, y_pred)
    f1s = []
    for c in labels:
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        denom = 2 * tp + fp + fn
        f1s.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1s)) if f1s else 0.0


def accuracy_f1(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, macro-F1) on (X, y)."""
    pred = predict(model, X).numpy()
    truth = y.numpy()
    acc = float((pred == truth).mean()) if len(truth) else 0.0
    return acc, macro_f1(truth, pred)


@dataclass(frozen=True)
class NetworkMetrics:
    """Everything reported about one network, measured the same way for every method."""

    params: int
    nonzero: int
    flops: int
    bytes: int
    val_acc: float
    val_f1: float
    test_acc: float
    test_f1: float
    latency_b1_ms: float | None = None
    latency_batch_ms: float | None = None
    peak_memory_bytes: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def measure(model: nn.Module, dataset, timing: bool = True, sparse: bool = False, latency_batch: int = 1024) -> NetworkMetrics:
    """Measure `model` on `dataset` (a `data.Dataset`): counts, accuracies and, with `timing`, latency and memory.

    `sparse=True` counts bytes and FLOPs as a sparse layout would (for weight-pruned networks).
    """
    val_acc, val_f1 = accuracy_f1(model, dataset.X_val, dataset.y_val)
    test_acc, test_f1 = accuracy_f1(model, dataset.X_test, dataset.y_test)
    n_features = dataset.X_val.shape[1]
    return NetworkMetrics(
        params=count_params(model),
        nonzero=count_nonzero(model),
        flops=count_flops(model, nonzero_only=sparse),
        bytes=sparse_bytes(model) if sparse else state_dict_bytes(model),
        val_acc=val_acc,
        val_f1=val_f1,
        test_acc=test_acc,
        test_f1=test_f1,
        latency_b1_ms=latency_ms(model, n_features, batch=1) if timing else None,
        latency_batch_ms=latency_ms(model, n_features, batch=latency_batch, repeats=10) if timing else None,
        peak_memory_bytes=peak_memory_bytes(model, n_features) if timing else None,
    )
