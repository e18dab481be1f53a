"""Ray Tune sweeps of the reward trade-off: tolerance x reward, one agent per grid point.

    cfg = SweepConfig(base=AgentTrainConfig(zoo="runs/zoo"), out="runs/sweeps", iterations=50)
    result = run_sweep(cfg)          # DIR/NAME/summary.parquet; format_trials(result.table) shows it
    # tensorboard --logdir runs/sweeps/sweep

Every trial trains the agent of `base` (same zoo, protocol, algorithm, fine-tuning, budget) with
one tolerance and one reward variant from the grid. The zoo is the only input that says which
datasets are covered, so the same sweep runs on a two-dataset test zoo or on the zoo of all 28
benchmark datasets (optionally with a protocol-B holdout in `base`).

Trials reserve `cpus_per_trial` CPUs each (main process and learner in one, sampling in that
process), so Tune runs floor(cluster CPUs / cpus_per_trial) trials at once: two on a 2-CPU
machine. Each trial directory holds Tune's params.json, result.json, progress.csv, TensorBoard
event files and a final checkpoint; the per-iteration means of `callbacks.PruningMetricsCallback`
appear there as `neon/return_mean`, `neon/reduction_mean`, `neon/acc_change_pp_mean`.
On a multi-node cluster `out` (and the zoo) must be on a filesystem every node shares.

Each trial's settings reach Tune as RLlib's `env_config` dict (`EnvConfig.to_dict()`) and are
read back typed (`EnvConfig.from_dict`) to name trials and summarise them. Progress goes to
this module's logger at INFO.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from neon_ray.agent.algos import trial_cpus
from neon_ray.agent.callbacks import EPISODES_METRIC, means_from_sums
from neon_ray.agent.config import AgentTrainConfig
from neon_ray.agent.training import algo_config
from neon_ray.errors import ConfigError, NeonRayError
from neon_ray.nets.checks import check_number
from neon_ray.pruning.episode_config import EnvConfig, EpisodeConfig
from neon_ray.pruning.rewards import get_reward
from neon_ray.pruning.tolerance import parse_tolerance
from neon_ray.runtime.files import atomic_write, check_output_dir
from neon_ray.runtime.ray_session import cluster_cpus, ray_session, verbose
from neon_ray.zoo.store import open_zoo

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.parquet"
DEFAULT_TOLERANCES: tuple[float, ...] = (1.0, 5.0, 50.0)
SUMMARY_COLUMNS = ("trial", "tolerance", "reward", "reward_params", "status", "iterations", "episodes", "return_mean",
                   "reduction_mean", "reduction_geomean", "acc_change_pp_mean", "trial_dir", "error")
_MEANS = ("return_mean", "reduction_mean", "reduction_geomean", "acc_change_pp_mean")


@dataclass(frozen=True)
class RewardVariant:
    """One reward of the grid: a reward name and its parameters."""

    reward: str
    """Reward name (see neon_ray.pruning.rewards)."""
    params: dict = field(default_factory=dict)
    """Reward parameters; empty takes AgentTrainConfig's default (NEON's rewards: the 64,000 scale)."""

    def __post_init__(self) -> None:
        if not isinstance(self.params, dict):
            raise ConfigError(f"reward {self.reward!r}: params must be a dict, got {self.params!r}")
        for key, value in self.params.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"reward {self.reward!r}: parameter {key}={value!r} must be a finite number")
        get_reward(self.reward, **self.params)  # names a bad reward or parameter

    @property
    def label(self) -> str:
        """`neon` or `composite(w_params=2)`: the form `parse` reads back (with : and ,)."""
        if not self.params:
            return self.reward
        return f"{self.reward}(" + ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                            for k, v in sorted(self.params.items())) + ")"

    @classmethod
    def parse(cls, text: str) -> "RewardVariant":
        """`NAME` or `NAME:key=value,key=value` (numbers become floats)."""
        name, _, rest = text.partition(":")
        params = {}
        for item in filter(None, (s.strip() for s in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ConfigError(f"reward {text!r}: expected NAME or NAME:key=value,key=value, got item {item!r}")
            params[key.strip()] = _number_or_text(value.strip())
        return cls(name.strip(), params)


DEFAULT_REWARDS: tuple[RewardVariant, ...] = (
    RewardVariant("neon"),
    RewardVariant("composite", {"w_params": 1.0}),
    RewardVariant("composite", {"w_params": 3.0}),
)


def _number_or_text(value: str):
    try:
        return float(value)
    except ValueError:
        return value


@dataclass(frozen=True)
class SweepConfig:
    """A grid of tolerance x reward over one base agent configuration."""

    base: AgentTrainConfig
    """Settings every trial shares; its episode's tolerance, reward and reward_params are replaced by the grid."""
    out: str
    """Tune storage directory (made absolute); the sweep goes to OUT/NAME."""
    name: str = "sweep"
    """Experiment name: the folder under `out`."""
    tolerances: tuple = DEFAULT_TOLERANCES
    """Tolerances to try: numbers (pp) or (lo, hi) ranges drawn per episode."""
    rewards: tuple[RewardVariant, ...] = DEFAULT_REWARDS
    """Reward variants to try."""
    iterations: int | None = None
    """Training iterations per trial; None: until base.episodes episodes (resolved as for train_agent)."""
    cpus_per_trial: float = 1.0
    """Logical CPUs each trial reserves (main process + learner); EnvRunners, if any, take 1 more each."""
    concurrent: int | None = None
    """Trials running at once; None: as many as the cluster's CPUs fit."""
    summary_iterations: int = 5
    """The summary averages each trial's episodes over its last this many iterations."""

    def __post_init__(self) -> None:
        if not isinstance(self.base, AgentTrainConfig):
            raise ConfigError(f"sweep: base must be an AgentTrainConfig, got {type(self.base).__name__}")
        if not isinstance(self.out, (str, os.PathLike)) or not str(self.out):
            raise ConfigError(f"sweep: out must be a directory path, got {self.out!r}")
        if not self.tolerances:
            raise ConfigError("sweep: tolerances is empty; give at least one")
        if not self.rewards:
            raise ConfigError("sweep: rewards is empty; give at least one")
        tolerances = tuple(parse_tolerance(tol, "sweep: tolerance") for tol in self.tolerances)
        object.__setattr__(self, "tolerances", tolerances)
        for tol in tolerances:
            replace(self.base.episode, tolerance=tol)  # the episode checks its sampling can draw from it
        if self.iterations is not None:
            _check_count("iterations", self.iterations)
        check_number("sweep: cpus_per_trial", self.cpus_per_trial, 0, None, lo_open=True)
        if self.concurrent is not None:
            _check_count("concurrent", self.concurrent)
        _check_count("summary_iterations", self.summary_iterations)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ConfigError(f"sweep: name {self.name!r} must use letters, digits, '_', '.', '-' only")

    @property
    def experiment_dir(self) -> Path:
        return Path(self.out).resolve() / self.name

    def trial_configs(self) -> list[AgentTrainConfig]:
        """The grid's agent configurations, tolerance-major."""
        return [replace(self.base, episode=replace(self.base.episode, tolerance=tol, reward=v.reward,
                                                   reward_params=dict(v.params) or None))
                for tol in self.tolerances for v in self.rewards]


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"sweep: {name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep."""

    table: pd.DataFrame
    """One row per trial (SUMMARY_COLUMNS)."""
    experiment_dir: Path
    """OUT/NAME: Tune's trial folders and summary.parquet; point TensorBoard here."""
    summary_path: Path
    """The Parquet copy of `table`."""


