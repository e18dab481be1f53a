"""From raw columns to model inputs: labels to 0..K-1, features encoded with statistics of the training rows only.

Features, fit on the training rows only and then applied to all three splits:

- numeric columns: missing values are replaced by the training median (a column missing in
  every training row gets 0), then min-max scaled with the training min and max, so val/test
  values may fall outside [0, 1]; a column constant on train maps to 0;
- categorical columns (text, bool, pandas categorical, and the numeric columns the caller
  names: a benchmark's nominal columns from `data/column_types.py`, or a user's sidecar
  declaration): a missing value is a level of its own (`<missing>`); whole numbers read as
  floats (a coded column with a blank cell) name their level without ".0". A column with at
  most `MAX_ONE_HOT_LEVELS` levels in train is one-hot encoded (one feature `column=level` per
  training level, sorted; a level unseen in train encodes as all zeros). A column with more
  levels is frequency encoded into one feature `column:freq` = log(1 + count) / log(1 + max
  count), with counts taken over the training rows, so an unseen level maps to 0;
- text in a numeric column: a text column of numbers only is numeric. A text column whose
  non-missing values are more than half numbers (for example "12", "7", "abc") and that has
  more than `MAX_ONE_HOT_LEVELS` distinct values is taken to be a numeric column with bad
  entries and raises `DataError` naming the column and a bad value. Any other text column is
  categorical, including a small level set that mixes numbers and words (nursery's children =
  1, 2, 3, more).

Labels are encoded to 0..K-1 over all rows (so val/test labels are always known), in sorted
order of the original values (numeric order for numbers); the original values are kept as text.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from neon_ray.errors import DataError

MAX_ONE_HOT_LEVELS = 64
MISSING_LEVEL = "<missing>"


def encode_labels(column: pd.Series, where: str) -> tuple[np.ndarray, list[str]]:
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


def _level_keys(column: pd.Series) -> pd.Series:
    """Each cell's level as text; whole-number floats lose their ".0" so day 3 stays "3"."""
    if pd.api.types.is_float_dtype(column.dtype):
        values = column.dropna().to_numpy()
        if np.all(values == np.round(values)):
            column = column.astype("Int64")
    return column.astype(str).where(column.notna(), MISSING_LEVEL)


def _encode_categorical(column: pd.Series, train: np.ndarray) -> tuple[np.ndarray, list[str]]:
    keys = _level_keys(column)
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


def encode_features(
    frame: pd.DataFrame, train: np.ndarray, categorical: Sequence[str], where: str
) -> tuple[np.ndarray, list[str]]:
    """float32 [n, f] features and their names, every encoder fit on the `train` rows only."""
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
