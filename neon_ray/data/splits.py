"""The three disjoint splits: how they are drawn (`SplitConfig`, `split_indices`), checked, and held (`Dataset`).

Splits. Every (dataset, seed) gets three disjoint splits, train / val / test, of sizes
round(n * fraction) for val and test (at least one row each) and the rest for train. With
`SplitConfig.stratify` (the default) every class with at least `MIN_ROWS_TO_STRATIFY` rows (one
per split) is spread over the splits in proportion; the rows of smaller classes fall back to
plain random placement, and with `stratify=False` all rows do. The split depends only on the
labels and the seed, never on the features.

Minimum size. Every split must hold at least `MIN_SPLIT_ROWS` (10) rows, or accuracy on it is too
coarse to early-stop on or to reward the agent with (one row is 0 % or 100 %); loading a smaller
dataset raises `DataError` with the split sizes and the rows needed. With the default fractions
(0.15 / 0.15) that is 64 rows. A class with no row in train, val or test gives a warning
naming the split and the classes (it cannot be learned or measured there), logged once per
process on this module's logger.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from neon_ray.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MIN_ROWS_TO_STRATIFY = 3
MIN_SPLIT_ROWS = 10
"""Fewest rows each of train, val and test may have (smaller splits cannot measure accuracy)."""
MIN_CAPPED_ROWS = 100
"""Smallest SplitConfig.max_rows: a cap below it leaves splits too coarse to measure a 1 pp change."""


@dataclass(frozen=True)
class SplitConfig:
    """Sizes of the val and test splits (train is the rest) and whether to stratify."""

    val_fraction: float = 0.15
    """Fraction of rows for validation (early stopping, the agent's reward); for idx datasets, of the official training set."""
    test_fraction: float = 0.15
    """Fraction of rows for the reported test accuracy; ignored by idx datasets, which use their official test set."""
    stratify: bool = True
    """Keep class proportions in every split (for classes with at least MIN_ROWS_TO_STRATIFY rows)."""
    max_rows: int | None = None
    """Cap on a table dataset's rows: a larger one is first cut to a (stratified) sample of this many rows; None: all rows."""

    def __post_init__(self) -> None:
        if self.max_rows is not None and (isinstance(self.max_rows, bool) or not isinstance(self.max_rows, (int, np.integer))
                                          or self.max_rows < MIN_CAPPED_ROWS):
            raise ConfigError(f"SplitConfig.max_rows must be null or an integer >= {MIN_CAPPED_ROWS}, got {self.max_rows!r}")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value < 1:
                raise ConfigError(f"SplitConfig.{name} must be a finite number in (0, 1), got {value!r}")
        if not isinstance(self.stratify, (bool, np.bool_)):
            raise ConfigError(f"SplitConfig.stratify must be true or false, got {self.stratify!r}")
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError(
                f"SplitConfig: val_fraction + test_fraction must be < 1 to leave training rows, "
                f"got {self.val_fraction} + {self.test_fraction}"
            )


@dataclass(eq=False, repr=False)
class Dataset:
    """One dataset, split and preprocessed for a given seed."""

    name: str
    """The name it was loaded by (MANIFEST name, sklearn:NAME) or the file's stem for a path."""
    seed: int
    """Seed of the split."""
    X_train: torch.Tensor
    """float32 [n_train, n_features], used to fit weights."""
    y_train: torch.Tensor
    """int64 [n_train] in 0..n_classes-1."""
    X_val: torch.Tensor
    """float32 [n_val, n_features], for early stopping and the agent's reward."""
    y_val: torch.Tensor
    """int64 [n_val]."""
    X_test: torch.Tensor
    """float32 [n_test, n_features], reported only."""
    y_test: torch.Tensor
    """int64 [n_test]."""
    feature_names: list[str] = field(default_factory=list)
    """Names of the encoded features, one per column of X."""
    class_names: list[str] = field(default_factory=list)
    """Original label value of each class index, as text."""
    n_rows: int = 0
    """Rows of the raw data before splitting."""
    source: str = ""
    """Where the data came from (file, MANIFEST, sklearn loader)."""

    def __post_init__(self) -> None:
        # Catches mismatched tensors from code that builds a Dataset by hand.
        widths = {self.X_train.shape[1], self.X_val.shape[1], self.X_test.shape[1]}
        if self.feature_names:
            widths.add(len(self.feature_names))
        if len(widths) != 1:
            raise ValueError(f"Dataset {self.name!r}: splits and feature_names disagree on the feature count")
        for which in ("train", "val", "test"):
            X, y = self.split(which)
            if X.dtype != torch.float32 or y.dtype != torch.int64 or len(X) != len(y):
                raise ValueError(f"Dataset {self.name!r}: {which} needs float32 X and int64 y of equal length")

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def split(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(X, y) of the "train", "val" or "test" split."""
        if which == "train":
            return self.X_train, self.y_train
        if which == "val":
            return self.X_val, self.y_val
        if which == "test":
            return self.X_test, self.y_test
        raise ConfigError(f"unknown split {which!r}, expected 'train', 'val' or 'test'")

    def descriptors(self) -> dict[str, int]:
        """Dataset size descriptors for the agent's observation."""
        return {"rows": int(self.n_rows), "features": self.n_features, "classes": self.n_classes}

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, seed={self.seed}, rows={self.n_rows}, features={self.n_features}, "
            f"classes={self.n_classes}, train/val/test={len(self.y_train)}/{len(self.y_val)}/{len(self.y_test)})"
        )


def check_seed(seed: int) -> int:
    """`seed` as an int; numpy's generators need it non-negative."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def split_indices(
    y: np.ndarray, fractions: Sequence[float], seed: int, stratify: bool = True
) -> list[np.ndarray]:
    """Disjoint sorted row indices: one part per fraction (round(n * f), at least 1) plus the rest.

    With `stratify`, each row gets a key equal to its randomly drawn within-class quantile and
    the rows ordered by key are cut into parts, so every part holds each class in proportion to
    within a row or two. Rows of a class with fewer than MIN_ROWS_TO_STRATIFY rows get a plain
    uniform random key instead (they land in any part), so one tiny class does not cost the
    others their stratification. Without `stratify` the order is a plain random permutation.
    """
    y = np.asarray(y)
    n = len(y)
    sizes = [max(1, round(n * f)) for f in fractions]
    if sum(sizes) >= n:
        raise DataError(f"{n} rows are too few to split into parts of fractions {list(fractions)} plus a non-empty rest")
    rng = np.random.default_rng(seed)
    if stratify:
        _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
        key = _within_class_quantiles(inverse, counts, rng)
        tiny = counts[inverse] < MIN_ROWS_TO_STRATIFY
        key[tiny] = rng.random(int(tiny.sum()))
        order = np.argsort(key, kind="stable")
    else:
        order = rng.permutation(n)
    bounds = np.cumsum([0, *sizes, n - sum(sizes)])
    return [np.sort(order[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def cap_rows(y: np.ndarray, max_rows: int | None, seed: int, stratify: bool = True) -> np.ndarray | None:
    """Sorted indices of a `max_rows` sample of the rows (classes in proportion), or None to keep them all.

    The sample is drawn with its own generator (seed + 1), so the split drawn from it afterwards
    is as random as any other; the same seed always gives the same sample.
    """
    if max_rows is None or len(y) <= max_rows:
        return None
    return split_indices(y, [max_rows / len(y)], seed + 1, stratify)[0]


def _within_class_quantiles(inverse: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(random rank within its class + jitter) / class size, for every row."""
    perm = rng.permutation(len(inverse))
    grouped = perm[np.argsort(inverse[perm], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(inverse), dtype=np.float64)
    rank[grouped] = np.arange(len(inverse)) - np.repeat(starts, counts)
    return (rank + rng.random(len(inverse))) / counts[inverse]


def rows_needed(fractions: Sequence[float], minimum: int = MIN_SPLIT_ROWS) -> int | None:
    """Fewest rows for which every part of `split_indices(y, fractions)` (and the rest) has `minimum` rows."""
    start = max(math.floor((minimum - 0.5) / min(fractions)), minimum * (len(fractions) + 1))
    for n in range(start, start + 10_000):
        sizes = [max(1, round(n * f)) for f in fractions]
        if min(sizes) >= minimum and n - sum(sizes) >= minimum:
            return n
    return None


def check_split_sizes(where: str, sizes: dict[str, int], fractions: dict[str, float]) -> None:
    """DataError naming every split below MIN_SPLIT_ROWS, the sizes and (where known) the rows needed.

    `fractions` maps each split that is a fraction of the same rows to that fraction (the rest
    of those rows is train); a split not in it (idx's official test set) is checked on its own.
    """
    small = {k: v for k, v in sizes.items() if v < MIN_SPLIT_ROWS}
    if not small:
        return
    shown = ", ".join(f"{k} {v}" for k, v in sizes.items())
    need = rows_needed(list(fractions.values())) if fractions else None
    frac = ", ".join(f"{k}_fraction {v:g}" for k, v in fractions.items())
    hint = f"; with {frac} that takes at least {need} rows" if need and set(small) & {"train", *fractions} else ""
    raise DataError(
        f"{where}: too few rows to measure accuracy: split sizes {shown}, but every split needs at least "
        f"{MIN_SPLIT_ROWS} rows{hint} (use more data or larger fractions)"
    )


def warn_missing_classes(where: str, class_names: Sequence[str], splits: dict[str, np.ndarray | torch.Tensor]) -> None:
    """Log a warning (once per process) for each split in which some class has no row at all."""
    for which, y in splits.items():
        present = set(np.unique(np.asarray(y)).tolist())
        missing = [class_names[i] for i in range(len(class_names)) if i not in present]
        if missing and (where, which) not in _warned:
            _warned.add((where, which))
            shown = ", ".join(repr(c) for c in missing[:8]) + (", ..." if len(missing) > 8 else "")
            log.warning(
                "%s: %d of %d classes have no row in the %s split (%d rows): %s",
                where, len(missing), len(class_names), which, len(y), shown,
            )


_warned: set[tuple[str, str]] = set()
