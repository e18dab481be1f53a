"""Results in Parquet: one schema for every method, atomic writes, and summaries.

Layout: `RES/method=<m>/dataset=<d>/<run_id>.parquet` (Hive partitions, values URI-encoded).
One file holds one run's rows for one (method, dataset); writing it again replaces exactly
those rows. Files are written under a dot-prefixed temporary name, which Parquet readers
ignore, and renamed into place, so readers never see a partial file.
"""
from __future__ import annotations

import json
import math
import os
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from neon_ray.errors import NeonRayError

RESULT_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("method", pa.string()),
        ("config", pa.string()),
        ("config_label", pa.string()),
        ("dataset", pa.string()),
        ("network_id", pa.string()),
        ("role", pa.string()),
        ("seed", pa.int64()),
        ("tolerance", pa.float64()),
        ("loops", pa.int64()),
        ("arch_before", pa.string()),
        ("arch_after", pa.string()),
        ("params_before", pa.int64()),
        ("params_after", pa.int64()),
        ("reduction", pa.float64()),
        ("flops_before", pa.int64()),
        ("flops_after", pa.int64()),
        ("bytes_before", pa.int64()),
        ("bytes_after", pa.int64()),
        ("val_acc_before", pa.float64()),
        ("val_acc_after", pa.float64()),
        ("test_acc_before", pa.float64()),
        ("test_acc_after", pa.float64()),
        ("delta_acc_pp", pa.float64()),
        ("test_f1_before", pa.float64()),
        ("test_f1_after", pa.float64()),
        ("latency_before_ms", pa.float64()),
        ("latency_after_ms", pa.float64()),
        ("actions", pa.string()),
        ("seconds", pa.float64()),
        ("created_at", pa.timestamp("us", tz="UTC")),
    ]
)
RESULT_COLUMNS = RESULT_SCHEMA.names
PARTITIONS = ("method", "dataset")
# Partition values live in the folder names only, so any Hive-aware reader (pandas, pyarrow,
# Spark, DuckDB) sees each column once.
FILE_SCHEMA = pa.schema([f for f in RESULT_SCHEMA if f.name not in PARTITIONS])


def result_row(
    *,
    run_id: str,
    method: str,
    config: dict,
    config_label: str,
    network: dict,
    before,
    after,
    tolerance: float | None = None,
    loops: int | None = None,
    arch_after: str,
    actions: list | None = None,
    seconds: float = 0.0,
) -> dict:
    """One result row from a zoo manifest row and `metrics.NetworkMetrics` before and after.

    `params_after` counts non-zero parameters when the method prunes individual weights
    (`after.nonzero < after.params`), so structured and weight-level methods compare fairly.
    """
    params_after = after.nonzero if after.nonzero < after.params else after.params
    return {
        "run_id": run_id,
        "method": method,
        "config": json.dumps(config, sort_keys=True, default=str),
        "config_label": config_label,
        "dataset": network["dataset"],
        "network_id": network["network_id"],
        "role": network.get("role"),
        "seed": int(network.get("seed", 0)),
        "tolerance": tolerance,
        "loops": loops,
        "arch_before": network["arch"],
        "arch_after": arch_after,
        "params_before": before.params,
        "params_after": params_after,
        "reduction": before.params / max(params_after, 1),
        "flops_before": before.flops,
        "flops_after": after.flops,
        "bytes_before": before.bytes,
        "bytes_after": after.bytes,
        "val_acc_before": before.val_acc,
        "val_acc_after": after.val_acc,
        "test_acc_before": before.test_acc,
        "test_acc_after": after.test_acc,
        "delta_acc_pp": 100.0 * (after.test_acc - before.test_acc),
        "test_f1_before": before.test_f1,
        "test_f1_after": after.test_f1,
        "latency_before_ms": before.latency_b1_ms,
        "latency_after_ms": after.latency_b1_ms,
        "actions": json.dumps(actions or []),
        "seconds": float(seconds),
        "created_at": datetime.now(timezone.utc),
    }


def _safe_name(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", run_id)


def _to_table(frame: pd.DataFrame) -> pa.Table:
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        raise NeonRayError(f"result rows lack columns {missing}")
    frame = frame[FILE_SCHEMA.names].copy()
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return pa.Table.from_pandas(frame, schema=FILE_SCHEMA, preserve_index=False)


def write_results(rows: list[dict] | pd.DataFrame, root: str | Path) -> list[Path]:
    """Write rows into `root`, one file per (run_id, method, dataset), replacing earlier copies."""
    frame = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows
    if frame.empty:
        return []
    if frame.duplicated(["run_id", "method", "network_id"]).any():
        raise NeonRayError("result rows repeat a (run_id, method, network_id)")
    written = []
    for (run_id, method, dataset), part in frame.groupby(["run_id", "method", "dataset"], sort=True):
        folder = Path(root) / f"method={quote(str(method), safe='')}" / f"dataset={quote(str(dataset), safe='')}"
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{_safe_name(str(run_id))}.parquet"
        tmp = folder / f".{final.stem}.{uuid.uuid4().hex}.tmp"
        try:
            pq.write_table(_to_table(part), tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(final)
    return written


def read_results(root: str | Path) -> pd.DataFrame:
    """All result rows under `root` (partition columns decoded back to plain strings)."""
    root = Path(root)
    if not root.is_dir():
        raise NeonRayError(f"{root}: results directory not found")
    files = [p for p in root.rglob("*.parquet") if not p.name.startswith(".")]
    if not files:
        raise NeonRayError(f"{root}: no result files (*.parquet) found")
    part = pads.partitioning(pa.schema([("method", pa.string()), ("dataset", pa.string())]), flavor="hive")
    table = pads.dataset(str(root), format="parquet", partitioning=part).to_table()
    frame = table.to_pandas()
    return frame[RESULT_COLUMNS]


def _geomean(values: pd.Series) -> float:
    values = values[values > 0]
    return float(np.exp(np.log(values).mean())) if len(values) else math.nan


def summarise(frame: pd.DataFrame, by: str | None = None, tolerance: float | None = None) -> pd.DataFrame:
    """Per method and configuration (and per `by`, e.g. dataset): reductions and accuracy changes.

    `within_tol` is the share of networks whose test accuracy fell by no more than the row's
    tolerance (or `tolerance` for rows without one, such as baselines).
    """
    keys = ["method", "config_label"] + ([by] if by else [])
    frame = frame.copy()
    tol = frame["tolerance"].astype(float)
    if tolerance is not None:
        tol = tol.fillna(tolerance)
    frame["_within"] = np.where(tol.isna(), np.nan, (frame["delta_acc_pp"] >= -tol).astype(float))
    grouped = frame.groupby(keys, sort=True, dropna=False)
    out = grouped.agg(
        networks=("network_id", "nunique"),
        mean_x=("reduction", "mean"),
        median_x=("reduction", "median"),
        geomean_x=("reduction", _geomean),
        mean_dacc_pp=("delta_acc_pp", "mean"),
        median_dacc_pp=("delta_acc_pp", "median"),
        within_tol=("_within", "mean"),
        mean_seconds=("seconds", "mean"),
    )
    return out.reset_index()


def format_table(summary: pd.DataFrame) -> str:
    """A plain-text table for terminals and notes."""
    return summary.to_string(index=False, float_format=lambda v: f"{v:.3f}")
