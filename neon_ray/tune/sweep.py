"""Ray Tune sweeps of the agent: each trial trains one agent, Tune ranks them by their validation score.

    cfg = SweepConfig(base=AgentTrainConfig(zoo="runs/zoo", holdout=("nursery",)), out="runs/sweeps",
                      validation_datasets=("adult",), iterations=50, samples=2)
    result = run_sweep(cfg)                       # OUT/NAME: trials, summary.parquet, best/
    resume_sweep("runs/sweeps/sweep")             # after a Ctrl-C, a kill or a lost cluster

The objective (trial.py): a trial trains on the sweep's training datasets (the protocol of
`base`, minus the validation datasets) and every `report_every` iterations scores its newest
checkpoint on every network of `validation_datasets`, which no trial trains on, with
`results.summary.score`. Tune gets that as metric "score", mode "max", so
`ResultGrid.get_best_result()` works, schedulers (ASHA) stop weak trials on it and searchers
(Optuna) learn from it. Each trial's agent is its best-scoring checkpoint; the sweep's best trial
is the one with the highest score, copied to OUT/NAME/best (an agent run directory `prune` and
`evaluate` accept). With a holdout in `base`, that agent is then evaluated on the held-out
datasets (`agent.evaluate.evaluate`): neither trained nor selected on.

What varies (space.py): tolerances x reward variants x dimensions (loops, lr, entropy, batch
size in episodes, algo, reward parameters), searched as a grid, at random, or by Optuna, each
configuration repeated `samples` times with seeds base.seed + 0, 1, ...

Trials ask for `cpus_per_trial` CPUs (their process: algorithm, learner, and sampling without
runners) plus `cpus_per_runner` per EnvRunner, as one placement group; Tune runs as many as the
cluster's CPUs hold (or `concurrent`). OUT/NAME/sweep.json holds the sweep's settings: resuming
rebuilds the trainable and the search space from it, finished trials stay as they are, and
interrupted ones continue from their last report. SIGTERM during a sweep stops it like Ctrl-C
(state saved, trials marked unfinished). On a multi-node cluster the zoo must be on a filesystem
every node shares, and `out` too, or a URI.

`out` may be a URI (s3://bucket/sweeps, any URI pyarrow opens): Tune gets it as its storage
(`RunConfig(storage_path=..., storage_filesystem=...)`) and keeps its experiment state, trial
logs and checkpoints there; each trial publishes its agent run into its trial folder from a local
staging copy (trial.py), and sweep.json, summary.parquet, best/ and heldout/ are written there
too (best/ and heldout/ made in a staging folder under `work_dir` first). `resume_sweep` takes
OUT/NAME as a URI too. Ray's workers need the store's credentials: in their environment, or in
the URI (`KEY:SECRET@`, which no file neon-ray writes keeps).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import signal
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from ray import tune

from neon_ray.agent.evaluate import EvaluateConfig, Evaluation, evaluate
from neon_ray.errors import ConfigError
from neon_ray.runtime.files import (
    Location, atomic_write, atomic_write_text, check_output_dir, copy_tree, display, is_dir, is_file, is_uri, join,
    open_uri, remove, resolved,
)
from neon_ray.runtime.ray_session import cluster_cpus, ray_session, verbose
from neon_ray.tune.config import SWEEP_FILE, SweepConfig, load_sweep, load_sweep_spec  # noqa: F401 (this module's API)
from neon_ray.tune.space import (  # noqa: F401  (RewardVariant and the defaults are this module's API too)
    DEFAULT_REWARDS, DEFAULT_TOLERANCES, Dim, RewardVariant, trial_label,
)
from neon_ray.tune.table import (  # noqa: F401
    BEST_DIR, HELDOUT_DIR, SUMMARY_COLUMNS, SUMMARY_FILE, drop_superseded_reports, format_trials, read_summary,
    trial_location, trial_table, write_best,
)
from neon_ray.tune.trial import TrialPlan, run_trial
from neon_ray.zoo.store import open_zoo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    """A sweep after Tune returned: complete, or interrupted with unfinished trials."""

    table: pd.DataFrame
    """One row per trial (table.SUMMARY_COLUMNS), best score first."""
    experiment_dir: Location
    """OUT/NAME: Tune's trial folders, sweep.json, summary.parquet, best/; point TensorBoard here."""
    summary_path: Location
    """The Parquet copy of `table`."""
    grid: object = None
    """Tune's ResultGrid (get_best_result() ranks by the score)."""
    best: Location | None = None
    """OUT/NAME/best, the best trial's agent (None: no trial was scored)."""
    evaluation: Evaluation | None = None
    """The best agent's evaluation on the held-out datasets (None: no holdout, or not complete)."""

    @property
    def unfinished(self) -> list[str]:
        return list(self.table.loc[self.table["status"] == "unfinished", "trial"])

    @property
    def failed(self) -> list[str]:
        return list(self.table.loc[self.table["status"] == "error", "trial"])