def run_sweep(cfg: SweepConfig, address: str | None = None, progress: bool = True) -> SweepResult:
    """Run the grid with Ray Tune, then write the summary table (`progress` logs what happens)."""
    from ray import tune  # Tune is only needed to run a sweep; importing it costs seconds

    check_output_dir(cfg.out, "sweep output directory")
    if cfg.experiment_dir.exists():
        raise ConfigError(f"{cfg.experiment_dir} exists already; choose another --name or --out")
    zoo = open_zoo(cfg.base.zoo)
    selection = cfg.base.select(zoo)
    trials = [t.resolve(selection, zoo.manifest()) for t in cfg.trial_configs()]
    first = trials[0]
    config = algo_config(first, selection.train_ids, num_cpus_for_main_process=cfg.cpus_per_trial)
    param_space = config.to_dict()
    param_space["env_config"] = tune.grid_search([t.env_config(selection.train_ids).to_dict() for t in trials])
    stop = ({"training_iteration": cfg.iterations} if cfg.iterations
            else {"env_runners/num_episodes_lifetime": first.episodes})
    with ray_session(address):
        concurrent = cfg.concurrent or max(1, int(cluster_cpus() // trial_cpus(config)))
        if progress:
            log.info(f"sweep {cfg.name}: {len(trials)} trials ({len(cfg.tolerances)} tolerances x {len(cfg.rewards)} rewards), "
                     f"{concurrent} at once, {len(selection.train_ids)} training networks (protocol {selection.protocol}); "
                     f"stop at {stop}")
        tuner = tune.Tuner(
            config.algo_class,
            param_space=param_space,
            tune_config=tune.TuneConfig(max_concurrent_trials=concurrent, trial_name_creator=_trial_name,
                                        trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(name=cfg.name, storage_path=str(Path(cfg.out).resolve()), stop=stop, verbose=0,
                                      checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True),
                                      failure_config=tune.FailureConfig(max_failures=0)),
        )
        with _quiet_tune_output():
            grid = tuner.fit()
    table = summarise_trials(grid, cfg.summary_iterations)
    path = cfg.experiment_dir / SUMMARY_FILE
    atomic_write(path, lambda fh: table.to_parquet(fh, index=False))
    if progress:
        log.info(f"summary written to {path}")
        log.info(f"TensorBoard: tensorboard --logdir {cfg.experiment_dir}")
    return SweepResult(table, cfg.experiment_dir, path)


@contextlib.contextmanager
def _quiet_tune_output():
    """Tune's legacy reporter at verbose=0 prints nothing; its newer one prints an experiment box
    and a TensorBoard path into Ray's session folder (not the sweep's) even then. Unless verbose
    (`neon-ray --verbose`) or the user chose RAY_AIR_NEW_OUTPUT, take the silent one for this fit."""
    if verbose() or "RAY_AIR_NEW_OUTPUT" in os.environ:
        yield
        return
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        os.environ.pop("RAY_AIR_NEW_OUTPUT", None)


def trial_label(episode: EpisodeConfig) -> str:
    """`tol=5_neon` / `tol=1-50_composite(w_params=2)`: what distinguishes a trial of the grid."""
    tol = episode.tolerance
    tol_text = "-".join(f"{v:g}" for v in tol) if isinstance(tol, tuple) else f"{tol:g}"
    params = episode.reward_params or {}
    reward = RewardVariant(episode.reward, params)
    # the default NEON scale is noise in a label; other parameters are what the grid varies
    shown = {k: v for k, v in params.items() if not (k == "scale" and reward.reward in ("neon", "neon2020"))}
    return f"tol={tol_text}_{replace(reward, params=shown).label}"


def _trial_name(trial) -> str:
    label = trial_label(EnvConfig.from_dict(trial.config["env_config"]).episode).replace("(", "_").replace(")", "")
    label = re.sub(r"[^A-Za-z0-9_.=-]+", "_", label)
    return f"{label}_{trial.trial_id}"


def summarise_trials(grid, last: int) -> pd.DataFrame:
    """One row per trial: episode-weighted means over its last `last` iterations."""
    rows = [_summary_row(result, last) for result in grid]
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _summary_row(result, last: int) -> dict:
    episode = EnvConfig.from_dict(result.config["env_config"]).episode
    row = {
        "trial": Path(result.path).name,
        "tolerance": json.dumps(episode.tolerance),
        "reward": episode.reward,
        "reward_params": json.dumps(episode.reward_params or {}, sort_keys=True),
        "status": "error" if result.error else "ok",
        "trial_dir": str(result.path),
        "error": str(result.error) if result.error else "",
    }
    frame = result.metrics_dataframe
    if frame is None or frame.empty:
        return {**row, "iterations": 0, "episodes": 0, **{k: math.nan for k in _MEANS}}
    return {**row, **_tail_means(frame, last)}


def _tail_means(frame: pd.DataFrame, last: int) -> dict:
    tail = frame.tail(last)

    def total(metric: str) -> float:
        return float(pd.to_numeric(tail.get(f"env_runners/{metric}", pd.Series(dtype=float)), errors="coerce").fillna(0.0).sum())

    means = means_from_sums(total(EPISODES_METRIC), total)
    return {"iterations": int(frame["training_iteration"].max()),
            "episodes": int(pd.to_numeric(frame.get("env_runners/num_episodes_lifetime"), errors="coerce").max() or 0),
            **means}


def format_trials(table: pd.DataFrame) -> str:
    """A sweep's summary table as aligned text, best mean return first."""
    if table.empty:
        return "(no trials)"
    shown = table.sort_values("return_mean", ascending=False, na_position="last")
    lines = [f"{'trial':<48} {'iters':>5} {'episodes':>8} {'return':>9} {'reduction':>9} {'acc pp':>8}  status"]
    for r in shown.itertuples():
        lines.append(f"{r.trial[:48]:<48} {r.iterations:>5} {r.episodes:>8} {r.return_mean:>+9.4f} "
                     f"{'x' + format(r.reduction_mean, '.2f'):>9} {r.acc_change_pp_mean:>+8.2f}  {r.status}")
    return "\n".join(lines)


def read_summary(experiment_dir: str | Path) -> pd.DataFrame:
    """A sweep's summary table from OUT/NAME/summary.parquet."""
    path = Path(experiment_dir) / SUMMARY_FILE
    if not path.is_file():
        raise NeonRayError(f"{experiment_dir}: no sweep summary ({SUMMARY_FILE} is missing)")
    return pd.read_parquet(path)
