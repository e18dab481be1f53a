"""The agent's observation: a fixed-size float32 vector about the CURRENT network and layer.

Unlike the original state (method.md §5), it describes the network as it is now (after every
step so far), is computed in eval mode under no_grad on a fixed probe batch chosen once per
network, has no NaN (a constant neuron has skew and kurtosis 0), and carries what lets one
agent serve many datasets and tolerances: position, widths, compression so far, accuracy
change, loop, dataset descriptors and the tolerance itself.

Scaling: every entry is roughly within [-10, 10]. Widths enter as w/1000 and log1p(w)/log(1001);
statistics that are unbounded (weight and activation moments, extremes and norms) enter through
the signed log `sign(x) * log1p(|x|)`, which is the identity near 0 and grows slowly; as a
last guard the whole vector is clipped to [-10, 10].

`OBS_FEATURES` lists every entry in order with its meaning; `observe` returns exactly that.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from neon_ray.pruning.structured import layer_activations
from neon_ray.nets.metrics import count_params
from neon_ray.nets.spec import ACTIVATIONS, MLP, PRE_LAYERS

CLIP = 10.0
STAT_NAMES = ("mean", "std", "skew", "kurtosis", "min", "max", "l1", "l2")
# A neuron whose activation varies less than this over the probe rows carries no information.
DEAD_STD = 1e-6
_LOG_WIDTH = math.log(1001.0)
# pp: the smallest tolerance the drop is measured against in `tolerance_used`.
TOLERANCE_FLOOR = 0.1


def _feature_table() -> list[tuple[str, str]]:
    table = [
        ("layer_index", "current hidden layer index / 10"),
        ("layer_position", "current hidden layer index / (depth - 1); 0 for a single hidden layer"),
        ("is_last_layer", "1 if the current layer feeds the output head"),
        ("depth", "current number of hidden layers / 10"),
        ("depth_orig", "hidden layers of the original network / 10"),
    ]
    for which, what in (("in", "input width of the current layer (features or previous hidden width)"),
                        ("width", "current width of this layer"),
                        ("out", "width after this layer (next hidden width or classes)")):
        table += [(f"{which}_k", f"{what} / 1000"), (f"{which}_log", f"log1p({what}) / log(1001)")]
    table += [
        ("width_orig_k", "original width of this layer / 1000"),
        ("width_kept", "current / original width of this layer"),
        ("params_removed", "fraction of the original network's parameters removed so far"),
        ("acc_change", "val accuracy now minus original (fraction, i.e. pp / 100)"),
        ("loop", "loop index / loops (0 during the first loop)"),
        ("loops", "loops in the episode / 10"),
        ("step_fraction", "steps taken / steps in the episode"),
    ]
    table += [(f"w_{s}", f"signed-log {s} of this layer's incoming weights") for s in STAT_NAMES[:6]]
    table += [("w_l1", "signed-log mean over neurons of mean |incoming weight| (L1 norm / fan-in)"),
              ("w_l2", "signed-log mean over neurons of RMS incoming weight (L2 norm / sqrt(fan-in))")]
    table += [(f"a_{s}", f"signed-log {s} of this layer's activations on the probe rows") for s in STAT_NAMES[:6]]
    table += [("a_l1", "signed-log mean |activation| over probe rows and neurons"),
              ("a_l2", "signed-log mean over neurons of RMS activation over the probe rows"),
              ("a_dead", f"fraction of neurons whose activation is constant (std < {DEAD_STD}) on the probe rows")]
    table += [(f"pre_in_{p}", f"1 if the layer in front of this layer's Linear is {p}") for p in PRE_LAYERS]
    table += [(f"pre_out_{p}", f"1 if the layer after this layer (on its width) is {p}; 'none' before the head") for p in PRE_LAYERS]
    table += [(f"act_{a}", f"1 if this layer's activation is {a}") for a in ACTIVATIONS]
    table += [
        ("data_rows", "log10(dataset rows)"),
        ("data_features", "log10(input features)"),
        ("data_classes", "log10(classes)"),
        ("tolerance", "allowed accuracy reduction a / 100 (a in pp)"),
        ("tolerance_log", "log1p(a)"),
        ("tolerance_used", "upper confidence bound of the val accuracy drop / a (1 at the edge of the tolerance, above 1 outside)"),
        ("within_tolerance", "1 if the current network is within the tolerance (its bound is at most a)"),
        ("best_removed", "fraction of parameters removed by the smallest network within the tolerance so far (what the guard returns)"),
    ]
    return table


OBS_FEATURES: list[tuple[str, str]] = _feature_table()
"""(name, description) of every observation entry, in order."""
OBS_NAMES: tuple[str, ...] = tuple(name for name, _ in OBS_FEATURES)
OBS_SIZE = len(OBS_FEATURES)


@dataclass(frozen=True)
class EpisodeContext:
    """What stays fixed during an episode: the probe rows, the original network's size, the task."""

    probe: torch.Tensor
    """Fixed input rows for the activation statistics (float32 [n, features])."""
    params_orig: int
    """Parameters of the original network."""
    depth_orig: int
    """Hidden layers of the original network."""
    rows: int
    """Rows of the dataset."""
    features: int
    """Input features of the dataset."""
    classes: int
    """Classes of the dataset."""
    tolerance: float
    """Allowed accuracy reduction a in percentage points."""
    loops: int
    """Loops over the hidden layers in the episode."""
    total_steps: int
    """Steps in the episode."""


