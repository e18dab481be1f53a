"""Where raw tables come from: `data_dir/MANIFEST.csv`, table files, and the scikit-learn bundled sets.

Table files are `.csv`, `.csv.gz` or `.parquet`; in CSV files empty cells, "NA", "NaN", "null"
and "?" read as missing. Every read failure is a `DataError` naming the file.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from neon_ray.errors import DataError

SKLEARN_SETS = ("breast_cancer", "wine", "iris", "digits")
SKLEARN_PREFIX = "sklearn:"
TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet")
MANIFEST_COLUMNS = ("name", "file", "format", "target_column")
NA_MARKERS = ["?"]
LIST_COLUMNS = ["name", "rows", "features", "classes", "benchmark"]


def table_suffix(file_name: str) -> str | None:
    """The table suffix `file_name` ends with (longest match, any case), None if it has none."""
    name = file_name.lower()
    return next((s for s in sorted(TABLE_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def read_table(path: Path) -> pd.DataFrame:
    """A .csv / .csv.gz / .parquet file as a DataFrame; any read failure is a DataError."""
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    suffix = table_suffix(path.name)
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


def read_manifest_csv(data_dir: Path) -> pd.DataFrame:
    """`data_dir/MANIFEST.csv` as text columns, checked for the columns every entry needs."""
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


def sklearn_frame(set_name: str) -> pd.DataFrame:
    """A scikit-learn bundled set as one table with its label in column `target`."""
    if set_name not in SKLEARN_SETS:
        raise DataError(f"unknown scikit-learn dataset {set_name!r}; expected one of {', '.join(SKLEARN_SETS)}")
    from sklearn import datasets as skd  # scikit-learn takes a second to import; only sklearn: names need it

    return getattr(skd, f"load_{set_name}")(as_frame=True).frame


def list_datasets(data_dir: str | Path | None = None) -> pd.DataFrame:
    """name, rows, features, classes, benchmark of every MANIFEST entry (or the sklearn sets without data_dir)."""
    if data_dir is None:
        return pd.DataFrame([_sklearn_summary(s) for s in SKLEARN_SETS], columns=LIST_COLUMNS)
    data_dir = Path(data_dir)
    manifest = read_manifest_csv(data_dir)
    where = data_dir / "MANIFEST.csv"
    missing = [c for c in LIST_COLUMNS if c not in manifest.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing} needed to list datasets")
    table = manifest[LIST_COLUMNS].copy()
    for col in ("rows", "features", "classes"):
        numbers = pd.to_numeric(table[col], errors="coerce")
        if numbers.isna().any():
            bad = table.loc[numbers.isna(), ["name", col]].iloc[0]
            raise DataError(f"{where}: column {col!r} of dataset {bad['name']!r} is {bad[col]!r}, expected an integer")
        table[col] = numbers.astype(np.int64)
    return table.reset_index(drop=True)


def _sklearn_summary(set_name: str) -> dict:
    from sklearn import datasets as skd  # see sklearn_frame

    bunch = getattr(skd, f"load_{set_name}")()
    return {
        "name": SKLEARN_PREFIX + set_name,
        "rows": int(bunch.data.shape[0]),
        "features": int(bunch.data.shape[1]),
        "classes": int(len(np.unique(bunch.target))),
        "benchmark": "none",
    }