def run_sweep(cfg: SweepConfig, address: str | None = None, progress: bool = True,
              work_dir: str | Path | None = None) -> SweepResult:
    """Run a new sweep (OUT/NAME must not exist); `progress` logs a line per trial report. `work_dir`: with a
    URI `out`, the local folder of the staging copies (default: the system's temporary folder)."""
    check_output_dir(cfg.out, "sweep output directory")
    if is_dir(cfg.experiment_dir) or is_file(cfg.experiment_dir):
        raise ConfigError(f"{display(cfg.experiment_dir)} exists already; choose another --name or --out, "
                          f"or continue it with --resume {display(cfg.experiment_dir)}")
    return _run(cfg, address, progress, resume=False, work_dir=work_dir)


def resume_sweep(experiment_dir: Location, address: str | None = None, progress: bool = True,
                 work_dir: str | Path | None = None) -> SweepResult:
    """Continue an interrupted sweep from OUT/NAME (a path or a URI): unfinished and failed trials go on from
    their last report."""
    cfg = load_sweep(experiment_dir)
    check_output_dir(cfg.experiment_dir, "sweep directory (--resume)")
    return _run(cfg, address, progress, resume=True, work_dir=work_dir)


def _run(cfg: SweepConfig, address: str | None, progress: bool, resume: bool, work_dir) -> SweepResult:
    trial_base = cfg.trial_base()
    zoo = open_zoo(trial_base.zoo)
    selection = trial_base.select(zoo)  # refuses unknown or overlapping validation datasets now
    plan = TrialPlan(trial_base, cfg.cpus_per_trial, cfg.cpus_per_runner, cfg.iterations,
                     storage=str(cfg.out) if is_uri(cfg.out) else None, work_dir=None if work_dir is None else str(work_dir))
    bundles = [{"CPU": cfg.cpus_per_trial}] + [{"CPU": cfg.cpus_per_runner}] * trial_base.num_env_runners
    with ray_session(address):
        _check_fits(bundles, cluster_cpus())
        if not resume:
            atomic_write_text(join(cfg.experiment_dir, SWEEP_FILE), json.dumps(cfg.to_dict(), indent=1) + "\n")
        tuner = _tuner(cfg, plan, tune.PlacementGroupFactory(bundles), resume)
        if progress:
            _announce(cfg, selection, bundles, resume)
        with _quiet_tune_output(), _sigterm_stops_tune():
            grid = tuner.fit()
        drop_superseded_reports(trial_location(cfg.experiment_dir, result.path) for result in grid if result.path)
        table = trial_table(grid, cfg.summary_iterations, cfg.iterations, cfg.experiment_dir)
        path = join(cfg.experiment_dir, SUMMARY_FILE)
        atomic_write(path, lambda fh: table.to_parquet(fh, index=False))
        best = write_best(cfg.experiment_dir, table, work_dir)
        complete = not (table["status"] == "unfinished").any()
        evaluation = evaluate_best(cfg, best, address, work_dir) if complete and best and cfg.base.holdout \
            and cfg.final_evaluation else None
    if progress:
        log.info(f"summary written to {display(path)}" + (f"; best agent: {display(best)}" if best else ""))
    return SweepResult(table, cfg.experiment_dir, path, grid, best, evaluation)


def _check_fits(bundles: list[dict], cpus: float) -> None:
    need = sum(b["CPU"] for b in bundles)
    if need > cpus + 1e-9:
        raise ConfigError(f"a trial asks for {need:g} CPUs (its process + {len(bundles) - 1} EnvRunner(s)) but the "
                          f"cluster has {cpus:g}: lower --cpus-per-trial, --runners or --cpus-per-runner")


