"""The two MNIST networks of the Deep Compression papers.

- LeNet-300-100: a plain MLP 784-300-100-10 with ReLU, built as an `ArchSpec` so every neon-ray
  tool handles it (266,610 parameters).
- LeNet-5, Caffe's variant that Han et al. used: conv 20@5x5, max-pool 2, conv 50@5x5,
  max-pool 2, fc 800->500, ReLU, fc 500->10 (431,080 parameters, 1720 KB as float32). Like the
  MLPs it takes flat rows [n, channels*size*size], so it trains on the same `Dataset` tensors.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from neon_ray.nets.checks import check_int
from neon_ray.nets.spec import ArchSpec


def lenet_300_100_spec(in_features: int = 784, n_classes: int = 10) -> ArchSpec:
    """LeNet-300-100 as an ArchSpec (no BatchNorm, no Dropout)."""
    return ArchSpec(in_features, n_classes, (300, 100), ("relu", "relu"), ("none", "none"))


@dataclass(frozen=True)
class LeNet5Config:
    """Input geometry and classes of a LeNet-5."""

    in_channels: int = 1
    """Image channels."""
    image_size: int = 28
    """Height and width of the (square) images."""
    n_classes: int = 10
    """Output logits."""

    def __post_init__(self) -> None:
        check_int("LeNet5Config.in_channels", self.in_channels, 1)
        # Two 5x5 valid convolutions each followed by a 2x2 pool must leave at least 1 pixel.
        check_int("LeNet5Config.image_size", self.image_size, 16)
        check_int("LeNet5Config.n_classes", self.n_classes, 2)

    def to_dict(self) -> dict:
        return asdict(self)


class LeNet5(nn.Module):
    """Caffe's LeNet-5 on flat input rows; `forward` returns logits."""

    def __init__(self, cfg: LeNet5Config = LeNet5Config()):
        super().__init__()
        self.cfg = cfg
        side = ((cfg.image_size - 4) // 2 - 4) // 2
        self.conv1 = nn.Conv2d(cfg.in_channels, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(50 * side * side, 500)
        self.fc2 = nn.Linear(500, cfg.n_classes)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        x = x.view(-1, c.in_channels, c.image_size, c.image_size)
        x = self.pool(self.conv2(self.pool(self.conv1(x))))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def build_lenet5(cfg: LeNet5Config = LeNet5Config(), seed: int | None = None) -> LeNet5:
    """A LeNet-5; with `seed`, its initial weights are reproducible."""
    if seed is None:
        return LeNet5(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LeNet5(cfg)
