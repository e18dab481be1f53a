"""Datasets: loading, the three splits, and preprocessing fit on the training split only.

A dataset name takes one of three forms:

- a name listed in `data_dir/MANIFEST.csv` (csv.gz files, or MNIST-style idx folders which are
  loaded by `neon_ray.data.idx.load_mnist`);
- `sklearn:NAME` for the scikit-learn bundled sets (breast_cancer, wine, iris, digits);
- a path to one `.csv`, `.csv.gz` or `.parquet` file, with the target column given as
  `path#column` (default column `target`).

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
process on the `neon_ray.data.datasets` logger.

Preprocessing, fit on the training rows only and then applied to all three splits:

- numeric columns: missing values are replaced by the training median (a column missing in
  every training row gets 0), then min-max scaled with the training min and max, so val/test
  values may fall outside [0, 1]; a column constant on train maps to 0;
- categorical columns (text, bool, pandas categorical, and, for MANIFEST datasets of those
  names, the integer-coded columns listed in `KNOWN_CATEGORICAL`): a missing value is a level of its own (`<missing>`). A column with at
  most `MAX_ONE_HOT_LEVELS` levels in train is one-hot encoded (one feature `column=level` per
  training level, sorted; a level unseen in train encodes as all zeros). A column with more
  levels is frequency encoded into one feature `column:freq` = log(1 + count) / log(1 + max
  count), with counts taken over the training rows, so an unseen level maps to 0;
- text in a numeric column: a text column of numbers only is numeric. A text column whose
  non-missing values are more than half numbers (for example "12", "7", "abc") and that has
  more than `MAX_ONE_HOT_LEVELS` distinct values is taken to be a numeric column with bad
  entries and raises `DataError` naming the column and a bad value. Any other text column is
  categorical, including a small level set that mixes numbers and words (nursery's children =
  1, 2, 3, more). Empty cells, "NA", "NaN", "null" and "?" read as missing.

Labels are encoded to 0..K-1 over all rows (so val/test labels are always known), in sorted
order of the original values (numeric order for numbers); `Dataset.class_names` keeps the
original values as text.
"""
from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neon_ray.errors import ConfigError, DataError
from neon_ray.runtime.files import check_path_component

log = logging.getLogger(__name__)

SKLEARN_SETS = ("breast_cancer", "wine", "iris", "digits")
SKLEARN_PREFIX = "sklearn:"
DEFAULT_TARGET = "target"
TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet")
MANIFEST_COLUMNS = ("name", "file", "format", "target_column")
MAX_ONE_HOT_LEVELS = 64
MIN_ROWS_TO_STRATIFY = 3
MIN_SPLIT_ROWS = 10
"""Fewest rows each of train, val and test may have (smaller splits cannot measure accuracy)."""
MISSING_LEVEL = "<missing>"
NA_MARKERS = ["?"]

KNOWN_CATEGORICAL: dict[str, tuple[str, ...]] = {
    # The benchmark files store these nominal columns as integer codes; as numbers they would
    # impose a meaningless order (MANIFEST notes: Amazon IDs, PMLB-coded adult, electricity day).
    "Amazon_employee_access": (
        "RESOURCE", "MGR_ID", "ROLE_ROLLUP_1", "ROLE_ROLLUP_2", "ROLE_DEPTNAME",
        "ROLE_TITLE", "ROLE_FAMILY_DESC", "ROLE_FAMILY", "ROLE_CODE",
    ),
    "adult": (
        "workclass", "education", "marital-status", "occupation",
        "relationship", "race", "sex", "native-country",
    ),
    "electricity": ("day",),
}
"""Integer-coded columns of benchmark datasets that are treated as categorical (where present)."""


@dataclass(frozen=True)
class SplitConfig:
    """Sizes of the val and test splits (train is the rest) and whether to stratify."""

    val_fraction: float = 0.15
    """Fraction of rows for validation (early stopping, the agent's reward); for idx datasets, of the official training set."""
    test_fraction: float = 0.15
    """Fraction of rows for the reported test accuracy; ignored by idx datasets, which use their official test set."""
    stratify: bool = True
    """Keep class proportions in every split (for classes with at least MIN_ROWS_TO_STRATIFY rows)."""

    def __post_init__(self) -> None:
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


# ---------------------------------------------------------------------------------------------
# Splits


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


# ---------------------------------------------------------------------------------------------
# Reading tables