def _searcher(cfg: SweepConfig):
    if cfg.search == "grid":
        return None, 1  # the repeats are the param space's `repeat` axis
    if cfg.search == "random":
        generator = tune.search.BasicVariantGenerator(constant_grid_search=True, random_state=cfg.base.seed)
        return generator, cfg.trials
    try:
        from ray.tune.search.optuna import OptunaSearch  # optional: neon-ray[tune] installs optuna
        import optuna
    except ImportError:
        raise ConfigError("search 'optuna' needs the optuna package: pip install 'neon-ray[tune]' "
                          "(or use --search random or grid)") from None
    if not verbose():  # Optuna announces every study it creates
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = OptunaSearch(seed=cfg.base.seed)
    if cfg.samples > 1:
        searcher = tune.search.Repeater(searcher, repeat=cfg.samples)
    return searcher, cfg.trials * cfg.samples


def _scheduler(cfg: SweepConfig):
    if cfg.scheduler == "fifo":
        return None
    reports = cfg.iterations // cfg.reports_every if cfg.iterations else 10**6
    return tune.schedulers.ASHAScheduler(time_attr="training_iteration", max_t=max(reports, cfg.grace_reports),
                                         grace_period=cfg.grace_reports, reduction_factor=2)


def _storage(location: Location) -> tuple[str, object]:
    """(path, filesystem) for Tune: a path and None, or for a URI its path inside the filesystem pyarrow opens
    (Tune then never parses the URI: its query, e.g. ?endpoint_override=, and credentials stay intact)."""
    if not is_uri(location):
        return str(location), None
    fs, path = open_uri(str(location))
    return path.rstrip("/"), fs


def _tuner(cfg: SweepConfig, plan: TrialPlan, resources, resume: bool):
    trainable = tune.with_resources(tune.with_parameters(run_trial, plan=plan), resources)
    param_space = cfg.space.param_space(cfg.search, cfg.samples)
    if resume:
        where, fs = _storage(cfg.experiment_dir)
        if not tune.Tuner.can_restore(where, storage_filesystem=fs):
            raise ConfigError(f"--resume: {display(cfg.experiment_dir)} holds no Tune experiment state to resume from")
        return tune.Tuner.restore(where, trainable=trainable, param_space=param_space, resume_unfinished=True,
                                  resume_errored=True, storage_filesystem=fs)
    searcher, samples = _searcher(cfg)
    namer = TrialNamer(cfg.space.varied(cfg.samples))
    storage, fs = _storage(resolved(cfg.out))
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric="score", mode="max", search_alg=searcher, scheduler=_scheduler(cfg),
                                    num_samples=samples, max_concurrent_trials=cfg.concurrent,
                                    trial_name_creator=namer, trial_dirname_creator=namer, reuse_actors=True),
        run_config=tune.RunConfig(name=cfg.name, storage_path=storage, storage_filesystem=fs, verbose=0,
                                  callbacks=[ProgressLines()],
                                  failure_config=tune.FailureConfig(max_failures=cfg.max_failures)),
    )


class TrialNamer:
    """Trial names and folders: `tol=5_neon_s1_<trial id>`, the params that vary and Tune's id."""

    def __init__(self, varied: tuple[str, ...]):
        self.varied = varied

    def __call__(self, trial) -> str:
        label = trial_label(trial.config, self.varied)
        return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label.replace("(", "_").replace(")", "")) + f"_{trial.trial_id}"


