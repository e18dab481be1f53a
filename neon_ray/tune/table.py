"""A sweep's trials as a table (OUT/NAME/summary.parquet), as text, and its best agent (OUT/NAME/best).

Every figure comes from the trial's agent run directory (TRIAL/agent): `score` is the highest
validation score of its progress.csv (the checkpoint its `best` pointer names, the trial's
agent), `last_score` the newest, and the training means average its episodes over the last
iterations. The settings come from the run's config.json, or for a trial that never started
from its Tune params. `status`: finished (ran to its end), stopped early (by the ASHA
scheduler), unfinished (interrupted, or never started: `--resume` continues it), error (failed
after its retries); `failures` counts the failures, retried or not.

OUT/NAME/best is a copy of the best trial's agent with only what applying it reads:
config.json, progress.csv, the best checkpoint's policy.json + policy.pt (no pickles) and
pointers to it; `prune --agent`, `evaluate --agent` and `load_agent` take it as any run directory.
best/sweep_trial.json says which trial it came from.

OUT may be a URI: everything here reads and writes through `runtime.files`; the table's
trial_dir and agent_dir then hold URIs without credentials, and best/ is assembled in a local
staging folder, then published (`agent.run_dir.publish_run`: checkpoint, files, pointers last).
"""
from __future__ import annotations

import io
import json
import logging
import math
import posixpath
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from ray import tune

from neon_ray.agent.algos import DEFAULT_LR
from neon_ray.agent.export import SPEC_FILE, WEIGHTS_FILE
from neon_ray.agent.run_dir import BEST, CHECKPOINTS, LATEST, RunDir, publish_run
from neon_ray.errors import NeonRayError
from neon_ray.pruning.tolerance import parse_tolerance
from neon_ray.runtime.files import (
    Location, atomic_write_text, base_name, display, is_file, is_uri, join, list_files, local_path, read_bytes,
    without_credentials,
)
from neon_ray.tune.space import RewardVariant, repeat_index
from neon_ray.tune.trial import AGENT_DIR, window_means

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.parquet"
BEST_DIR = "best"
BEST_SOURCE = "sweep_trial.json"
HELDOUT_DIR = "heldout"
"""OUT/NAME/heldout: the best agent's evaluation on the held-out datasets."""
SUMMARY_COLUMNS = ("trial", "status", "score", "last_score", "best_iteration", "iterations", "episodes",
                   "reduction_mean", "acc_change_pp_mean", "return_mean", "tolerance", "reward", "reward_params",
                   "loops", "lr", "entropy", "batch_episodes", "batch_steps", "algo", "seed", "trial_dir",
                   "agent_dir", "failures", "error")


def trial_location(experiment_dir: Location, path: str) -> Location:
    """A trial's folder from its Result.path (a path; by URI, the path inside the storage's filesystem)."""
    return join(experiment_dir, posixpath.basename(path)) if is_uri(experiment_dir) else Path(path)


def trial_table(grid, last: int, iterations: int | None = None, experiment_dir: Location | None = None) -> pd.DataFrame:
    """One row per trial of Tune's ResultGrid, best score first (NaN last); a trial that ended before
    `iterations` was stopped by the scheduler. `experiment_dir`: OUT/NAME when it is a URI."""
    results = list(grid)
    uri = experiment_dir is not None and is_uri(experiment_dir)
    configs = _saved_configs(grid.experiment_path, grid.filesystem if uri else None) \
        if any(r.config is None for r in results) else {}
    rows = [_row(result, result.config or configs[Path(result.path).name], last,
                 trial_location(experiment_dir, result.path) if uri else Path(result.path)) for result in results]
    table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    if iterations is not None:
        table.loc[(table["status"] == "finished") & (table["iterations"] < iterations), "status"] = "stopped early"
    return table.sort_values(["score", "trial"], ascending=[False, True], na_position="last").reset_index(drop=True)


def _status(result) -> str:
    if result.error:
        return "error"
    return "finished" if (result.metrics or {}).get("done") else "unfinished"


def _saved_configs(experiment_path: str, filesystem=None) -> dict[str, dict]:
    """{trial folder: params} from Tune's experiment state: a trial that never started has no Result config."""
    quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # it warns about every trial without results, which is the point here
    try:
        analysis = tune.ExperimentAnalysis(experiment_path, storage_filesystem=filesystem)
        return {Path(t.path).name: t.config for t in analysis.trials}
    finally:
        quiet.setLevel(level)