def _read_table(path: Path) -> pd.DataFrame:
    """A .csv / .csv.gz / .parquet file as a DataFrame; any read failure is a DataError."""
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    suffix = _table_suffix(path)
    if suffix is None:
        raise DataError(f"{path}: unsupported file type, expected one of {', '.join(TABLE_SUFFIXES)}")
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, na_values=NA_MARKERS, low_memory=False)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: the file is empty (no header and no rows)") from exc
    except (OSError, EOFError, ValueError, UnicodeDecodeError, zlib.error, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read the file ({type(exc).__name__}: {exc})") from exc
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _table_suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in sorted(TABLE_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def _read_manifest(data_dir: Path) -> pd.DataFrame:
    path = data_dir / "MANIFEST.csv"
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} is a file, expected a directory with MANIFEST.csv")
    if not data_dir.is_dir():
        raise DataError(f"data directory not found: {data_dir}")
    if not path.is_file():
        raise DataError(f"{data_dir} has no MANIFEST.csv (expected columns {', '.join(MANIFEST_COLUMNS)}, ...)")
    try:
        manifest = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read the manifest ({exc})") from exc
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {list(manifest.columns)}")
    return manifest


# ---------------------------------------------------------------------------------------------
# Labels and features


def _encode_labels(column: pd.Series, where: str) -> tuple[np.ndarray, list[str]]:
    """Codes 0..K-1 in sorted order of the values, and the values as text."""
    if column.isna().any():
        first = int(np.flatnonzero(column.isna().to_numpy())[0])
        raise DataError(
            f"{where}: target column {column.name!r} has {int(column.isna().sum())} missing value(s) "
            f"(first at data row {first}); every row needs a label"
        )
    if pd.api.types.is_float_dtype(column.dtype):
        values = column.to_numpy(dtype=np.float64)
        fractional = values[values != np.round(values)]
        if len(fractional):
            raise DataError(
                f"{where}: target column {column.name!r} looks continuous (value {fractional[0]!r}); "
                "neon-ray classifies, so binarise or bin the target first"
            )
        uniq, codes = np.unique(values, return_inverse=True)
        return codes.astype(np.int64), [str(int(v)) for v in uniq]
    if pd.api.types.is_bool_dtype(column.dtype) or pd.api.types.is_integer_dtype(column.dtype):
        uniq, codes = np.unique(column.to_numpy(), return_inverse=True)
        return codes.astype(np.int64), [str(v) for v in uniq]
    text = column.astype(str).to_numpy()
    uniq, codes = np.unique(text, return_inverse=True)
    as_numbers = pd.to_numeric(pd.Series(uniq), errors="coerce")
    if as_numbers.notna().all():
        # "2" < "10" as numbers; re-rank the sorted strings by value.
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[np.lexsort((uniq, as_numbers.to_numpy()))] = np.arange(len(uniq))
        codes, uniq = rank[codes], uniq[np.argsort(rank)]
    return codes.astype(np.int64), [str(v) for v in uniq]


def _column_kind(column: pd.Series, forced_categorical: bool, where: str) -> tuple[str, pd.Series]:
    """("numeric" | "categorical", the column, numeric text parsed to numbers)."""
    dtype = column.dtype
    if forced_categorical or pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "categorical", column
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric", column
    if not (pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype)):
        raise DataError(f"{where}: column {column.name!r} has unsupported type {dtype}; expected numbers, text or bool")
    counts = column.value_counts(dropna=True)
    if counts.empty:
        return "categorical", column
    parsed = pd.to_numeric(pd.Series(counts.index.astype(str)), errors="coerce").to_numpy()
    numeric_rows = int(counts.to_numpy()[~np.isnan(parsed)].sum())
    total = int(counts.sum())
    if numeric_rows == total:
        return "numeric", pd.to_numeric(column.astype(str).where(column.notna()), errors="coerce")
    if 2 * numeric_rows > total and len(counts) > MAX_ONE_HOT_LEVELS:
        bad = counts.index[np.isnan(parsed)][0]
        raise DataError(
            f"{where}: column {column.name!r} is mostly numbers but has non-numeric value {bad!r} "
            f"({total - numeric_rows} of {total} rows); fix or blank those cells, or make the whole column "
            "text to use it as a category"
        )
    return "categorical", column


def _encode_numeric(column: pd.Series, train: np.ndarray, where: str) -> np.ndarray:
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(values).any():
        raise DataError(f"{where}: column {column.name!r} has an infinite value; expected finite numbers")
    train_values = values[train]
    missing = np.isnan(values)
    if missing.any():
        fill = float(np.nanmedian(train_values)) if not np.isnan(train_values).all() else 0.0
        values = np.where(missing, fill, values)
        train_values = values[train]
    lo, hi = float(train_values.min()), float(train_values.max())
    if hi <= lo:
        return np.zeros((len(values), 1))
    return ((values - lo) / (hi - lo))[:, None]