@dataclass(frozen=True)
class Progress:
    """Where the episode stands at this observation."""

    step: int
    """Steps taken so far."""
    loop: int
    """Current loop index (0-based)."""
    acc_change: float
    """Current minus original val accuracy (fraction)."""
    width_orig: int
    """Original width of the current layer."""
    best_removed: float = 0.0
    """Fraction of the original parameters removed by the smallest network within the tolerance so far."""
    drop_bound_pp: float = 0.0
    """Upper confidence bound of the val drop in pp (tolerance.drop_bound_pp)."""
    within: bool = True
    """drop_bound_pp <= tolerance."""


def slog(x: torch.Tensor | float) -> torch.Tensor:
    """sign(x) * log1p(|x|): compresses large magnitudes, keeps small ones as they are."""
    x = torch.as_tensor(x, dtype=torch.float64)
    return torch.sign(x) * torch.log1p(x.abs())


def moments(values: torch.Tensor) -> list[float]:
    """mean, std, skew, excess kurtosis, min, max of all entries; skew/kurtosis 0 without variance."""
    v = values.detach().reshape(-1).double()
    if v.numel() == 0:
        return [0.0] * 6
    mean = v.mean()
    centred = v - mean
    sq = centred * centred  # products instead of pow(): several times faster on big layers
    var = sq.mean()
    if var.item() <= 1e-24 * max(1.0, mean.item() ** 2):
        skew = kurt = torch.zeros((), dtype=torch.float64)
    else:
        skew = (sq * centred).mean() / var.pow(1.5)
        kurt = (sq * sq).mean() / (var * var) - 3.0
    return [mean.item(), var.sqrt().item(), skew.item(), kurt.item(), v.min().item(), v.max().item()]


def weight_stats(weight: torch.Tensor) -> list[float]:
    """The 8 weight statistics of a Linear's weight [out, in] (see OBS_FEATURES)."""
    fan_in = weight.shape[1]
    l1 = weight.abs().sum(dim=1).mean().item() / fan_in
    l2 = weight.norm(dim=1).mean().item() / math.sqrt(fan_in)
    return moments(weight) + [l1, l2]


def activation_stats(acts: torch.Tensor) -> list[float]:
    """The 8 activation statistics plus the dead fraction of activations [rows, neurons]."""
    a = acts.double()
    l1 = a.abs().mean().item()
    l2 = a.pow(2).mean(dim=0).sqrt().mean().item()
    dead = (a.std(dim=0, unbiased=False) < DEAD_STD).double().mean().item()
    return moments(a) + [l1, l2, dead]


def _pre_kind(module: nn.Module) -> str:
    if isinstance(module, nn.BatchNorm1d):
        return "batchnorm"
    if isinstance(module, nn.Dropout):
        return "dropout"
    return "none"


def _width(w: int) -> list[float]:
    return [w / 1000.0, math.log1p(w) / _LOG_WIDTH]


def _one_hot(value: str, choices) -> list[float]:
    return [1.0 if value == c else 0.0 for c in choices]


def _structure(model: MLP, layer: int, ctx: EpisodeContext, progress: Progress) -> list[float]:
    spec = model.spec
    widths = spec.widths()
    width = widths[layer + 1]
    return [
        layer / 10.0,
        layer / (spec.depth - 1) if spec.depth > 1 else 0.0,
        1.0 if layer == spec.depth - 1 else 0.0,
        spec.depth / 10.0,
        ctx.depth_orig / 10.0,
        *_width(widths[layer]),
        *_width(width),
        *_width(widths[layer + 2]),
        progress.width_orig / 1000.0,
        width / max(progress.width_orig, 1),
        1.0 - count_params(model) / ctx.params_orig,
        progress.acc_change,
        progress.loop / ctx.loops,
        ctx.loops / 10.0,
        progress.step / ctx.total_steps,
    ]


def _kinds(model: MLP, layer: int) -> list[float]:
    spec = model.spec
    pre_out = _pre_kind(model.blocks[layer + 1].pre) if layer + 1 < spec.depth else "none"
    return (
        _one_hot(_pre_kind(model.blocks[layer].pre), PRE_LAYERS)
        + _one_hot(pre_out, PRE_LAYERS)
        + _one_hot(spec.activations[layer], ACTIVATIONS)
    )


def _task(ctx: EpisodeContext, progress: Progress) -> list[float]:
    return [
        math.log10(max(ctx.rows, 1)),
        math.log10(max(ctx.features, 1)),
        math.log10(max(ctx.classes, 1)),
        ctx.tolerance / 100.0,
        math.log1p(ctx.tolerance),
        # the floor keeps a = 0 finite; the vector is clipped to [-CLIP, CLIP] anyway
        progress.drop_bound_pp / max(ctx.tolerance, TOLERANCE_FLOOR),
        1.0 if progress.within else 0.0,
        progress.best_removed,
    ]


@torch.no_grad()
def observe(model: MLP, layer: int, ctx: EpisodeContext, progress: Progress) -> np.ndarray:
    """The observation (float32 [OBS_SIZE], finite, within [-10, 10]) for hidden layer `layer` of `model`."""
    w_stats = slog(torch.tensor(weight_stats(model.blocks[layer].linear.weight))).tolist()
    a_all = activation_stats(layer_activations(model, layer, ctx.probe))
    a_stats = slog(torch.tensor(a_all[:8])).tolist() + [a_all[8]]
    values = _structure(model, layer, ctx, progress) + w_stats + a_stats + _kinds(model, layer) + _task(ctx, progress)
    obs = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=CLIP, neginf=-CLIP)
    return np.clip(obs, -CLIP, CLIP).astype(np.float32)


def probe_rows(X: torch.Tensor, rows: int, seed: int) -> torch.Tensor:
    """A fixed random subset of at most `rows` rows of X (the probe batch of one network)."""
    if len(X) <= rows:
        return X.clone()
    idx = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))[:rows]
    return X[torch.sort(idx).values].clone()
