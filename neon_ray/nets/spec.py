"""Architecture specs for dense networks, the MLP built from them, and NEON's random sampler.

A network is fully described by an `ArchSpec` (JSON-serialisable) plus a state_dict. The MLP
layout is fixed so that state_dict keys are predictable for every tool that slices weights:

    blocks.{i}.pre      Identity | BatchNorm1d(width in) | Dropout   (in front of the Linear)
    blocks.{i}.linear   Linear(width in -> hidden[i])
    blocks.{i}.act      ReLU | Tanh | Sigmoid
    head                Linear(hidden[-1] -> n_classes), emitting logits
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import nn

from neon_ray.errors import ConfigError
from neon_ray.nets.checks import check_int

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
PRE_LAYERS = ("none", "batchnorm", "dropout")
MAX_LAYERS = 64
"""Most hidden layers a sampled architecture may have (SamplerConfig.min_layers / max_layers)."""
MAX_WIDTH = 16384
"""Widest hidden layer SamplerConfig.widths may list."""


@dataclass(frozen=True)
class ArchSpec:
    """A fully-connected classifier: input width, hidden widths, per-layer options, classes."""

    in_features: int
    n_classes: int
    hidden: tuple[int, ...]
    activations: tuple[str, ...]
    pre: tuple[str, ...]
    dropout_p: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(w) for w in self.hidden))
        object.__setattr__(self, "activations", tuple(self.activations))
        object.__setattr__(self, "pre", tuple(self.pre))
        if self.in_features < 1 or self.n_classes < 2:
            raise ConfigError(
                f"ArchSpec needs in_features >= 1 and n_classes >= 2, got {self.in_features}, {self.n_classes}"
            )
        if not (len(self.hidden) == len(self.activations) == len(self.pre)):
            raise ConfigError("ArchSpec: hidden, activations and pre must have the same length")
        for w in self.hidden:
            if w < 1:
                raise ConfigError(f"ArchSpec: hidden widths must be >= 1, got {self.hidden}")
        for a in self.activations:
            if a not in ACTIVATIONS:
                raise ConfigError(f"ArchSpec: unknown activation {a!r}, expected one of {sorted(ACTIVATIONS)}")
        for p in self.pre:
            if p not in PRE_LAYERS:
                raise ConfigError(f"ArchSpec: unknown pre-layer {p!r}, expected one of {PRE_LAYERS}")

    @property
    def depth(self) -> int:
        """Number of hidden layers."""
        return len(self.hidden)

    def widths(self) -> list[int]:
        """Input width, hidden widths, output width."""
        return [self.in_features, *self.hidden, self.n_classes]

    def with_width(self, layer: int, width: int) -> "ArchSpec":
        hidden = list(self.hidden)
        hidden[layer] = width
        return replace(self, hidden=tuple(hidden))

    def without_layer(self, layer: int) -> "ArchSpec":
        """The spec after hidden layer `layer` is merged away (see pruning.structured.remove_layer).

        The merged Linear sits where blocks[layer] was: it keeps blocks[layer].pre (on the
        unchanged input width) and takes the activation of the layer after, while
        blocks[layer+1].pre is folded into the merged weights. When `layer` is the last hidden
        layer, the merged Linear is the head and blocks[layer] disappears entirely.
        """
        keep_act = [i for i in range(self.depth) if i != layer]
        dropped_pre = layer + 1 if layer + 1 < self.depth else layer
        keep_pre = [i for i in range(self.depth) if i != dropped_pre]
        return replace(
            self,
            hidden=tuple(self.hidden[i] for i in keep_act),
            activations=tuple(self.activations[i] for i in keep_act),
            pre=tuple(self.pre[i] for i in keep_pre),
        )

    def describe(self) -> str:
        """Compact human-readable form, e.g. `5-[bn]300relu-[do]100tanh-2`."""
        tags = {"none": "", "batchnorm": "[bn]", "dropout": "[do]"}
        parts = [f"{tags[p]}{w}{a}" for w, a, p in zip(self.hidden, self.activations, self.pre)]
        return "-".join([str(self.in_features), *parts, str(self.n_classes)])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"], d["activations"], d["pre"] = list(self.hidden), list(self.activations), list(self.pre)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ArchSpec":
        try:
            return cls(
                in_features=int(d["in_features"]),
                n_classes=int(d["n_classes"]),
                hidden=tuple(d["hidden"]),
                activations=tuple(d["activations"]),
                pre=tuple(d["pre"]),
                dropout_p=float(d.get("dropout_p", 0.5)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a valid architecture spec ({exc!r}): {d!r}") from exc

    @classmethod
    def from_json(cls, text: str) -> "ArchSpec":
        return cls.from_dict(json.loads(text))


class MaskDropout(nn.Dropout):
    """Inverted dropout with its mask drawn as `rand_like(x) >= p`.

    The same distribution as nn.Dropout, but torch's CPU `bernoulli_` kernel costs more than
    the matmul of a 128 x 720 -> 400 layer (bench step profile: 1.15 ms against 0.41 ms for
    this mask), and fine-tuning with dropout is the inner loop of every pruning step.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return torch.zeros_like(x)
        return x * (torch.rand_like(x) >= self.p) * (1.0 / (1.0 - self.p))