def _encode_categorical(column: pd.Series, train: np.ndarray) -> tuple[np.ndarray, list[str]]:
    keys = column.astype(str).where(column.notna(), MISSING_LEVEL)
    counts = keys.iloc[train].value_counts()
    if len(counts) <= MAX_ONE_HOT_LEVELS:
        levels = sorted(counts.index)
        codes = pd.Index(levels).get_indexer(keys)
        block = np.zeros((len(keys), len(levels)))
        seen = codes >= 0
        block[np.flatnonzero(seen), codes[seen]] = 1.0
        return block, [f"{column.name}={level}" for level in levels]
    freq = keys.map(counts).fillna(0).to_numpy(dtype=np.float64)
    return (np.log1p(freq) / math.log1p(int(counts.max())))[:, None], [f"{column.name}:freq"]


def _encode_features(
    frame: pd.DataFrame, train: np.ndarray, categorical: Sequence[str], where: str
) -> tuple[np.ndarray, list[str]]:
    """float32 [n, f] features, every encoder fit on the `train` rows only."""
    blocks, names = [], []
    for name in frame.columns:
        kind, column = _column_kind(frame[name], name in categorical, where)
        if kind == "numeric":
            blocks.append(_encode_numeric(column, train, where))
            names.append(name)
        else:
            block, block_names = _encode_categorical(column, train)
            blocks.append(block)
            names.extend(block_names)
    X = np.concatenate(blocks, axis=1).astype(np.float32)
    if np.all(X[train].min(axis=0) == X[train].max(axis=0)):
        raise DataError(f"{where}: no usable features: every feature column is constant or missing on the training rows")
    return X, names


# ---------------------------------------------------------------------------------------------
# From a DataFrame to a Dataset


def dataset_from_frame(
    frame: pd.DataFrame,
    target: str,
    name: str,
    seed: int = 0,
    split: SplitConfig = SplitConfig(),
    source: str = "",
    categorical: Sequence[str] = (),
) -> Dataset:
    """Split and preprocess a raw table whose label is column `target`; `categorical` forces columns to categories."""
    where, seed = source or name, check_seed(seed)
    if target not in frame.columns:
        raise DataError(f"{where}: target column {target!r} not found; available columns: {list(frame.columns)}")
    if len(frame) == 0:
        raise DataError(f"{where}: no rows (only a header)")
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise DataError(f"{where}: no usable features: the table has only the target column {target!r}")
    y, class_names = _encode_labels(frame[target], where)
    if len(class_names) < 2:
        raise DataError(f"{where}: target column {target!r} has a single class ({class_names[0]!r}); need at least 2")
    try:
        test, val, train = split_indices(y, [split.test_fraction, split.val_fraction], seed, split.stratify)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from exc
    check_split_sizes(
        where, {"train": len(train), "val": len(val), "test": len(test)},
        {"val": split.val_fraction, "test": split.test_fraction},
    )
    warn_missing_classes(where, class_names, {"train": y[train], "val": y[val], "test": y[test]})
    X, feature_names = _encode_features(features, train, categorical, where)
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    return Dataset(
        name=name,
        seed=seed,
        X_train=X_t[train], y_train=y_t[train],
        X_val=X_t[val], y_val=y_t[val],
        X_test=X_t[test], y_test=y_t[test],
        feature_names=feature_names,
        class_names=class_names,
        n_rows=len(frame),
        source=source,
    )


def _load_sklearn(set_name: str, seed: int, split: SplitConfig) -> Dataset:
    if set_name not in SKLEARN_SETS:
        raise DataError(f"unknown scikit-learn dataset {set_name!r}; expected one of {', '.join(SKLEARN_SETS)}")
    from sklearn import datasets as skd

    frame = getattr(skd, f"load_{set_name}")(as_frame=True).frame
    return dataset_from_frame(
        frame, "target", SKLEARN_PREFIX + set_name, seed, split, source=f"sklearn.datasets.load_{set_name}"
    )


def _load_path(spec: str, seed: int, split: SplitConfig) -> Dataset:
    path_text, _, target = spec.rpartition("#") if "#" in spec else (spec, "", DEFAULT_TARGET)
    path, target = Path(path_text), target or DEFAULT_TARGET
    frame = _read_table(path)
    stem = path.name[: -len(_table_suffix(path) or "")]
    return dataset_from_frame(frame, target, stem, seed, split, source=f"{path}#{target}")


