"""Loading a dataset by name: the raw table, split (data/splits.py) and preprocessed (data/preprocess.py).

A dataset name takes one of three forms:

- a name listed in `data_dir/MANIFEST.csv` (csv.gz files, or MNIST-style idx folders which are
  loaded by `neon_ray.data.idx.load_mnist`);
- `sklearn:NAME` for the scikit-learn bundled sets (breast_cancer, wine, iris, digits);
- a path to one `.csv`, `.csv.gz` or `.parquet` file, with the target column given as
  `path#column` (default column `target`).

Nominal columns stored as numbers are encoded as categories: for MANIFEST names the benchmark
metadata of `data/column_types.py`, and for any table file the columns its sidecar
`FILE.columns.json` declares (`{"categorical": [...]}`).

Splits are drawn from the labels and the seed only; every encoder is fit on the training rows
only and then applied to all three splits.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from neon_ray.data.idx import load_mnist
from neon_ray.data.column_types import benchmark_categorical, declared_categorical
from neon_ray.data.preprocess import encode_features, encode_labels
from neon_ray.data.sources import SKLEARN_PREFIX, SKLEARN_SETS, read_manifest_csv, read_table, sklearn_frame, table_suffix
from neon_ray.data.splits import Dataset, SplitConfig, cap_rows, check_seed, check_split_sizes, split_indices, warn_missing_classes
from neon_ray.errors import ConfigError, DataError
from neon_ray.runtime.files import check_path_component

DEFAULT_TARGET = "target"


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
    y, class_names = encode_labels(frame[target], where)
    kept = cap_rows(y, split.max_rows, seed, split.stratify)
    if kept is not None:
        frame, features, y = frame.iloc[kept], features.iloc[kept], y[kept]
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
    X, feature_names = encode_features(features, train, categorical, where)
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
    frame = sklearn_frame(set_name)
    return dataset_from_frame(
        frame, "target", SKLEARN_PREFIX + set_name, seed, split, source=f"sklearn.datasets.load_{set_name}"
    )


def _load_path(spec: str, seed: int, split: SplitConfig) -> Dataset:
    path_text, _, target = spec.rpartition("#") if "#" in spec else (spec, "", DEFAULT_TARGET)
    path, target = Path(path_text), target or DEFAULT_TARGET
    frame = read_table(path)
    stem = path.name[: -len(table_suffix(path.name) or "")]
    categorical = declared_categorical(path, list(frame.columns), target)
    return dataset_from_frame(frame, target, stem, seed, split, source=f"{path}#{target}", categorical=categorical)


def _load_manifest_entry(name: str, data_dir: Path, entry: pd.Series, seed: int, split: SplitConfig) -> Dataset:
    where = f"{data_dir / 'MANIFEST.csv'} (dataset {name!r})"
    try:
        check_path_component(name, "dataset name")
    except ConfigError as exc:
        raise DataError(f"{where}: {exc}; rename the entry in the name column") from exc
    fmt, path = entry["format"].strip(), data_dir / entry["file"].strip()
    if fmt == "idx":
        return load_mnist(path, seed=seed, val_fraction=split.val_fraction, name=name, max_rows=split.max_rows)
    if fmt not in ("csv.gz", "csv", "parquet"):
        raise DataError(f"{where}: unknown format {fmt!r}, expected csv.gz, csv, parquet or idx")
    target = entry["target_column"].strip() or DEFAULT_TARGET
    frame = read_table(path)
    columns = list(frame.columns)
    categorical = benchmark_categorical(name, columns) + declared_categorical(path, columns, target)
    return dataset_from_frame(
        frame, target, name, seed, split, source=f"{path}#{target}", categorical=tuple(dict.fromkeys(categorical)),
    )


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
        manifest = read_manifest_csv(data_dir)
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