def _row(result, params: dict, last: int, trial_dir: Location) -> dict:
    run = RunDir(join(trial_dir, AGENT_DIR))
    row = {"trial": base_name(trial_dir), "status": _status(result), "trial_dir": str(without_credentials(trial_dir)),
           "agent_dir": str(without_credentials(run.root)),
           "error": str(result.error).strip().splitlines()[-1][:500] if result.error else "",
           "failures": _failures(trial_dir),
           "batch_episodes": params.get("batch_episodes", math.nan)}
    return {**row, **_settings(run, params), **_figures(run, last)}


def _failures(trial_dir: Location) -> int:
    """How often the trial failed (each retry, and a final failure): Tune's error.txt has one entry per failure."""
    try:
        return read_bytes(join(trial_dir, "error.txt")).decode().count("Failure # ")
    except OSError:
        return 0


def _settings(run: RunDir, params: dict) -> dict:
    if is_file(run.config_path):
        cfg = run.read_config()
        ep = cfg.episode
        return {"tolerance": json.dumps(ep.tolerance), "reward": ep.reward,
                "reward_params": json.dumps(ep.reward_params or {}, sort_keys=True), "loops": ep.loops,
                "lr": cfg.lr if cfg.lr is not None else DEFAULT_LR[cfg.algo], "entropy": cfg.entropy_coeff,
                "batch_steps": cfg.train_batch_size, "algo": cfg.algo, "seed": cfg.seed}
    variant = RewardVariant.parse(params["reward"])  # never started: what Tune would have given it
    return {"tolerance": json.dumps(parse_tolerance(params["tolerance"])), "reward": variant.reward,
            "reward_params": json.dumps({**variant.params, **(params.get("reward_params") or {})}, sort_keys=True),
            "loops": params.get("loops"), "lr": params.get("lr", math.nan), "entropy": params.get("entropy", math.nan),
            "batch_steps": None, "algo": params.get("algo"), "seed": repeat_index(params)}


def _figures(run: RunDir, last: int) -> dict:
    rows = run.progress_rows()
    if not rows:
        return {"score": math.nan, "last_score": math.nan, "best_iteration": None, "iterations": 0, "episodes": 0,
                **window_means([])}
    scores = pd.to_numeric(pd.Series([r.get("val_score") for r in rows]), errors="coerce").dropna()
    best = run.best() if is_file(join(run.checkpoints, BEST)) else None
    return {"score": float(scores.max()) if len(scores) else math.nan,
            "last_score": float(scores.iloc[-1]) if len(scores) else math.nan,
            "best_iteration": int(best["iteration"]) if best else None,
            "iterations": int(rows[-1]["iteration"]), "episodes": int(rows[-1]["episodes_total"]),
            **window_means(rows[-last:])}


def format_trials(table: pd.DataFrame) -> str:
    """A sweep's summary table as aligned text, best validation score first."""
    if table.empty:
        return "(no trials)"
    lines = [f"{'trial':<56} {'status':<10} {'iters':>5} {'score':>7} {'at':>5} {'reduction':>9} {'dacc pp':>8}"]
    for r in table.itertuples():
        at = "-" if r.best_iteration is None or pd.isna(r.best_iteration) else str(int(r.best_iteration))
        lines.append(f"{r.trial[:56]:<56} {r.status:<10} {r.iterations:>5} {_x(r.score):>7} {at:>5} "
                     f"{_x(r.reduction_mean):>9} {_pp(r.acc_change_pp_mean):>8}")
    return "\n".join(lines)


def _pp(value: float) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:+.2f}"


def _x(value: float) -> str:
    return "-" if value is None or not np.isfinite(value) else f"x{value:.3f}"


def read_summary(experiment_dir: Location) -> pd.DataFrame:
    """A sweep's summary table from OUT/NAME/summary.parquet (a path or a URI)."""
    path = join(experiment_dir, SUMMARY_FILE)
    if not is_file(path):
        raise NeonRayError(f"{display(experiment_dir)}: no sweep summary ({SUMMARY_FILE} is missing)")
    return pd.read_parquet(io.BytesIO(read_bytes(path)))


