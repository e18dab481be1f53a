"""Results in Parquet: one schema for every method, atomic writes, and summaries.

Layout: `RES/method=<m>/dataset=<d>/<run_id>.parquet` (Hive partitions, values URI-encoded).
One file holds one run's rows for one (method, dataset); writing it again replaces exactly
those rows. Files are written under a dot-prefixed temporary name, which Parquet readers
ignore, and renamed into place (`fsio.atomic_write`), so readers never see a partial file.

Run manifests: `RES/_runs/method=<m>/<run_id>.json` records whether a run that writes results
(`episodes.run_networks`) finished: 'running' (with the networks expected per dataset) when it
starts, 'complete' after its last row was written, 'failed' when it stopped on an error. A killed
run stays 'running'. Parquet readers ignore `_`-prefixed folders, so `pandas.read_parquet(RES)`
still reads only the rows. Rows without a manifest (written by `write_results` alone, or by
older versions) belong to runs of 'unknown' completeness, not incomplete ones.

Reading (`read_results`) goes file by file: files that are not result files (another schema,
not Parquet, corrupt, outside the `method=/dataset=` layout) are skipped with a warning naming
them, and a row repeated under the same (run_id, method, network_id), e.g. by a copied file,
counts once: the newest `created_at` is kept, with a warning naming the files.
"""
from __future__ import annotations

import io
import json
import logging
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from neon_ray.errors import ConfigError, DataError, NeonRayError
from neon_ray.runtime.files import atomic_write, atomic_write_text, check_output_dir

log = logging.getLogger(__name__)

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


def check_run_id(run_id) -> str:
    """A run ID usable as a file name that Parquet readers do not skip (no leading '.' or '_')."""
    if not isinstance(run_id, str) or not run_id.strip():
        raise ConfigError(f"run ID must be a non-empty string, got {run_id!r}")
    if _safe_name(run_id)[0] in "._":
        raise ConfigError(f"run ID {run_id!r} cannot start with '.' or '_': Parquet readers skip such files")
    return run_id


def _to_table(frame: pd.DataFrame) -> pa.Table:
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        raise NeonRayError(f"result rows lack columns {missing}")
    frame = frame[FILE_SCHEMA.names].copy()
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return pa.Table.from_pandas(frame, schema=FILE_SCHEMA, preserve_index=False)


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def write_results(rows: list[dict] | pd.DataFrame, root: str | Path) -> list[Path]:
    """Write rows into `root`, one file per (run_id, method, dataset), replacing earlier copies."""
    frame = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows
    if frame.empty:
        return []
    check_output_dir(root, "results directory")
    if frame.duplicated(["run_id", "method", "network_id"]).any():
        raise NeonRayError("result rows repeat a (run_id, method, network_id)")
    for run_id in frame["run_id"].unique():
        check_run_id(run_id)
    written = []
    for (run_id, method, dataset), part in frame.groupby(["run_id", "method", "dataset"], sort=True):
        folder = Path(root) / f"method={quote(str(method), safe='')}" / f"dataset={quote(str(dataset), safe='')}"
        final = folder / f"{_safe_name(str(run_id))}.parquet"
        data = _parquet_bytes(_to_table(part))  # built before the file is opened: a bad row writes nothing
        written.append(atomic_write(final, lambda fh: fh.write(data)))
    return written


# --------------------------------------------------------------------------------------------
# Run manifests: was a run finished?

RUNS_DIR = "_runs"
"""Folder of run manifests under a results directory (`_`-prefixed: Parquet readers skip it)."""
RUN_STATES = ("running", "complete", "failed")


def manifest_path(root: str | Path, run_id: str, method: str) -> Path:
    return Path(root) / RUNS_DIR / f"method={quote(str(method), safe='')}" / f"{_safe_name(str(run_id))}.json"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def start_run(root: str | Path, run_id: str, method: str, expected: dict[str, int], *,
              methods: list[str] | None = None, config_label: str | None = None) -> dict:
    """Record that run `run_id` of `method` starts writing rows for `expected` networks per dataset.

    `methods` are every method the run writes rows for (e.g. 'uniform' and 'uniform+dc');
    returns the manifest, to be passed to `finish_run`.
    """
    check_run_id(run_id)
    manifest = {
        "run_id": run_id, "method": method, "methods": list(methods or [method]), "config_label": config_label,
        "status": "running", "expected": {str(k): int(v) for k, v in expected.items()},
        "networks": int(sum(expected.values())), "started_at": _now(), "finished_at": None, "error": None,
    }
    atomic_write_text(manifest_path(root, run_id, method), json.dumps(manifest, indent=1) + "\n")
    return manifest


def finish_run(root: str | Path, manifest: dict, status: str = "complete", error: str | None = None) -> dict:
    """Rewrite a run's manifest as 'complete' (after its last row was written) or 'failed'."""
    if status not in RUN_STATES:
        raise ConfigError(f"run status must be one of {RUN_STATES}, got {status!r}")
    manifest = {**manifest, "status": status, "finished_at": _now(), "error": error}
    atomic_write_text(manifest_path(root, manifest["run_id"], manifest["method"]), json.dumps(manifest, indent=1) + "\n")
    return manifest


