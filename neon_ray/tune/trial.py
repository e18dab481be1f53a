"""One sweep trial: train one agent in the trial's folder, validated and reported to Tune every N iterations.

    plan = TrialPlan(base=cfg.trial_base(), main_cpus=1.0, runner_cpus=1.0)
    tune.with_parameters(run_trial, plan=plan)     # the function trainable of a sweep

A trial is `neon-ray train` with validation, run inside Tune's trial actor: the run directory is
TRIAL/agent (config.json, progress.csv, checkpoints with `latest` and `best`, TensorBoard), and
the iterations, checkpoints and validation scores come from `agent.training`'s own loop and
`Validator`. Each validation (every `validate_every` iterations and at the end) is one Tune
report: `score` (the validation score, `results.summary.score`), the agent iteration, and the
training episodes' mean reduction, accuracy change and return since the previous report.

Every report carries a Tune checkpoint holding a copy of the run's `latest` and `best` pointers.
A trial that Tune restores (`--resume`, or a retry after a failure) rolls its run directory back
to that checkpoint, dropping a checkpoint saved after the last report, and continues from there:
Tune's rows and the run's progress.csv then hold each iteration once. The algorithm lives in the
trial's process (learner included); EnvRunners, if any, land in the trial's placement group.

With a URI as the sweep's storage (`TrialPlan.storage`), TRIAL/agent is that URI's trial folder:
the trial trains in a local staging copy under `work_dir` and publishes it as it goes, as
`neon-ray train --out URI` does (`published.staged_run`), each report after what it reports is
there; a restored trial fetches the run from the URI, rolls it back and publishes that first.
"""
from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from ray import tune

from neon_ray.agent.config import AgentTrainConfig, mean_episode_steps
from neon_ray.agent.diagnostics import TrainingBoard
from neon_ray.agent.run_dir import BEST, LATEST, RunDir, check_run, prepare_run
# train_agent's own loop, restore and validation, so that a trial trains exactly as `neon-ray train` does;
# train_agent itself builds its RunDir and Validator inside, where a trial needs its reporting ones.
from neon_ray.agent.published import PublishedRun, staged_run
from neon_ray.agent.training import Validator, algo_config, restore_checkpoint, resume_seed, train_loop
from neon_ray.errors import CheckpointError
from neon_ray.runtime.files import Location, atomic_write_text, join, remove, without_credentials
from neon_ray.tune.space import trial_config
from neon_ray.zoo.store import open_zoo

AGENT_DIR = "agent"
"""The trial's agent run directory, under Tune's trial folder."""
_POINTERS = "pointers.json"
_MEANS = ("return_mean", "reduction_mean", "acc_change_pp_mean")


@dataclass(frozen=True)
class TrialPlan:
    """What every trial of a sweep shares (passed to each trial through tune.with_parameters)."""

    base: AgentTrainConfig
    """The agent settings before the trial's params (validation and checkpoint interval set)."""
    main_cpus: float
    """CPUs of the trial's process: the algorithm, its learner, and sampling without runners."""
    runner_cpus: float
    """CPUs of each EnvRunner (base.num_env_runners of them, in the trial's placement group)."""
    iterations: int | None = None
    """Stop after the report at or past this iteration; None: when base.episodes are done."""
    storage: str | None = None
    """The sweep's storage when it is a URI (trials publish their runs there); None: a path, written directly."""
    work_dir: str | None = None
    """With a URI storage: the local folder of the trials' staging copies (None: the system's temporary folder)."""


class _Enough(Exception):
    """The trial reached its iterations: leave the training loop (its last checkpoint was just reported)."""


def window_means(rows: list[dict]) -> dict:
    """Episode-weighted mean return, reduction and accuracy change of progress.csv rows (NaN without episodes)."""
    episodes = np.array([float(r["episodes"] or 0) for r in rows])
    out = {}
    for key in _MEANS:
        values = np.array([_float(r.get(key)) for r in rows])
        keep = (episodes > 0) & np.isfinite(values)
        out[key] = float(np.average(values[keep], weights=episodes[keep])) if keep.any() else math.nan
    return out


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


class ReportingValidator(Validator):
    """`training.Validator` that also reports each validation, with a checkpoint, to Tune."""

    def __init__(self, cfg: AgentTrainConfig, zoo, run: RunDir, reported: int, stop_at: int | None):
        super().__init__(cfg, zoo, run)
        self.reported, self.stop_at = reported, stop_at

    def validate(self, iteration: int, episodes: int, progress: bool) -> float:
        value = super().validate(iteration, episodes, progress)
        rows = [r for r in self.run.progress_rows() if self.reported < int(r["iteration"]) <= iteration]
        metrics = {"score": value, "best_score": self.best_score, "iteration": iteration, "episodes": episodes,
                   **window_means(rows)}
        with tempfile.TemporaryDirectory() as folder:
            pointers = {kind: _read_pointer(self.run, kind) for kind in (LATEST, BEST)}
            (Path(folder) / _POINTERS).write_text(json.dumps(pointers))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        self.reported = iteration
        if self.stop_at is not None and iteration >= self.stop_at:
            raise _Enough
        return value


