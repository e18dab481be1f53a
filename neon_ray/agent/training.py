"""Training the pruning agent on RLlib: the algorithm config, the CPU split, the training loop, resume.

    cfg = AgentTrainConfig(zoo="runs/zoo", out="runs/agent", episode=default_agent_episode(loops=4))
    result = train_agent(cfg)                  # local Ray, or address="auto" to join a cluster
    policy, cfg = load_agent("runs/agent")     # run_dir.py; no cluster needed

Nothing is written before every setting, the zoo selection and the CPU budget were checked
(the run directory's files and rules: run_dir.py). Networks come from `AgentTrainConfig.select`
(`protocols.select_networks`, minus the validation datasets): protocol A without a holdout, B
with one. The environment gets the training network IDs as a typed `EnvConfig`, turned into
RLlib's `env_config` dict here; it spreads their datasets over the EnvRunners by worker index and
each runner loads (and caches) only its own datasets. Per-iteration figures come from
`callbacks.py` and go to progress.csv and, with the learner's losses, to TensorBoard.

A run whose `out` is a URI trains in a local staging copy (published.py: `staged_run`, fetched from the URI to
resume), a `PublishedRun` publishing each checkpoint, the run's files and the pointers as written.

A lost EnvRunner (a memory kill, a lost node) does not end a run: RLlib restarts it
(`fault_tolerance(restart_failed_env_runners=True)`), and iterations that sample nothing while
it comes back (RLlib waits `delay_between_env_runner_restarts_s` first) are waited out, up to
`MAX_RESTART_WAIT_S`, instead of counting as sampling timeouts.

Validation (`validation_datasets`, `validate_every`): every `validate_every` iterations, and at
the final checkpoint, the checkpoint just saved prunes every network of the validation datasets
(greedy, guard on) at the validation tolerances: the run's tolerance if fixed, else 1, 5 and 50
pp clipped into its range (`validation_tolerances`). Its score is `results.summary.score` per
tolerance, geometric mean over them; it goes to progress.csv's `val_score` (NaN when not
validated), and RUN/checkpoints/best follows the highest. The episodes run one after another in
this process: the algorithm may hold every CPU of the Ray cluster, so Ray tasks could wait forever.

Progress (the run, then one line per iteration) goes to this module's logger at INFO; the CLI
prints `neon_ray` INFO messages as plain lines on stderr.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_EPISODES_LIFETIME

from neon_ray.agent.algos import make_algo_config
from neon_ray.agent.apply import checkpoint_pruner
from neon_ray.agent.callbacks import PruningMetricsCallback, count_metric, progress_row
from neon_ray.agent.config import AgentTrainConfig
from neon_ray.agent.diagnostics import TrainingBoard
from neon_ray.agent.export import export_from_algo, has_export
from neon_ray.agent.protocols import Selection
from neon_ray.agent.published import PublishedRun, staged_run
from neon_ray.agent.run_dir import RunDir, check_run, prepare_run
from neon_ray.errors import CheckpointError, ConfigError, NeonRayError
from neon_ray.pruning.batch import zoo_networks
from neon_ray.pruning.env import PruningEnv
from neon_ray.pruning.episodes import RunOptions, evaluate_network
from neon_ray.results.summary import score
from neon_ray.runtime.files import (
    Location, base_name, check_output_dir, display, is_file, is_uri, join, without_credentials,
)
from neon_ray.runtime.ray_session import cluster_cpus, ray_session
from neon_ray.zoo.store import Zoo, open_zoo

log = logging.getLogger(__name__)

# Three iterations in a row without a finished episode means sampling times out.
MAX_EMPTY_ITERATIONS = 3
# CPUs of the algorithm's main process (which also hosts the learner); EnvRunners share the rest.
MAIN_PROCESS_CPUS = 0.5
SAMPLE_TIMEOUT_S = 1800.0
# How long empty iterations are waited out while RLlib restarts lost EnvRunners, and how often they are checked.
MAX_RESTART_WAIT_S = 900.0
RESTART_POLL_S = 5.0
# Tolerances (pp) a run trained on a tolerance range is validated at, clipped into the range: the reported ones.
VALIDATION_TOLERANCES = (1.0, 5.0, 50.0)


def algo_config(cfg: AgentTrainConfig, network_ids: Sequence[str], *, num_cpus_for_main_process: float = MAIN_PROCESS_CPUS,
                num_cpus_per_env_runner: float = 1.0, cpu_budget: float | None = None, seed: int | None = None):
    """The RLlib AlgorithmConfig for a resolved `cfg` training on `network_ids`.

    `seed` overrides cfg.seed for RLlib (module init and the envs' reset seeds); a resumed run
    uses it to draw new episodes instead of replaying the first part's.
    """
    if cfg.episodes is None or cfg.train_batch_size is None or cfg.warmup_episodes is None:
        raise ConfigError("algo_config needs a resolved AgentTrainConfig (call cfg.resolve(selection, manifest))")
    config = make_algo_config(
        cfg.algo, PruningEnv, cfg.env_config(network_ids).to_dict(),
        num_env_runners=cfg.num_env_runners, lr=cfg.lr, gamma=cfg.gamma, entropy_coeff=cfg.entropy_coeff,
        train_batch_size=cfg.train_batch_size, hidden=cfg.hidden, seed=cfg.seed if seed is None else seed,
        sample_timeout_s=SAMPLE_TIMEOUT_S, num_cpus_for_main_process=num_cpus_for_main_process,
        num_cpus_per_learner=num_cpus_for_main_process, num_cpus_per_env_runner=num_cpus_per_env_runner,
        cpu_budget=cpu_budget, warmup_episodes=cfg.warmup_episodes, balance_runners=cfg.balance_runners,
    )
    # RLlib's default too, but a run must not end with a lost runner if that default changes
    return config.callbacks(PruningMetricsCallback).fault_tolerance(restart_failed_env_runners=True)


def runner_cpus(total_cpus: float, num_env_runners: int, main: float = MAIN_PROCESS_CPUS) -> float:
    """Logical CPUs per EnvRunner so that main process + runners fit `total_cpus` (at most 1 each).

    EnvRunners run torch single-threaded, so one CPU each is all they can use; on 2 CPUs two
    runners get 0.75 each and still sample in parallel (Ray CPUs are logical, not pinned).
    """
    if num_env_runners == 0:
        return 1.0
    share = math.floor((total_cpus - main) / num_env_runners * 100) / 100
    if share < 0.05:
        raise ConfigError(
            f"{num_env_runners} EnvRunners do not fit on {total_cpus:g} CPUs (the main process takes {main:g}); "
            "use fewer runners or a bigger cluster"
        )
    return min(1.0, share)


@dataclass(frozen=True)
class TrainResult:
    """What a training run left behind."""

    run_dir: Location
    """The run directory (a path, or the URI it was published to)."""
    checkpoint: Location
    """The final checkpoint (load it with load_agent(run_dir) or algos.load_policy)."""
    iterations: int
    """Training iterations done in total (including before a resume)."""
    episodes: int
    """Episodes sampled in total (including before a resume)."""
    history: pd.DataFrame
    """progress.csv: one row per iteration."""
    seconds: float
    """Wall-clock seconds of this call."""
    best: Location | None = None
    """The best-validated checkpoint (the run's agent), None without validation."""


def validation_tolerances(tolerance: float | tuple[float, float]) -> tuple[float, ...]:
    """The tolerances a run is validated at: its own if fixed, else VALIDATION_TOLERANCES clipped into its range."""
    if not isinstance(tolerance, tuple):
        return (float(tolerance),)
    lo, hi = tolerance
    return tuple(sorted({min(max(t, lo), hi) for t in VALIDATION_TOLERANCES}))


class Validator:
    """Scores a run's checkpoints on every network of its validation datasets and keeps the `best` pointer."""

    def __init__(self, cfg: AgentTrainConfig, zoo: Zoo, run: RunDir):
        self.cfg, self.zoo, self.run = cfg, zoo, run
        self.networks = zoo_networks(zoo, list(cfg.validation_datasets), "all")
        self.tolerances = validation_tolerances(cfg.episode.tolerance)
        self._data: dict[str, object] = {}
        best = run.best()  # a resumed run keeps its best so far
        self.best_score = float(best["val_score"]) if best else -math.inf
        self.best_iteration = int(best["iteration"]) if best else None

    def score(self, checkpoint: Path) -> float:
        """Geometric mean over the validation tolerances of `score` (guarded greedy agent, one row per network)."""
        scores = []
        for tolerance in self.tolerances:
            pruner = checkpoint_pruner(checkpoint, self.cfg, self.run.root, tolerance, seed=self.cfg.seed)
            rows = []
            for _, network in self.networks.iterrows():
                network = network.to_dict()
                model, _ = self.zoo.load(network["network_id"])
                rows += evaluate_network(pruner, network, model, self._dataset(network["dataset"]), "validation",
                                         RunOptions(timing=False)).rows
            scores.append(score(pd.DataFrame(rows), tolerance))
        return float(np.exp(np.mean(np.log(scores))))

    def validate(self, iteration: int, episodes: int, progress: bool) -> float:
        """Score iteration's checkpoint, record it in progress.csv, and move `best` to it if it is the best yet."""
        value = self.score(self.run.checkpoints / f"iter_{iteration:06d}")
        self.run.set_val_score(iteration, value)
        if value > self.best_score:  # NaN never is
            self.best_score, self.best_iteration = value, iteration
            self.run.set_best(iteration, episodes, value, self.cfg.keep_checkpoints)
        if progress:
            log.info(f"validation at iteration {iteration}: score x{value:.3f} on {len(self.networks)} networks of "
                     f"{', '.join(self.cfg.validation_datasets)} at a={'/'.join(f'{t:g}' for t in self.tolerances)} pp; "
                     f"best x{self.best_score:.3f} (iteration {self.best_iteration})")
        return value

    def _dataset(self, name: str):
        if name not in self._data:
            self._data[name] = self.zoo.dataset(name)
        return self._data[name]


def train_agent(cfg: AgentTrainConfig, address: str | None = None, resume: bool = False, progress: bool = True,
                work_dir: str | Path | None = None) -> TrainResult:
    """Train (or with `resume`, continue training) an agent until cfg.episodes episodes are done.

    Starts a local Ray, or joins `address` / the running Ray (see ray_session). Everything
    (settings, run directory, zoo selection, CPU budget) is checked, and the algorithm built,
    before the run directory is written. `resume` restores RLlib's own checkpoint, which
    unpickles files: resume only runs you trust. `progress` logs the run and each iteration.
    cfg.out may be a URI: the run is trained in a staging folder under `work_dir` (`staged_run`).
    """
    start = time.perf_counter()
    if not cfg.out:
        raise ConfigError("AgentTrainConfig.out: the run directory is required for training")
    target = RunDir(cfg.out)
    check_output_dir(target.root, "run directory (--out)")
    zoo = open_zoo(cfg.zoo)
    selection = cfg.select(zoo)
    resolved = cfg.resolve(selection, zoo.manifest())
    if is_uri(target.root):  # config.json keeps no secret a URI may carry
        resolved = replace(resolved, out=without_credentials(target.root))
    pointer = check_run(target, resolved, resume)
    start_iteration = int(pointer["iteration"]) if pointer else 0
    with staged_run(target.root, work_dir, fetch=pointer is not None) as run, ray_session(address):
        cpus = cluster_cpus()
        config = algo_config(resolved, selection.train_ids, cpu_budget=cpus,
                             num_cpus_per_env_runner=runner_cpus(cpus, resolved.num_env_runners),
                             seed=resume_seed(resolved.seed, start_iteration))
        algo = config.build_algo()
        try:
            if progress and pointer is None and is_file(target.config_path):
                log.info("%s holds a run without a completed checkpoint: starting it again from scratch",
                         display(target.root))
            pointer = prepare_run(run, resolved, selection, resume)
            if pointer:
                restore_checkpoint(algo, run, pointer, resolved.algo)
            if progress:
                _announce(resolved, selection, target, algo)
            # a resumed run's new event file hides what the old ones hold from here on (cf. truncate_progress)
            validator = Validator(resolved, zoo, run) if resolved.validate_every else None
            with TrainingBoard(run.tensorboard, resolved.episode, first_iteration=algo.iteration + 1) as board:
                checkpoint = train_loop(algo, resolved, run, board, progress, validator)
            if isinstance(run, PublishedRun):
                run.publish()  # the event files as the board closed them
        finally:
            algo.stop()
        history = pd.read_csv(run.progress_path)
        best = run.best()
    return TrainResult(target.root, join(target.checkpoints, base_name(checkpoint)), int(algo.iteration), _episodes_done(algo),
                       history, time.perf_counter() - start, join(target.checkpoints, best["checkpoint"]) if best else None)


def restore_checkpoint(algo, run: RunDir, pointer: dict, algo_name: str) -> None:
    """Continue from the pointer's checkpoint: RLlib's state, progress.csv cut back to it, the export added if missing."""
    restored = run.checkpoints / pointer["checkpoint"]
    try:
        algo.restore_from_path(str(restored))
    except Exception as exc:  # UnpicklingError, EOFError, ...: a truncated or corrupt checkpoint
        raise CheckpointError(f"{restored}: RLlib could not restore this checkpoint "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                              "it is truncated or corrupt") from exc
    run.truncate_progress(algo.iteration)
    if not has_export(restored):  # a checkpoint from before the safe export: add it
        export_from_algo(algo, restored, algo_name)


def resume_seed(seed: int, iteration: int) -> int:
    """The seed of a run resumed at `iteration`: a fresh stream, so a resumed run does not replay its start."""
    if iteration == 0:
        return seed
    return int(np.random.SeedSequence([seed, iteration]).generate_state(1)[0] & 0x7FFFFFFF)


def _episodes_done(algo) -> int:
    return count_metric(algo.metrics.peek((ENV_RUNNER_RESULTS, NUM_EPISODES_LIFETIME), default=0))


def _announce(cfg: AgentTrainConfig, selection: Selection, run: RunDir, algo) -> None:
    done = _episodes_done(algo)
    where = f"resuming at iteration {algo.iteration}, episode {done}" if done else "starting"
    log.info(f"agent {cfg.algo} protocol {selection.protocol}: {len(selection.train_ids)} training networks from "
             f"{len(selection.train_datasets)} dataset(s), {cfg.episodes} episodes ({cfg.warmup_episodes} warm-up), "
             f"{cfg.train_batch_size} steps per update, {cfg.num_env_runners} EnvRunner(s); {where}; run dir {display(run.root)}")
    log.info(f"{'iter':>5} {'episodes':>9} {'return':>9} {'reduction':>9} {'acc pp':>8} {'sec':>6}")


def train_loop(algo, cfg: AgentTrainConfig, run: RunDir, board: TrainingBoard, progress: bool,
                validator: Validator | None) -> Path:
    """Train `algo` until cfg.episodes, checkpointing into `run` and validating with `validator`;
    the newest checkpoint's path. Public so that a Tune trial (tune/trial.py) trains exactly like `train`."""
    saved_at = algo.iteration if run.latest() else -1
    empty, waited = 0, 0.0
    time_total = _last_time_total(run)
    while _episodes_done(algo) < cfg.episodes:
        t0 = time.perf_counter()
        result = algo.train()
        seconds = time.perf_counter() - t0
        time_total += seconds
        row = progress_row(result, algo.iteration, _episodes_done(algo), seconds, time_total)
        lost = _lost_runners(algo)
        empty = empty + 1 if row["episodes"] == 0 and not lost else 0
        waited = waited + RESTART_POLL_S if row["episodes"] == 0 and lost else 0.0
        if empty >= MAX_EMPTY_ITERATIONS or waited > MAX_RESTART_WAIT_S:
            raise NeonRayError(
                f"no episode finished in {empty} training iterations: a pruning episode takes longer than "
                f"sample_timeout_s={SAMPLE_TIMEOUT_S:g} s, or the EnvRunners failed (see the Ray logs)"
                if empty else f"{lost} EnvRunner(s) lost and not back after {MAX_RESTART_WAIT_S:g} s (see the Ray logs)"
            )
        run.append_progress(row)
        board.write(result, row)
        if waited:
            log.warning(f"{lost} EnvRunner(s) lost: waiting for RLlib to restart them")
            time.sleep(RESTART_POLL_S)
        if progress:
            log.info(_row_line(row))
        validate = validator is not None and algo.iteration % cfg.validate_every == 0
        if algo.iteration % cfg.checkpoint_every == 0 or validate:  # validation scores a saved checkpoint's export
            run.save_checkpoint(algo, algo.iteration, row["episodes_total"], cfg.keep_checkpoints, cfg.algo)
            saved_at = algo.iteration
            if validate:
                validator.validate(algo.iteration, row["episodes_total"], progress)
    if saved_at != algo.iteration:
        run.save_checkpoint(algo, algo.iteration, _episodes_done(algo), cfg.keep_checkpoints, cfg.algo)
        if validator is not None:  # the final policy may be the best
            validator.validate(algo.iteration, _episodes_done(algo), progress)
    return run.latest_checkpoint()


def _lost_runners(algo) -> int:
    """Remote EnvRunners now unhealthy (being restarted by RLlib)."""
    group = algo.env_runner_group
    return group.num_remote_workers() - group.num_healthy_remote_workers()


def _last_time_total(run: RunDir) -> float:
    rows = run.progress_rows()
    return float(rows[-1]["time_total_s"]) if rows else 0.0


def _row_line(row: dict) -> str:
    warm = "  warm-up" if row["warmup"] else ""
    return (f"{row['iteration']:>5} {row['episodes_total']:>9} {row['return_mean']:>+9.4f} "
            f"{'x' + format(row['reduction_mean'], '.2f'):>9} {row['acc_change_pp_mean']:>+8.2f} {row['seconds']:>6.1f}{warm}")
