"""Summaries of result rows: per method and configuration, and which runs are complete."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from neon_ray.errors import ConfigError
from neon_ray.results.runs import read_runs
from neon_ray.results.schema import RESULT_COLUMNS, check_tolerance
from neon_ray.results.store import read_results


def _geomean(values: pd.Series) -> float:
    values = values[values > 0]
    return float(np.exp(np.log(values).mean())) if len(values) else math.nan


def _within(frame: pd.DataFrame, tolerance: float | None) -> np.ndarray:
    """Per row: 1.0 if the test accuracy fell by at most the row's tolerance (or `tolerance` for rows
    without one), 0.0 if it fell further, NaN when no tolerance is known."""
    tol = frame["tolerance"].astype(float)
    if tolerance is not None:
        tol = tol.fillna(tolerance)
    return np.where(tol.isna(), np.nan, (frame["delta_acc_pp"] >= -tol).astype(float))


def _scored_reductions(frame: pd.DataFrame, tolerance: float | None) -> np.ndarray:
    """What `score` averages: each row's reduction if it is within tolerance on test, else 1 (NaN: no tolerance)."""
    within = _within(frame, tolerance)
    return np.where(np.isnan(within), np.nan, np.where(within == 1.0, frame["reduction"].astype(float), 1.0))


def _score_of(values: pd.Series) -> float:
    # a row without a known tolerance cannot be scored, and neither can its group
    return math.nan if values.isna().any() else _geomean(values)


def score(frame: pd.DataFrame, tolerance: float | None = None) -> float:
    """THE score of a method at a tolerance a (pp): the geometric-mean parameter reduction over
    all its networks (rows), where a network whose test accuracy dropped by more than a counts
    as x1 (not pruned).

    Why: methods are compared at equal accuracy. A method that removes more by losing more has
    not won; x1 is what a practitioner keeps when a pruned network fails the tolerance check (the
    original ships); and the mean is geometric because an arithmetic mean of ratios is dominated
    by the few datasets whose networks shrink x100 (method.md §9). A row's own `tolerance` is
    used, `tolerance` fills rows without one (unguarded baselines); NaN if a row has neither,
    or the frame is empty.
    """
    check_tolerance(tolerance, "score tolerance")
    return _score_of(pd.Series(_scored_reductions(frame, tolerance), dtype=float))


def summarise(frame: pd.DataFrame, by: str | None = None, tolerance: float | None = None) -> pd.DataFrame:
    """Per method and configuration (and per `by`, e.g. dataset): reductions and accuracy changes.

    `within_tol` is the share of networks whose test accuracy fell by no more than the row's
    tolerance (or `tolerance` for rows without one, such as baselines); `score` is `score()` of
    the group.
    """
    check_tolerance(tolerance, "summary tolerance")
    if by is not None and by not in RESULT_COLUMNS:
        raise ConfigError(f"summary --by must be a result column such as 'dataset' or 'role', got {by!r}")
    keys = ["method", "config_label"] + ([by] if by else [])
    frame = frame.copy()
    frame["_within"] = _within(frame, tolerance)
    frame["_scored"] = _scored_reductions(frame, tolerance)
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
        score=("_scored", _score_of),
    )
    return out.reset_index()


def format_summary(summary: pd.DataFrame) -> str:
    """A plain-text table for terminals and notes."""
    return summary.to_string(index=False, float_format=lambda v: f"{v:.3f}")


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