class ProgressLines(tune.Callback):
    """One log line per trial report, completion, retry and failure (the driver's view of the sweep)."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        log.info(f"{trial}: iteration {result.get('iteration')}, score x{result.get('score', math.nan):.3f} "
                 f"(best x{result.get('best_score', math.nan):.3f}), reduction x{result.get('reduction_mean', math.nan):.2f}, "
                 f"dacc {result.get('acc_change_pp_mean', math.nan):+.2f} pp")

    def on_trial_complete(self, iteration, trials, trial, **info):
        log.info(f"{trial}: finished")

    def on_trial_recover(self, iteration, trials, trial, **info):
        log.warning(f"{trial}: failed ({_last_line(trial.error_file)}); retrying from its last report")

    def on_trial_error(self, iteration, trials, trial, **info):
        log.warning(f"{trial}: failed ({_last_line(trial.error_file)}); no retries left")


def _last_line(error_file) -> str:
    try:
        lines = [s for s in Path(error_file).read_text().splitlines() if s.strip()]
    except (OSError, TypeError):
        return "see the trial's error.txt"
    return lines[-1][:200] if lines else "no message"


def _announce(cfg: SweepConfig, selection, bundles: list[dict], resume: bool) -> None:
    what = "resuming" if resume else "starting"
    stop = f"{cfg.iterations} iterations" if cfg.iterations else "its episodes"
    log.info(f"sweep {cfg.name} ({what}): {cfg.trial_count()} trials ({cfg.search} search, {cfg.scheduler} scheduler, "
             f"{cfg.samples} seed(s) each), each to {stop}, scored every {cfg.reports_every} iterations on "
             f"{', '.join(cfg.trial_base().validation_datasets)}; {len(selection.train_ids)} training networks "
             f"(protocol {selection.protocol}); a trial takes {sum(b['CPU'] for b in bundles):g} CPUs")
    log.info(f"TensorBoard: tensorboard --logdir {display(cfg.experiment_dir)}")


def evaluate_best(cfg: SweepConfig, best: Location, address: str | None = None,
                  work_dir: str | Path | None = None) -> Evaluation:
    """The best agent on base.holdout, the datasets no trial trained on and no score selected on
    (OUT/NAME/heldout: evaluation.json, Pareto plots; rows in OUT/NAME/heldout/results). By URI, the
    agent is fetched to and evaluated in a local folder under `work_dir`, then OUT/NAME/heldout replaced."""
    out = join(cfg.experiment_dir, HELDOUT_DIR)
    log.info(f"evaluating the best agent on the held-out datasets {', '.join(cfg.base.holdout)}")
    if not is_uri(out):
        return _evaluate(cfg, best, out, address)
    with tempfile.TemporaryDirectory(prefix="neon-ray-heldout-", dir=work_dir) as staging:
        copy_tree(best, Path(staging) / BEST_DIR)
        evaluation = _evaluate(cfg, Path(staging) / BEST_DIR, Path(staging) / HELDOUT_DIR, address)
        remove(out)
        copy_tree(evaluation.out, out)
    return replace(evaluation, out=out)


def _evaluate(cfg: SweepConfig, best: Path, out: Path, address: str | None) -> Evaluation:
    return evaluate(EvaluateConfig(agent=str(best), datasets=cfg.base.holdout, tolerances=cfg.final_tolerances,
                                   results=str(out / "results"), out=str(out), baselines=cfg.final_baselines,
                                   seed=cfg.base.seed, address=address))


@contextlib.contextmanager
def _quiet_tune_output():
    """Tune's legacy reporter at verbose=0 prints nothing; its newer one prints an experiment box
    and a TensorBoard path into Ray's session folder (not the sweep's) even then. Unless verbose
    (`neon-ray --verbose`) or the user chose RAY_AIR_NEW_OUTPUT, take the silent one for this fit,
    and keep Tune's own resume hint (Tuner.restore) out: `--resume` is the way here."""
    if verbose() or "RAY_AIR_NEW_OUTPUT" in os.environ:
        yield
        return
    hint = _DropTuneHints()
    loggers = [logging.getLogger(name) for name in ("ray.tune.tune", "ray.tune.analysis.experiment_analysis")]
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    for logger in loggers:
        logger.addFilter(hint)
    try:
        yield
    finally:
        os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        for logger in loggers:
            logger.removeFilter(hint)


class _DropTuneHints(logging.Filter):
    """Tune's messages on an interrupted sweep that neon-ray says better: which trials are unfinished, and --resume."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(s in message for s in ("Tuner.restore(", "Stop signal received", "Trials did not complete",
                                              "Failed to fetch metrics"))


@contextlib.contextmanager
def _sigterm_stops_tune():
    """SIGTERM (a job stopped, a pod evicted) stops the sweep as Ctrl-C does: Tune saves its state and the
    trials count as unfinished, so --resume continues them. Tune itself handles only SIGINT and SIGUSR1."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(), signal.SIGUSR1))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