def write_best(experiment_dir: Location, table: pd.DataFrame, work_dir: str | Path | None = None) -> Location | None:
    """Copy the best-scoring trial's agent to OUT/NAME/best (module docstring); None when no trial has a score.
    By URI it is assembled in a local folder under `work_dir` (default: the system's temporary folder)."""
    scored = table[table["score"].notna()]
    if scored.empty:
        return None
    top = scored.iloc[0]
    dest = join(experiment_dir, BEST_DIR)
    if is_uri(dest):
        with tempfile.TemporaryDirectory(prefix="neon-ray-best-", dir=work_dir) as staging:
            _assemble_best(top, _agent_run(experiment_dir, top), Path(staging) / BEST_DIR)
            publish_run(RunDir(Path(staging) / BEST_DIR), dest, set())
        return dest
    tmp = experiment_dir / f".{BEST_DIR}.tmp"
    _assemble_best(top, _agent_run(experiment_dir, top), tmp)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def _agent_run(experiment_dir: Location | None, row) -> RunDir:
    """A table row's agent run: by URI under `experiment_dir`, whose credentials (if it carries any) the
    table's agent_dir does not keep."""
    if experiment_dir is not None and is_uri(experiment_dir):
        return RunDir(join(experiment_dir, row["trial"], AGENT_DIR))
    return RunDir(row["agent_dir"])


def _assemble_best(top: pd.Series, source: RunDir, tmp: Path) -> None:
    pointer = source.best() or source.latest()
    shutil.rmtree(tmp, ignore_errors=True)
    checkpoint = tmp / CHECKPOINTS / pointer["checkpoint"]
    checkpoint.mkdir(parents=True)
    for name in (SPEC_FILE, WEIGHTS_FILE):
        _copy(join(source.checkpoints, pointer["checkpoint"], name), checkpoint / name)
    for path in (source.config_path, source.progress_path):
        _copy(path, tmp / base_name(path))
    for kind in (LATEST, BEST):
        atomic_write_text(tmp / CHECKPOINTS / kind, json.dumps(pointer))
    atomic_write_text(tmp / BEST_SOURCE, json.dumps({"trial": top["trial"], "score": float(top["score"]),
                                                     "iteration": int(pointer["iteration"]),
                                                     "agent_dir": top["agent_dir"]}, indent=1))


def _copy(source: Location, dest: Path) -> None:
    if is_uri(source):
        dest.write_bytes(read_bytes(source))
    else:
        shutil.copy2(local_path(source), dest)


def read_curves(table: pd.DataFrame, experiment_dir: Location | None = None) -> pd.DataFrame:
    """Every trial's validation scores: one row per trial and scored iteration (trial, iteration, val_score).
    `experiment_dir`: OUT/NAME, needed only by URI (`_agent_run`)."""
    parts = []
    for _, row in table.iterrows():
        trial, rows = row["trial"], _agent_run(experiment_dir, row).progress_rows()
        frame = pd.DataFrame(rows, columns=["iteration", "val_score"]).apply(pd.to_numeric, errors="coerce")
        parts.append(frame.dropna().assign(trial=trial))
    curves = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return curves.reindex(columns=["trial", "iteration", "val_score"])


def read_heldout(experiment_dir: Location) -> tuple[dict[float, pd.DataFrame], dict[str, bytes]]:
    """The best agent's held-out evaluation (OUT/NAME/heldout, a path or a URI): per tolerance one row per
    method, and its plots; both empty when the sweep has none."""
    folder = join(experiment_dir, HELDOUT_DIR)
    path = join(folder, "evaluation.json")
    if not is_file(path):
        return {}, {}
    doc = json.loads(read_bytes(path).decode())
    tables = {float(tol): pd.DataFrame([{"method": method, **row} for method, row in methods.items()])
              for tol, methods in doc.get("tolerances", {}).items()}
    return tables, {parts[0]: read_bytes(found) for parts, found in list_files(folder)
                    if len(parts) == 1 and parts[0].endswith(".png")}


def drop_superseded_reports(trial_dirs) -> int:
    """Keep each trial's last report of every iteration in Tune's result.json; the number of rows dropped.

    A sweep stopped between a trial's report and Tune's next snapshot of the experiment restores
    that trial from the checkpoint before, so the resumed trial reports the same iteration again
    and Tune's logger appends it after the first. The later report is the one the trial's run
    directory now holds (trial.py rolls the agent back to its checkpoint), so the earlier one goes.
    """
    dropped = 0
    for trial_dir in trial_dirs:
        path = join(trial_dir, "result.json")
        if not is_file(path):
            continue  # a trial that never started
        lines = [line for line in read_bytes(path).decode().splitlines() if line.strip()]
        last = {json.loads(line).get("training_iteration"): line for line in lines}
        if len(last) == len(lines):
            continue
        kept = [last[i] for i in sorted(last, key=lambda i: -1 if i is None else i)]
        atomic_write_text(path, "".join(line + "\n" for line in kept))
        dropped += len(lines) - len(kept)
        log.info("%s: dropped %d report(s) superseded by the resumed trial", display(path), len(lines) - len(kept))
    return dropped

