"""What a zoo is: its settings (`ZooConfig`, validated when made) and the names they fix.

Dataset folders. `dataset_slug` maps every dataset name to one safe folder name, distinct for
distinct names: a plain name (letters, digits, `_`, `-`) is its own folder, `sklearn:NAME` is
`sklearn_NAME`, and any other name (a file path, a name with dots or spaces) is a readable part
plus a short hash of the full name. Slugs never contain a dot, so the network IDs built from
them (`network_id`) never look like a file suffix.

Limits. At most `MAX_NETWORKS` (10000) networks per dataset. Every setting is validated when
the `ZooConfig` is made.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import asdict, dataclass, field
from numbers import Integral
from pathlib import Path


from neon_ray.data.sources import SKLEARN_PREFIX, SKLEARN_SETS, table_suffix
from neon_ray.data.splits import SplitConfig
from neon_ray.errors import ConfigError
from neon_ray.nets.spec import SamplerConfig
from neon_ray.nets.training import TrainConfig
from neon_ray.runtime.files import check_path_component
from neon_ray.nets.checks import MAX_SEED, check_int

MAX_NETWORKS = 10_000
"""Most networks per dataset (ZooConfig.networks, `zoo build --networks`)."""
SETTLE_EPOCHS = 100
"""Most epochs of the zoo's settle phase (`zoo_train_config`), fewer when max_epochs is lower."""
MAX_CPUS_PER_TASK = 1024
"""Largest ZooConfig.cpus_per_task."""
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,79}")
_SLUG_HASH_CHARS = 10


def zoo_train_config(**changes) -> TrainConfig:
    """NEON's base-network training, run until it converges in eval mode (`changes` override fields).

    Adam 1e-3, batch 64, early stopping on val loss with the best weights restored, as before,
    but patience 10 epochs and a plateau schedule (halve the rate at each plateau, stop at the
    fourth) within 400 epochs, then a settle phase of up to min(100, max_epochs) epochs in the
    inference regime, every BatchNorm and Dropout in eval mode (`TrainConfig.settle_epochs`).
    Patience 5 / 100 epochs stopped too early: an episode's fine-tuning of an unpruned network
    then raised its accuracy (method.md §11; `zoo check` measures it as the no-op gain). The
    plateau schedule alone left +2.7 pp mean no-op gain on a 40-network zoo, +8 to +9 pp on
    networks with Dropout in front of a BatchNorm or Dropout on every layer: BatchNorm statistics
    collected behind an active Dropout are never what eval mode sees, and the episode's
    fine-tuning runs frozen BatchNorms and most Dropouts in eval mode. With the settle phase it
    measured 0.00 pp, and mean test accuracy rose from 0.800 to 0.838.
    """
    settle = changes.pop("settle_epochs", min(SETTLE_EPOCHS, changes.get("max_epochs", 400)))
    return TrainConfig(**{"max_epochs": 400, "patience": 10, "lr_schedule": "plateau", "lr_factor": 0.5,
                          "lr_drops": 3, "settle_epochs": settle, **changes})


@dataclass(frozen=True)
class ZooConfig:
    """What to build: datasets, how many networks, and how they are drawn and trained."""

    out: str
    """Zoo directory (created if missing)."""
    datasets: tuple[str, ...]
    """Dataset names (MANIFEST names in data_dir, sklearn:NAME, or file paths)."""
    data_dir: str | None = None
    """Directory with MANIFEST.csv; not needed for sklearn: datasets."""
    networks: int = 30
    """Networks per dataset, 1 to MAX_NETWORKS (10000)."""
    test_networks: int = 6
    """How many of each dataset's networks the agent never trains on (role 'test')."""
    seed: int = 0
    """Seed of the data splits, architectures, initial weights and roles (0 to 2**32 - 1)."""
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    """Architecture distribution."""
    train: TrainConfig = field(default_factory=zoo_train_config)
    """Base-network training budget (default `zoo_train_config()`)."""
    split: SplitConfig = field(default_factory=SplitConfig)
    """Train/val/test fractions."""
    cpus_per_task: float = 1.0
    """Ray CPUs (and torch threads) per training task."""

    def __post_init__(self) -> None:
        if isinstance(self.out, os.PathLike):
            object.__setattr__(self, "out", os.fspath(self.out))
        if not isinstance(self.out, str):
            raise ConfigError(f"ZooConfig.out must be a directory path, got {self.out!r}")
        if isinstance(self.data_dir, os.PathLike):
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))
        if self.data_dir is not None and (not isinstance(self.data_dir, str) or not self.data_dir.strip()):
            raise ConfigError(f"ZooConfig.data_dir must be None or a directory path, got {self.data_dir!r}")
        object.__setattr__(self, "datasets", _checked_datasets(self.datasets))
        check_int("ZooConfig.networks", self.networks, 1, MAX_NETWORKS)
        if not isinstance(self.test_networks, bool) and isinstance(self.test_networks, Integral) \
                and self.test_networks > self.networks:
            raise ConfigError(f"ZooConfig.test_networks must be an integer in [0, networks = {self.networks}], "
                              f"got {self.test_networks!r}")
        check_int("ZooConfig.test_networks", self.test_networks, 0)
        check_int("ZooConfig.seed", self.seed, 0, MAX_SEED)
        cpus = self.cpus_per_task
        if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not math.isfinite(cpus) \
                or not 0 < cpus <= MAX_CPUS_PER_TASK:
            raise ConfigError(f"ZooConfig.cpus_per_task must be a finite number in (0, {MAX_CPUS_PER_TASK}], got {cpus!r}")
        for name, kind in (("sampler", SamplerConfig), ("train", TrainConfig), ("split", SplitConfig)):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(f"ZooConfig.{name} must be a {kind.__name__}, got {getattr(self, name)!r}")

    def identity(self) -> dict:
        """The settings that must match for two builds to write into the same zoo."""
        return {
            "seed": self.seed,
            "data_dir": str(Path(self.data_dir).resolve()) if self.data_dir else None,
            "sampler": asdict(self.sampler),
            "train": asdict(self.train),
            "split": asdict(self.split),
            "networks": self.networks,
            "test_networks": self.test_networks,
        }


