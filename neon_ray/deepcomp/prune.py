"""Stage 1 of Deep Compression: per-layer magnitude pruning with fixed masks and retraining.

Rule (method.md §10): in every Linear and Conv2d weight, zero each weight with
|w| < q * std(w), where std is the population standard deviation of the layer's weight tensor
as it currently is (already-pruned zeros included). Masks only shrink: a weight pruned at one
step stays pruned. Iterating with a growing q (a schedule) prunes gradually, with retraining in
between so the survivors can compensate.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from neon_ray.errors import ConfigError
from neon_ray.nets.training import FitResult, TrainConfig, fit

Masks = dict[str, torch.Tensor]

MAX_Q = 10.0
"""Largest pruning quality parameter: |w| < 10 std removes all but a sliver of a layer (at most 1%
of it, by Chebyshev, for zero-mean weights); a larger or non-finite q only kills the network."""


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """state_dict name -> weight of every Linear and Conv2d, in module order."""
    return {
        f"{name}.weight" if name else "weight": module.weight
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, nn.Conv2d))
    }


def layer_kind(model: nn.Module, weight_name: str) -> str:
    """'conv' or 'fc' for a weight name from `prunable_weights`."""
    module = model.get_submodule(weight_name.rsplit(".", 1)[0]) if "." in weight_name else model
    return "conv" if isinstance(module, nn.Conv2d) else "fc"


def threshold_mask(weight: torch.Tensor, q: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean keep-mask: |w| >= q * std(w), and-ed with an existing mask."""
    if not (isinstance(q, (int, float)) and math.isfinite(q) and 0 <= q):
        # NaN would compare false against every weight and prune the whole layer
        raise ConfigError(f"pruning quality parameter q must be >= 0 and finite, got {q!r}")
    w = weight.detach()
    keep = w.abs() >= q * w.std(correction=0)
    return keep if mask is None else keep & mask


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Zero the pruned weights in place."""
    weights = prunable_weights(model)
    for name, mask in masks.items():
        weights[name].mul_(mask)


def prune_step(model: nn.Module, masks: Masks | None, q: float, q_scale: dict[str, float] | None = None) -> Masks:
    """One pruning step at quality parameter q (times q_scale[name] where given); applies and returns the masks."""
    q_scale = q_scale or {}
    weights = prunable_weights(model)
    unknown = set(q_scale) - set(weights)
    if unknown:
        raise ConfigError(f"q_scale names unknown weights {sorted(unknown)}; prunable weights are {list(weights)}")
    masks = {
        name: threshold_mask(w, q * q_scale.get(name, 1.0), None if masks is None else masks[name])
        for name, w in weights.items()
    }
    apply_masks(model, masks)
    return masks


def retrain_masked(
    model: nn.Module,
    masks: Masks,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    cfg: TrainConfig,
    seed: int = 0,
    l2: float = 0.0,
) -> FitResult:
    """Retrain every parameter with pruned weights held at exactly zero.

    `l2` > 0 adds l2 * sum(w**2) over the prunable weights to the loss (Han et al. retrain with L2).
    """
    weights = prunable_weights(model)
    masked = [(weights[name], mask.to(weights[name].dtype)) for name, mask in masks.items()]

    def l2_term() -> torch.Tensor:
        return l2 * sum((w * w).sum() for w, _ in masked)

    @torch.no_grad()
    def reapply_masks() -> None:
        # Pruned weights still get gradients; the optimiser's element-wise update moves them and this
        # puts them back to exactly zero before anything reads the model (survivors are unaffected).
        for w, m in masked:
            w.mul_(m)

    return fit(model, train, val, cfg, seed, regulariser=l2_term if l2 > 0 else None, after_step=reapply_masks)


def magnitude_prune(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    q_schedule: Sequence[float],
    cfg: TrainConfig | None,
    q_scale: dict[str, float] | None = None,
    seed: int = 0,
    log=None,
    l2: float = 0.0,
) -> Masks:
    """Prune and retrain (`cfg`, None: no retraining; `retrain_masked`'s `l2`) once per q in `q_schedule`, in place.

    Returns the final masks.
    """
    masks = None
    for step, q in enumerate(q_schedule):
        masks = prune_step(model, masks, q, q_scale)
        result = None if cfg is None else retrain_masked(model, masks, train, val, cfg, seed + step, l2)
        if log is not None:
            log(_describe_step(q, masks, result))
    return masks if masks is not None else {n: torch.ones_like(w, dtype=torch.bool) for n, w in prunable_weights(model).items()}


def _describe_step(q: float, masks: Masks, result: FitResult | None) -> str:
    kept = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    per_layer = ", ".join(f"{n.removesuffix('.weight')} {m.float().mean():.1%}" for n, m in masks.items())
    retrained = "not retrained" if result is None else (
        f"retrained {result.epochs} epochs (best {result.best_epoch}, val loss {result.best_val_loss:.4f}, {result.seconds:.0f}s)")
    return f"prune q={q:.3g}: {kept:.2%} of prunable weights kept ({per_layer}); {retrained}"
