"""Stage 2 of Deep Compression: per-layer weight sharing by 1-D k-means, then centroid fine-tuning.

Each prunable weight tensor keeps its mask; its surviving weights are clustered into at most
2**bits centroids (the codebook) and each survivor stores only its cluster index. Centroid
fine-tuning differentiates the loss through `weight = codebook[index] * mask`, so autograd's
gradient of a centroid is exactly the sum of its members' weight gradients (Han et al. 2016,
Fig. 3) and pruned weights stay zero. It trains with `nets.training.fit`, on a module whose
parameters are the codebooks, so early stopping keeps and restores the best codebooks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from neon_ray.deepcomp.prune import Masks, prunable_weights
from neon_ray.errors import ConfigError
from neon_ray.nets.training import FitResult, TrainConfig, fit

INITS = ("linear", "density", "forgy")
MAX_BITS = 12


def init_centroids(values: np.ndarray, k: int, method: str, rng: np.random.Generator) -> np.ndarray:
    """k sorted starting centroids for 1-D `values` (k <= len(values))."""
    values = np.asarray(values, dtype=np.float64)
    if method == "linear":
        # Keeps centroids out at the rare large weights, which matter most (Han et al. 2016).
        return np.linspace(values.min(), values.max(), k)
    if method == "density":
        return np.quantile(values, (np.arange(k) + 0.5) / k)
    if method == "forgy":
        return np.sort(rng.choice(values, size=k, replace=False))
    raise ConfigError(f"unknown centroid initialisation {method!r}, expected one of {INITS}")


def assign(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest of sorted `centroids` for each value."""
    midpoints = (centroids[1:] + centroids[:-1]) / 2
    return np.searchsorted(midpoints, values)


def kmeans_1d(values: np.ndarray, k: int, init: str = "linear", seed: int = 0, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's algorithm in one dimension: (sorted centroids [k], label per value).

    k is reduced to len(values) when there are fewer values. Empty clusters keep their centroid.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    k = min(int(k), len(values))
    if k == 0:
        return np.zeros(0), np.zeros(len(values), dtype=np.int64)
    centroids = init_centroids(values, k, init, np.random.default_rng(seed))
    labels = assign(values, centroids)
    for _ in range(max_iter):
        sums = np.bincount(labels, weights=values, minlength=k)
        counts = np.bincount(labels, minlength=k)
        centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        order = np.argsort(centroids, kind="stable")
        centroids = centroids[order]
        new = assign(values, centroids)
        if np.array_equal(new, labels) and np.array_equal(order, np.arange(k)):
            break
        labels = new
    # Each centroid is the mean of its members under the final labels.
    sums = np.bincount(labels, weights=values, minlength=k)
    counts = np.bincount(labels, minlength=k)
    return np.where(counts > 0, sums / np.maximum(counts, 1), centroids), labels


@dataclass
class SharedWeights:
    """One weight tensor as a codebook plus a cluster index per surviving weight."""

    codebook: torch.Tensor
    """Centroid values, float32 [k]."""
    index: torch.Tensor
    """Cluster index per element, int64, the weight's shape (0 where pruned)."""
    mask: torch.Tensor
    """True where the weight survived pruning."""
    bits: int
    """Index width: the codebook has at most 2**bits entries."""

    def weight(self, codebook: torch.Tensor | None = None) -> torch.Tensor:
        """The dense weight this stands for (differentiable in `codebook`)."""
        cb = self.codebook if codebook is None else codebook
        if cb.numel() == 0:
            return torch.zeros(self.index.shape, dtype=torch.float32)
        return cb[self.index] * self.mask


def share_layer(weight: torch.Tensor, mask: torch.Tensor, bits: int, init: str, seed: int) -> SharedWeights:
    """k-means over the surviving entries of one weight tensor."""
    if not 1 <= bits <= MAX_BITS:
        raise ConfigError(f"weight-sharing bits must be in 1..{MAX_BITS}, got {bits}")
    survivors = weight.detach()[mask].double().numpy()
    centroids, labels = kmeans_1d(survivors, 1 << bits, init, seed)
    # Empty clusters would cost codebook bytes and never be used: drop them and renumber.
    used = np.unique(labels)
    centroids, labels = centroids[used], np.searchsorted(used, labels)
    index = torch.zeros(weight.shape, dtype=torch.int64)
    index[mask] = torch.from_numpy(labels)
    return SharedWeights(torch.from_numpy(centroids).float(), index, mask.clone(), bits)


@torch.no_grad()
def materialise(model: nn.Module, shared: dict[str, SharedWeights]) -> None:
    """Write each shared tensor's dense weight into the model."""
    weights = prunable_weights(model)
    for name, sw in shared.items():
        weights[name].copy_(sw.weight())


def share_weights(model: nn.Module, masks: Masks, bits: dict[str, int], init: str = "linear", seed: int = 0) -> dict[str, SharedWeights]:
    """Cluster every masked weight tensor (bits per name) and write the shared weights into the model."""
    weights = prunable_weights(model)
    shared = {name: share_layer(weights[name], masks[name], bits[name], init, seed + i) for i, name in enumerate(masks)}
    materialise(model, shared)
    return shared


def shared_forward(model: nn.Module, shared: dict[str, SharedWeights], codebooks: list[torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """Logits of `model` with each shared weight rebuilt from the given (trainable) codebooks."""
    substitutes = {name: sw.weight(cb) for (name, sw), cb in zip(shared.items(), codebooks)}
    return functional_call(model, substitutes, (X,))


class _CodebookNet(nn.Module):
    """`model` with every shared weight rebuilt from a trainable codebook (a parameter of this module) on each forward.

    Its state_dict holds the codebooks next to the model's own state, so `fit`'s kept best
    state covers them.
    """

    def __init__(self, model: nn.Module, shared: dict[str, SharedWeights]):
        super().__init__()
        self.model = model
        self.codebooks = nn.ParameterList([nn.Parameter(sw.codebook.clone()) for sw in shared.values()])
        self._shared = shared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shared_forward(self.model, self._shared, list(self.codebooks), x)


def finetune_centroids(
    model: nn.Module,
    shared: dict[str, SharedWeights],
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    cfg: TrainConfig,
    seed: int = 0,
) -> FitResult:
    """Train the codebooks and every non-shared parameter (biases, BatchNorm); updates `shared` and the model."""
    net = _CodebookNet(model, shared)
    weights = prunable_weights(model)
    shared_ids = {id(weights[name]) for name in shared}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in shared_ids]
    result = fit(net, train, val, cfg, seed, params=[*net.codebooks, *others])
    for sw, cb in zip(shared.values(), net.codebooks):
        sw.codebook = cb.detach().clone()
    materialise(model, shared)
    return result