def _read_pointer(run: RunDir, kind: str) -> dict | None:
    path = run.checkpoints / kind
    return json.loads(path.read_text()) if path.is_file() else None


def _reported_pointers() -> dict | None:
    """The run's pointers as of the trial's last Tune report (None: a fresh start)."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return json.loads((Path(folder) / _POINTERS).read_text())


def roll_back(run: RunDir, pointers: dict) -> int:
    """Make the run what it was at the last report: its pointers back, newer checkpoints gone.
    Returns the reported iteration. A `best` whose checkpoint was pruned since is dropped."""
    latest = pointers[LATEST]
    if latest is None or not (run.checkpoints / latest["checkpoint"]).is_dir():
        raise CheckpointError(f"{run.root}: the checkpoint of the trial's last report is missing; the trial folder "
                              "must be on storage every node shares and keep_checkpoints >= 2")
    for path in run.checkpoints.glob("iter_*"):
        if path.is_dir() and int(path.name.split("_")[1]) > latest["iteration"]:
            shutil.rmtree(path, ignore_errors=True)
    atomic_write_text(run.checkpoints / LATEST, json.dumps(latest))
    best = pointers[BEST]
    if best is not None and (run.checkpoints / best["checkpoint"]).is_dir():
        atomic_write_text(run.checkpoints / BEST, json.dumps(best))
    else:
        (run.checkpoints / BEST).unlink(missing_ok=True)
    return int(latest["iteration"])


def _resolved(plan: TrialPlan, params: dict, out: Location, zoo):
    cfg, batch_episodes = trial_config(plan.base, params)
    cfg = replace(cfg, out=str(out))
    selection = cfg.select(zoo)
    if batch_episodes is not None:
        steps = mean_episode_steps(zoo.manifest(), selection.train_ids, cfg.episode.loops)
        cfg = replace(cfg, train_batch_size=max(1, int(round(batch_episodes * steps))))
    return cfg.resolve(selection, zoo.manifest()), selection


def _agent_location(plan: TrialPlan) -> Location:
    """TRIAL/agent: in Tune's own trial folder on the sweep's storage (get_trial_dir() is a scratch copy under
    /tmp/ray), by URI when the storage is one."""
    storage = tune.get_context().get_storage()
    if plan.storage is None:
        return Path(storage.trial_fs_path) / AGENT_DIR
    return join(plan.storage, storage.experiment_dir_name, storage.trial_dir_name, AGENT_DIR)


def run_trial(params: dict, plan: TrialPlan) -> None:
    """Tune's function trainable: train (or continue) the trial's agent, reporting every validation."""
    target = _agent_location(plan)
    pointers = _reported_pointers()
    if pointers is None and isinstance(target, Path):  # a retry without a report starts clean
        shutil.rmtree(target, ignore_errors=True)
    elif pointers is None:
        remove(target)
    with _trial_work_dir(plan) as work_dir, staged_run(target, work_dir, fetch=pointers is not None) as run:
        reported = roll_back(run, pointers) if pointers is not None else 0
        if pointers is not None and isinstance(run, PublishedRun):
            run.publish()  # the URI rolled back too
        if plan.iterations is not None and reported >= plan.iterations:
            return  # it was lost after its last report: nothing is left to train
        _train(run, params, plan, reported, without_credentials(target))


@contextlib.contextmanager
def _trial_work_dir(plan: TrialPlan):
    """With a URI storage, WORK/neon-ray-trial-<trial id>, empty, removed at the end: what a killed trial left
    there is removed when it is restored (on this node). With a path storage: nothing, None."""
    if plan.storage is None:
        yield None
        return
    folder = Path(plan.work_dir or tempfile.gettempdir()) / f"neon-ray-trial-{tune.get_context().get_trial_id()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _train(run: RunDir, params: dict, plan: TrialPlan, reported: int, out: Location) -> None:
    zoo = open_zoo(plan.base.zoo)
    cfg, selection = _resolved(plan, params, out, zoo)
    check_run(run, cfg, resume=bool(reported))
    config = algo_config(cfg, selection.train_ids, num_cpus_for_main_process=plan.main_cpus,
                         num_cpus_per_env_runner=plan.runner_cpus, seed=resume_seed(cfg.seed, reported))
    algo = config.build_algo()
    try:
        pointer = prepare_run(run, cfg, selection, resume=bool(reported))
        if pointer:
            restore_checkpoint(algo, run, pointer, cfg.algo)
        validator = ReportingValidator(cfg, zoo, run, reported, plan.iterations)
        with TrainingBoard(run.tensorboard, cfg.episode, first_iteration=algo.iteration + 1) as board:
            train_loop(algo, cfg, run, board, False, validator)
    except _Enough:
        pass
    finally:
        algo.stop()