def read_runs(root: str | Path) -> list[dict]:
    """Every run manifest under `root` (unreadable ones are skipped with a warning)."""
    runs = []
    for path in sorted((Path(root) / RUNS_DIR).glob("*/*.json")):
        try:
            doc = json.loads(path.read_text())
            if not (isinstance(doc, dict) and isinstance(doc.get("run_id"), str) and isinstance(doc.get("method"), str)
                    and doc.get("status") in RUN_STATES and isinstance(doc.get("expected"), dict)):
                raise ValueError("not a run manifest (needs run_id, method, status and expected)")
            doc["expected"] = {str(k): int(v) for k, v in doc["expected"].items()}
        except (OSError, ValueError, TypeError) as exc:
            log.warning("skipped run manifest %s: %s", path, exc)
            continue
        doc["path"] = str(path)
        runs.append(doc)
    return runs


RUN_STATUS_COLUMNS = ["run_id", "method", "status", "state", "networks", "expected", "started_at", "finished_at", "error"]


def run_status(root: str | Path, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per run: `status` 'complete', 'incomplete' or 'unknown' (no manifest), and networks found of expected.

    A run is incomplete when its manifest says 'running' (killed, or still in progress) or
    'failed', or says 'complete' while fewer networks than expected have rows (files removed).
    `state` is the manifest's own word; `networks` counts the run's networks with rows (for a
    run writing several methods, e.g. '+dc', the method with the fewest).
    """
    frame = read_results(root) if frame is None else frame
    out, covered = [], set()
    for run in read_runs(root):
        rid, methods, expected = run["run_id"], list(run.get("methods") or [run["method"]]), run["expected"]
        mine = frame[(frame["run_id"] == rid) & frame["method"].isin(methods) & frame["dataset"].isin(list(expected))]
        found = min(int(mine.loc[mine["method"] == m, "network_id"].nunique()) for m in methods)
        total = int(sum(expected.values()))
        complete = run["status"] == "complete" and found >= total
        out.append({"run_id": rid, "method": run["method"], "status": "complete" if complete else "incomplete",
                    "state": run["status"], "networks": found, "expected": total, "started_at": run.get("started_at"),
                    "finished_at": run.get("finished_at"), "error": run.get("error")})
        covered.update((rid, m) for m in methods)
    for (rid, method), part in frame.groupby(["run_id", "method"], sort=True):
        if (rid, method) not in covered:
            out.append({"run_id": rid, "method": method, "status": "unknown", "state": None,
                        "networks": int(part["network_id"].nunique()), "expected": None, "started_at": None,
                        "finished_at": None, "error": None})
    return pd.DataFrame(out, columns=RUN_STATUS_COLUMNS).astype({"networks": "int64", "expected": "Int64"})


def incomplete_messages(runs: pd.DataFrame) -> list[str]:
    """One line per incomplete run, naming it and how many of how many networks it has."""
    lines = []
    for r in runs[runs["status"] == "incomplete"].itertuples():
        head = f"run {r.run_id!r} ({r.method}) is incomplete: {r.networks} of {r.expected} networks have rows"
        if r.state == "running":
            lines.append(f"{head}; its manifest says 'running' since {r.started_at} (killed, or still in progress)")
        elif r.state == "failed":
            lines.append(f"{head}; it failed: {r.error}")
        else:
            lines.append(f"{head}; its manifest says complete, so result files were removed since")
    return lines


# --------------------------------------------------------------------------------------------
# Reading


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    if actual.equals(expected) or pa.types.is_null(actual):
        return True
    if pa.types.is_dictionary(actual):
        actual = actual.value_type
    checks = {
        "string": pa.types.is_string(actual) or pa.types.is_large_string(actual),
        "int64": pa.types.is_integer(actual),
        "double": pa.types.is_floating(actual) or pa.types.is_integer(actual),
    }
    if pa.types.is_timestamp(expected):
        return pa.types.is_timestamp(actual)
    return checks.get(str(expected), False)


def _schema_problem(schema: pa.Schema) -> str | None:
    names = schema.names
    missing = [n for n in FILE_SCHEMA.names if n not in names]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        return f"not a neon-ray result file: lacks columns {shown}"
    extra = [n for n in names if n not in FILE_SCHEMA.names]
    if extra:
        note = " (method and dataset belong in the folder names)" if set(extra) & set(PARTITIONS) else ""
        return f"has columns that are not in the results schema: {', '.join(extra)}{note}"
    wrong = [f"{f.name} is {schema.field(f.name).type}, expected {f.type}" for f in FILE_SCHEMA
             if not _compatible(schema.field(f.name).type, f.type)]
    if wrong:
        return "column types differ from the results schema: " + "; ".join(wrong[:3])
    return None


def _partition_values(root: Path, path: Path) -> tuple[str, str] | None:
    parts = path.relative_to(root).parts
    if len(parts) != 3 or not parts[0].startswith("method=") or not parts[1].startswith("dataset="):
        return None
    method, dataset = unquote(parts[0][len("method="):]), unquote(parts[1][len("dataset="):])
    return (method, dataset) if method and dataset else None


def _read_one(root: Path, path: Path) -> tuple[pa.Table | None, str | None]:
    """(table with partition columns, None) or (None, why the file is skipped)."""
    if path.suffix != ".parquet":
        return None, "not a result file (*.parquet)"
    where = _partition_values(root, path)
    if where is None:
        return None, "not under the method=<method>/dataset=<dataset>/ folders of a results directory"
    try:
        pf = pq.ParquetFile(path)
        problem = _schema_problem(pf.schema_arrow)
        if problem:
            return None, problem
        table = pf.read(columns=FILE_SCHEMA.names).select(FILE_SCHEMA.names)
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        return None, f"cannot be read as Parquet ({_first_line(exc)})"
    try:
        table = table.cast(FILE_SCHEMA)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        return None, f"column values do not fit the results schema ({_first_line(exc)})"
    n = table.num_rows
    table = table.append_column("method", pa.array([where[0]] * n, pa.string()))
    table = table.append_column("dataset", pa.array([where[1]] * n, pa.string()))
    return table.select(RESULT_COLUMNS), None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _hidden(root: Path, path: Path) -> bool:
    # what pyarrow's (and so pandas') dataset discovery skips: any '.' or '_' prefixed name
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def _listing(items: list[str], limit: int = 5) -> str:
    return "; ".join(items[:limit]) + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def read_results(root: str | Path) -> pd.DataFrame:
    """All result rows under `root` (partition columns decoded back to plain strings).

    Reads file by file: a file that is not a valid result file is skipped with a warning that
    names it (an error when no valid file is left), and rows repeating a (run_id, method,
    network_id) count once, the newest `created_at` kept, with a warning naming the files.
    """
    root = Path(root)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "not found"
        raise DataError(f"{root}: results directory {what}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not _hidden(root, p))
    if not any(p.suffix == ".parquet" for p in files):
        runs = read_runs(root)
        note = (f"; run manifests name {len(runs)} run(s) that wrote no rows: "
                + ", ".join(f"{r['run_id']!r} ({r['method']}, {r['status']})" for r in runs[:5])) if runs else ""
        raise DataError(f"{root}: no result files (*.parquet) found{note}")
    tables, sources, skipped = [], [], []
    for path in files:
        table, why = _read_one(root, path)
        if table is None:
            skipped.append(f"{path} ({why})")
            log.warning("skipped %s: %s", path, why)
            continue
        tables.append(table)
        sources += [str(path)] * table.num_rows
    if not tables:
        raise DataError(f"{root}: no valid result files; skipped {len(skipped)}: {_listing(skipped)}")
    frame = pa.concat_tables(tables).to_pandas()
    return _drop_duplicates(frame, pd.Series(sources, index=frame.index))[RESULT_COLUMNS]


def _drop_duplicates(frame: pd.DataFrame, sources: pd.Series) -> pd.DataFrame:
    key = ["run_id", "method", "network_id"]
    if not frame.duplicated(key).any():
        return frame
    # newest created_at last (NaT first), ties broken by file path: keep the last of each key
    order = frame.assign(_src=sources).sort_values(["created_at", "_src"], kind="stable", na_position="first")
    keep = ~order.duplicated(key, keep="last")
    dropped = order[~keep]
    files = sorted(set(order.loc[order.set_index(key).index.isin(dropped.set_index(key).index), "_src"]))
    log.warning("%d result row(s) repeat a (run_id, method, network_id) of another file and were dropped, "
                "keeping the newest created_at of each; files involved: %s", len(dropped), _listing(files))
    return order[keep].drop(columns="_src").sort_index()


def check_tolerance(value, what: str = "tolerance") -> float | None:
    """None, or a finite number of accuracy percentage points in [0, 100]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not (math.isfinite(value) and 0 <= value <= 100):
        raise ConfigError(f"{what} must be a number of percentage points in [0, 100], got {value!r}")
    return float(value)


def _geomean(values: pd.Series) -> float:
    values = values[values > 0]
    return float(np.exp(np.log(values).mean())) if len(values) else math.nan


def summarise(frame: pd.DataFrame, by: str | None = None, tolerance: float | None = None) -> pd.DataFrame:
    """Per method and configuration (and per `by`, e.g. dataset): reductions and accuracy changes.

    `within_tol` is the share of networks whose test accuracy fell by no more than the row's
    tolerance (or `tolerance` for rows without one, such as baselines).
    """
    check_tolerance(tolerance, "summary tolerance")
    if by is not None and by not in RESULT_COLUMNS:
        raise ConfigError(f"summary --by must be a result column such as 'dataset' or 'role', got {by!r}")
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