class HiddenBlock(nn.Module):
    def __init__(self, width_in: int, width_out: int, pre: str, act: str, dropout_p: float):
        super().__init__()
        if pre == "batchnorm":
            self.pre = nn.BatchNorm1d(width_in)
        elif pre == "dropout":
            self.pre = MaskDropout(dropout_p)
        else:
            self.pre = nn.Identity()
        self.linear = nn.Linear(width_in, width_out)
        self.act = ACTIVATIONS[act]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(self.pre(x)))


class MLP(nn.Module):
    """The network an `ArchSpec` describes; `forward` returns logits."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.spec = spec
        widths = spec.widths()
        self.blocks = nn.ModuleList(
            HiddenBlock(widths[i], widths[i + 1], spec.pre[i], spec.activations[i], spec.dropout_p)
            for i in range(spec.depth)
        )
        self.head = nn.Linear(widths[-2], spec.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def build_mlp(spec: ArchSpec, seed: int | None = None) -> MLP:
    """Build the MLP for `spec`; with `seed`, its initial weights are reproducible."""
    if seed is None:
        return MLP(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLP(spec)


@dataclass(frozen=True)
class SamplerConfig:
    """NEON's random architecture distribution (method.md §2); defaults are the paper's."""

    min_layers: int = 1
    """Fewest hidden layers."""
    max_layers: int = 6
    """Most hidden layers."""
    widths: tuple[int, ...] = tuple(range(100, 1001, 100))
    """Hidden widths drawn uniformly from this set."""
    pre_probs: dict = field(default_factory=lambda: {"dropout": 1 / 3, "batchnorm": 1 / 3, "none": 1 / 3})
    """Probability of each layer in front of a hidden Linear."""
    act_probs: dict = field(default_factory=lambda: {"relu": 0.9, "tanh": 0.05, "sigmoid": 0.05})
    """Probability of each hidden activation."""
    dropout_p: float = 0.5
    """Dropout probability where Dropout is drawn."""

    def __post_init__(self) -> None:
        for name in ("min_layers", "max_layers"):
            check_int(f"SamplerConfig.{name}", getattr(self, name), 1, MAX_LAYERS)
        if self.min_layers > self.max_layers:
            raise ConfigError(f"SamplerConfig: need 1 <= min_layers <= max_layers, got {self.min_layers}, {self.max_layers}")
        widths = self.widths
        if isinstance(widths, (str, bytes)) or not hasattr(widths, "__len__") or len(widths) == 0:
            raise ConfigError(f"SamplerConfig.widths must be a non-empty list of integers in [1, {MAX_WIDTH}], got {widths!r}")
        for w in widths:
            check_int("SamplerConfig.widths entry", w, 1, MAX_WIDTH)
        object.__setattr__(self, "widths", tuple(int(w) for w in widths))
        for name, probs, allowed in (("pre_probs", self.pre_probs, PRE_LAYERS), ("act_probs", self.act_probs, ACTIVATIONS)):
            if not isinstance(probs, dict):
                raise ConfigError(f"SamplerConfig.{name} must be a dict of probabilities over {sorted(allowed)}, got {probs!r}")
            unknown = set(probs) - set(allowed)
            bad = [v for v in probs.values() if not _is_number(v) or not math.isfinite(v) or not 0 <= v <= 1]
            if unknown or bad or not math.isclose(sum(probs.values()), 1.0, abs_tol=1e-6):
                raise ConfigError(f"SamplerConfig: {name} must be probabilities over {sorted(allowed)} summing to 1, got {probs}")
        if not _is_number(self.dropout_p) or not math.isfinite(self.dropout_p) or not 0 <= self.dropout_p < 1:
            raise ConfigError(f"SamplerConfig.dropout_p must be a number in [0, 1), got {self.dropout_p!r}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def sample_spec(rng: np.random.Generator, in_features: int, n_classes: int, cfg: SamplerConfig) -> ArchSpec:
    """Draw one architecture from NEON's distribution."""
    depth = int(rng.integers(cfg.min_layers, cfg.max_layers + 1))
    pre_names, pre_p = zip(*sorted(cfg.pre_probs.items()))
    act_names, act_p = zip(*sorted(cfg.act_probs.items()))
    return ArchSpec(
        in_features=in_features,
        n_classes=n_classes,
        hidden=tuple(int(w) for w in rng.choice(cfg.widths, size=depth)),
        activations=tuple(str(a) for a in rng.choice(act_names, size=depth, p=act_p)),
        pre=tuple(str(p) for p in rng.choice(pre_names, size=depth, p=pre_p)),
        dropout_p=cfg.dropout_p,
    )
