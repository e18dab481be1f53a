"""The one result schema every method writes: columns and types, how a row is built, what a run ID may be.

A row compares one zoo network before and after one method (`result_row`); rows are matched
across methods by `network_id`. Values are counted the same way for every method
(`nets.metrics`), so the agent, the baselines and Deep Compression compare fairly.
"""
from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from neon_ray.errors import ConfigError

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
        ("guard", pa.bool_()),
        ("returned_step", pa.int64()),
        ("seconds", pa.float64()),
        ("created_at", pa.timestamp("us", tz="UTC")),
    ]
)
RESULT_COLUMNS = RESULT_SCHEMA.names
# Columns added after the first schema, with the value rows of older files are read with: such
# files are an older version of this schema, not foreign ones. Old rows predate the guard, so
# they returned the episode's last network; which step that was is not recorded, hence null.
ADDED_COLUMNS = {"guard": False, "returned_step": None}
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
    guard: bool = False,
    returned_step: int | None = None,
    seconds: float = 0.0,
) -> dict:
    """One result row from a zoo manifest row and `metrics.NetworkMetrics` before and after.

    `params_after` counts non-zero parameters when the method prunes individual weights
    (`after.nonzero < after.params`), so structured and weight-level methods compare fairly.
    `guard` says whether the method returned the smallest visited network within tolerance
    (pruning/episodes.py) and `returned_step` which step's network it returned (0: the unpruned one).
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
        "guard": bool(guard),
        "returned_step": None if returned_step is None else int(returned_step),
        "seconds": float(seconds),
        "created_at": datetime.now(timezone.utc),
    }


def safe_file_name(run_id: str) -> str:
    """`run_id` with every character a file name should not hold replaced by `_`."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", run_id)


def check_run_id(run_id) -> str:
    """A run ID usable as a file name that Parquet readers do not skip (no leading '.' or '_')."""
    if not isinstance(run_id, str) or not run_id.strip():
        raise ConfigError(f"run ID must be a non-empty string, got {run_id!r}")
    if safe_file_name(run_id)[0] in "._":
        raise ConfigError(f"run ID {run_id!r} cannot start with '.' or '_': Parquet readers skip such files")
    return run_id


def check_tolerance(value, what: str = "tolerance") -> float | None:
    """None, or a finite number of accuracy percentage points in [0, 100]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not (math.isfinite(value) and 0 <= value <= 100):
        raise ConfigError(f"{what} must be a number of percentage points in [0, 100], got {value!r}")
    return float(value)