def _checked_datasets(datasets) -> tuple[str, ...]:
    """The dataset names as a tuple of distinct strings, each valid, no two sharing a folder."""
    datasets = (datasets,) if isinstance(datasets, (str, os.PathLike)) else tuple(datasets or ())
    datasets = tuple(dict.fromkeys(os.fspath(d) if isinstance(d, os.PathLike) else d for d in datasets))
    if not datasets:
        raise ConfigError("ZooConfig: no datasets given")
    for name in datasets:
        _check_dataset_name(name)
    check_distinct_slugs(datasets, "ZooConfig.datasets")
    return datasets


def _check_dataset_name(name) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"ZooConfig.datasets: every dataset name must be a non-empty string, got {name!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ConfigError(f"ZooConfig.datasets: dataset name {name!r} contains a control character")
    if name.strip() in (".", ".."):
        raise ConfigError(f"ZooConfig.datasets: {name!r} is not a dataset name (expected a MANIFEST name, sklearn:NAME or a file path)")


def check_distinct_slugs(names, where: str) -> None:
    """ConfigError if two of `names` would share a zoo folder (`dataset_slug`)."""
    seen: dict[str, str] = {}
    for name in names:
        slug = dataset_slug(name)
        if seen.setdefault(slug, name) != name:
            raise ConfigError(f"{where}: datasets {seen[slug]!r} and {name!r} would share the zoo folder {slug!r}; rename one")


def dataset_slug(name: str) -> str:
    """The zoo folder name of a dataset: one safe path component, distinct for distinct names, never with a dot.

    A plain name (a letter or digit, then letters, digits, `_` or `-`, 80 characters at most;
    every benchmark MANIFEST name) is its own folder, and `sklearn:NAME` of a bundled set is
    `sklearn_NAME`. Any other name (a file path, `path#target`, a name with dots, spaces or
    other characters) becomes a readable part (the file name without its table suffix, other
    characters replaced by `_`, at most 40 characters) plus `-` and the first 10 hex digits of
    the SHA-256 of the full name: `a/x.csv` and `b/x.csv` get different folders.
    """
    name = str(name)
    if _PLAIN_NAME.fullmatch(name):
        slug = name
    elif name.startswith(SKLEARN_PREFIX) and name[len(SKLEARN_PREFIX):] in SKLEARN_SETS:
        slug = "sklearn_" + name[len(SKLEARN_PREFIX):]
    else:
        path_part = name.rpartition("#")[0] if "#" in name else name
        base = re.split(r"[\\/]", path_part)[-1]
        base = base[: len(base) - len(table_suffix(base) or "")]
        readable = re.sub(r"[^A-Za-z0-9_-]+", "_", base).strip("_-")[:40] or "dataset"
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_SLUG_HASH_CHARS]
        slug = f"{readable}-{digest}"
    return check_path_component(slug, "dataset folder")


def network_id(dataset: str, seed: int, index: int) -> str:
    """Stable ID of a zoo network, the key every result is matched by: `{slug}__s{seed}__n{index:03d}`."""
    return f"{dataset_slug(dataset)}__s{int(seed)}__n{int(index):03d}"