def _load_manifest_entry(name: str, data_dir: Path, entry: pd.Series, seed: int, split: SplitConfig) -> Dataset:
    where = f"{data_dir / 'MANIFEST.csv'} (dataset {name!r})"
    try:
        check_path_component(name, "dataset name")
    except ConfigError as exc:
        raise DataError(f"{where}: {exc}; rename the entry in the name column") from exc
    fmt, path = entry["format"].strip(), data_dir / entry["file"].strip()
    if fmt == "idx":
        from neon_ray.data.idx import load_mnist

        return load_mnist(path, seed=seed, val_fraction=split.val_fraction, name=name)
    if fmt not in ("csv.gz", "csv", "parquet"):
        raise DataError(f"{where}: unknown format {fmt!r}, expected csv.gz, csv, parquet or idx")
    target = entry["target_column"].strip() or DEFAULT_TARGET
    return dataset_from_frame(
        _read_table(path), target, name, seed, split,
        source=f"{path}#{target}", categorical=KNOWN_CATEGORICAL.get(name, ()),
    )


def check_seed(seed: int) -> int:
    """`seed` as an int; numpy's generators need it non-negative."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def _looks_like_path(name: str) -> bool:
    return "#" in name or "/" in name or "\\" in name or Path(name).suffix != "" or Path(name).exists()


def load_dataset(
    name: str | Path, data_dir: str | Path | None = None, seed: int = 0, split: SplitConfig = SplitConfig()
) -> Dataset:
    """Load, split and preprocess one dataset (see the module docstring for name forms and rules)."""
    seed, name = check_seed(seed), str(name)
    if not isinstance(split, SplitConfig):
        raise ConfigError(f"split must be a SplitConfig, got {split!r}")
    if name.strip() == "" or any(ord(c) < 32 for c in name):
        raise DataError(f"bad dataset name {name!r}: expected a MANIFEST name, sklearn:NAME or a file path, without control characters")
    if name.startswith(SKLEARN_PREFIX):
        return _load_sklearn(name[len(SKLEARN_PREFIX):], seed, split)
    if data_dir is not None:
        data_dir = Path(data_dir)
        manifest = _read_manifest(data_dir)
        rows = manifest[manifest["name"].str.strip() == name]
        if len(rows):
            return _load_manifest_entry(name, data_dir, rows.iloc[0], seed, split)
    if _looks_like_path(name):
        return _load_path(name, seed, split)
    known = list(manifest["name"]) if data_dir is not None else []
    shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
    where = f"in {data_dir / 'MANIFEST.csv'} (known: {shown})" if data_dir is not None else "(no data_dir given)"
    raise DataError(
        f"unknown dataset {name!r} {where}; also accepted: "
        f"{', '.join(SKLEARN_PREFIX + s for s in SKLEARN_SETS)}, or a .csv/.csv.gz/.parquet path[#target]"
    )


def list_datasets(data_dir: str | Path | None = None) -> pd.DataFrame:
    """name, rows, features, classes, benchmark of every MANIFEST entry (or the sklearn sets without data_dir)."""
    columns = ["name", "rows", "features", "classes", "benchmark"]
    if data_dir is None:
        return pd.DataFrame([_sklearn_summary(s) for s in SKLEARN_SETS], columns=columns)
    data_dir = Path(data_dir)
    manifest = _read_manifest(data_dir)
    where = data_dir / "MANIFEST.csv"
    missing = [c for c in columns if c not in manifest.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing} needed to list datasets")
    table = manifest[columns].copy()
    for col in ("rows", "features", "classes"):
        numbers = pd.to_numeric(table[col], errors="coerce")
        if numbers.isna().any():
            bad = table.loc[numbers.isna(), ["name", col]].iloc[0]
            raise DataError(f"{where}: column {col!r} of dataset {bad['name']!r} is {bad[col]!r}, expected an integer")
        table[col] = numbers.astype(np.int64)
    return table.reset_index(drop=True)


def _sklearn_summary(set_name: str) -> dict:
    from sklearn import datasets as skd

    bunch = getattr(skd, f"load_{set_name}")()
    return {
        "name": SKLEARN_PREFIX + set_name,
        "rows": int(bunch.data.shape[0]),
        "features": int(bunch.data.shape[1]),
        "classes": int(len(np.unique(bunch.target))),
        "benchmark": "none",
    }
