"""Training the pruning agent on a zoo: configuration, run directory, progress, checkpoints, resume.

    cfg = AgentTrainConfig(zoo="runs/zoo", out="runs/agent", tolerance=(1.0, 50.0), loops=4)
    result = train_agent(cfg)                  # local Ray, or address="auto" to join a cluster
    policy, cfg = load_agent("runs/agent")     # no cluster needed

Run directory (RUN = cfg.out):

    RUN/config.json           the resolved AgentTrainConfig + the protocol's network selection
    RUN/progress.csv          one row per training iteration (also printed on the terminal)
    RUN/checkpoints/iter_NNNNNN/   algo.save_to_path() checkpoints (the newest `keep_checkpoints`), each
                              with policy.json + policy.pt: the policy in a format that runs no code
    RUN/checkpoints/latest    JSON pointer to the newest complete checkpoint (atomically replaced)

Applying an agent (`load_agent`, `prune`) reads only policy.json + policy.pt (see export.py);
resuming training restores RLlib's own checkpoint, which unpickles files: trusted runs only.
Nothing is written before every setting, the zoo selection and the CPU budget were checked; a
run directory without a completed checkpoint is started again from scratch by a new run.

Networks come from `protocols.select_networks`: protocol A without a holdout, B with one. The
environment gets the training network IDs; it spreads their datasets over the EnvRunners by
worker index and each runner loads (and caches) only its own datasets.

Per-episode figures (return, parameter reduction, accuracy change) are logged on the runners by
`PruningMetricsCallback.on_episode_end` as sums and counts, which RLlib adds up exactly across
runners; `on_train_result` turns them into per-iteration means under `result["neon"]`, so the
same figures reach progress.csv, Ray Tune and TensorBoard.
"""
from __future__ import annotations

import csv
import io
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_EPISODES_LIFETIME

from neon_ray.agent.algos import ALGOS, LoadedPolicy, load_policy, make_algo_config
from neon_ray.agent.protocols import Selection, select_networks
from neon_ray.pruning.env import DEFAULT_KEEP_RATES, EnvConfig, PruningEnv
from neon_ray.errors import CheckpointError, ConfigError, NeonRayError
from neon_ray.pruning.finetune import FinetuneConfig, check_number
from neon_ray.runtime.files import atomic_write_text, check_output_dir, check_path_component
from neon_ray.pruning.rewards import get_reward

CONFIG_FILE = "config.json"
PROGRESS_FILE = "progress.csv"
CHECKPOINTS = "checkpoints"
LATEST = "latest"
# Fields that may change when a run is resumed: how long it runs, how often it saves, and how
# many processes sample. Everything else shapes what is learned and must match.
RESUMABLE_FIELDS = ("out", "episodes", "checkpoint_every", "keep_checkpoints", "num_env_runners")
# Episodes per gradient update when train_batch_size is not given.
BATCH_EPISODES = 4
# Three iterations in a row without a finished episode means sampling times out.
MAX_EMPTY_ITERATIONS = 3
# CPUs of the algorithm's main process (which also hosts the learner); EnvRunners share the rest.
MAIN_PROCESS_CPUS = 0.5
SAMPLE_TIMEOUT_S = 1800.0
# Seeds reach numpy's legacy global seeding through RLlib, which takes 32-bit values.
MAX_SEED = 2**32 - 1
PROGRESS_COLUMNS = ("iteration", "episodes_total", "episodes", "env_steps", "return_mean", "reduction_mean",
                    "reduction_geomean", "acc_change_pp_mean", "warmup", "seconds", "time_total_s")


def default_finetune() -> FinetuneConfig:
    """The agent's per-step fine-tuning budget: small, because every training episode pays it."""
    return FinetuneConfig(max_epochs=3, patience=1, max_train_rows=2048, max_val_rows=2048)


@dataclass(frozen=True)
class AgentTrainConfig:
    """Everything that defines one agent training run (saved as RUN/config.json)."""

    zoo: str
    """Zoo directory (see neon_ray.zoo.build)."""
    out: str | None = None
    """Run directory for config.json, progress.csv and checkpoints; required by train_agent."""
    datasets: tuple[str, ...] | None = None
    """Datasets to use; None: every dataset of the zoo."""
    holdout: tuple[str, ...] = ()
    """Datasets never trained on (protocol B); empty: protocol A."""
    algo: str = "a2c"
    """'a2c' (NEON's agent, one gradient step per batch) or 'ppo'."""
    tolerance: float | tuple[float, float] = (1.0, 50.0)
    """Allowed accuracy drop a in pp, or (lo, hi) drawn per episode so one agent serves all."""
    tolerance_sampling: str = "log-uniform"
    """How a (lo, hi) tolerance is drawn: 'log-uniform' or 'uniform'."""
    loops: int = 4
    """Passes over the hidden layers per episode."""
    keep_rates: tuple[float, ...] = DEFAULT_KEEP_RATES
    """Keep-rate of each action."""
    remove_layer: bool = False
    """Add an action that merges the current hidden layer away."""
    reward: str = "neon"
    """Reward name (see neon_ray.pruning.rewards)."""
    reward_params: dict | None = None
    """Reward parameters; None: for neon/neon2020 a scale mapping the largest |reward| to 1, else {}."""
    finetune: FinetuneConfig = field(default_factory=default_finetune)
    """Fine-tuning after each pruning step (a small budget by default: 3 epochs, 2048 rows)."""
    importance: str = "l2"
    """Neuron importance when pruning: 'l2', 'l1' or 'activation'."""
    episodes: int | None = None
    """Training episodes in total; None: NEON's 10 x training networks + warm-up."""
    warmup_episodes: int | None = None
    """A2C random-action episodes training the critic only; None: NEON's min(2N, 500) (PPO: 0)."""
    num_env_runners: int = 0
    """Remote EnvRunners (processes sampling in parallel); 0 samples in the driver."""
    train_batch_size: int | None = None
    """Env steps per update; None: about 4 episodes (4 x loops x mean depth of the training networks)."""
    lr: float | None = None
    """Adam learning rate; None: the algorithm's default (a2c 1e-3, ppo 3e-4)."""
    gamma: float = 0.99
    """Discount factor."""
    entropy_coeff: float = 0.01
    """Entropy bonus weight."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of the actor and (separately) the critic MLP."""
    checkpoint_every: int = 10
    """Save a checkpoint every this many training iterations (and always at the end)."""
    keep_checkpoints: int = 3
    """How many of the newest checkpoints to keep."""
    seed: int = 0
    """Seed of the agent's initial weights, network order, tolerance draws and fine-tuning."""

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ConfigError(f"algo must be one of {list(ALGOS)}, got {self.algo!r}")
        _check_int("loops", self.loops, 1)
        _check_int("num_env_runners", self.num_env_runners, 0)
        _check_int("checkpoint_every", self.checkpoint_every, 1)
        _check_int("keep_checkpoints", self.keep_checkpoints, 1)
        _check_int("seed", self.seed, 0, MAX_SEED)
        for name in ("episodes", "train_batch_size"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        if self.warmup_episodes is not None:
            _check_int("warmup_episodes", self.warmup_episodes, 0)
            if self.warmup_episodes and self.algo != "a2c":
                raise ConfigError(f"warmup_episodes={self.warmup_episodes}: warm-up is an A2C option; PPO has none (use 0)")
        if not self.hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ConfigError(f"hidden must be a non-empty list of positive integers, got {list(self.hidden)}")
        if self.lr is not None:
            check_number("AgentTrainConfig.lr", self.lr, 0, None, lo_open=True)
        check_number("AgentTrainConfig.gamma", self.gamma, 0, 1, lo_open=True)
        check_number("AgentTrainConfig.entropy_coeff", self.entropy_coeff, 0, None)
        if isinstance(self.holdout, str) or (self.datasets is not None and isinstance(self.datasets, str)):
            raise ConfigError("datasets and holdout must be lists of dataset names, not a single string")
        get_reward(self.reward, **self.resolved_reward_params())  # names a bad reward or parameter
        # EnvConfig checks keep-rates, tolerance, importance; it opens nothing.
        EnvConfig.from_env_config(self.env_config(()))

    # ------------------------------------------------------------------ resolution

    def resolved_reward_params(self) -> dict:
        """The reward parameters, with the default scale filled in for NEON's rewards."""
        if self.reward_params is not None:
            return dict(self.reward_params)
        if self.reward in ("neon", "neon2020"):
            biggest_step = 100.0 * (1.0 - min(self.keep_rates))
            return {"scale": biggest_step**3 if biggest_step > 0 else 1.0}
        return {}

    def resolve(self, selection: Selection, manifest: pd.DataFrame) -> "AgentTrainConfig":
        """A copy with every None default replaced by its value for these training networks."""
        n = len(selection.train_ids)
        warmup = self.warmup_episodes
        if warmup is None:
            warmup = min(2 * n, 500) if self.algo == "a2c" else 0
        episodes = self.episodes if self.episodes is not None else 10 * n + warmup
        batch = self.train_batch_size
        if batch is None:
            batch = max(1, int(round(BATCH_EPISODES * mean_episode_steps(manifest, selection.train_ids, self.loops))))
        return replace(self, warmup_episodes=warmup, episodes=episodes, train_batch_size=batch,
                       reward_params=self.resolved_reward_params())

    def env_config(self, network_ids: Sequence[str]) -> dict:
        """The PruningEnv env_config for these networks."""
        tol = self.tolerance
        return {
            "zoo": str(Path(self.zoo).resolve()),
            "networks": list(network_ids) if network_ids else "train",
            "keep_rates": list(self.keep_rates),
            "remove_layer_action": self.remove_layer,
            "loops": self.loops,
            "tolerance": list(tol) if isinstance(tol, (tuple, list)) else tol,
            "tolerance_sampling": self.tolerance_sampling,
            "reward": self.reward,
            "reward_params": self.resolved_reward_params(),
            "finetune": asdict(self.finetune),
            "importance": self.importance,
            "seed": self.seed,
        }

    # ------------------------------------------------------------------ (de)serialisation

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        # absolute, so a run resumes or loads from any working directory
        d["zoo"] = str(Path(self.zoo).resolve())
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: dict) -> "AgentTrainConfig":
        """Inverse of to_dict; names unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"agent config: unknown key(s) {unknown}, accepted: {sorted(known)}")
        d = dict(d)
        for key in ("datasets", "holdout", "keep_rates", "hidden", "tolerance"):
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        if isinstance(d.get("finetune"), dict):
            d["finetune"] = FinetuneConfig.from_dict(d["finetune"])
        return cls(**d)

    def identity(self) -> dict:
        """The settings a resumed run must share with the run it continues."""
        d = self.to_dict()
        for key in RESUMABLE_FIELDS:
            d.pop(key)
        return d


def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum \
            or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ConfigError(f"{name} must be an integer {bound}, got {value!r}")


def mean_episode_steps(manifest: pd.DataFrame, network_ids: Sequence[str], loops: int) -> float:
    """Mean episode length (loops x hidden layers) over these networks of a zoo manifest."""
    rows = manifest[manifest["network_id"].isin(list(network_ids))]
    if "depth" not in rows.columns or rows.empty:
        raise ConfigError("zoo manifest has no 'depth' column for the training networks; give train_batch_size explicitly")
    return loops * float(rows["depth"].mean())


# ---------------------------------------------------------------------------- RLlib pieces


class PruningMetricsCallback(RLlibCallback):
    """Logs each finished episode's return, parameter reduction and accuracy change.

    Sums and counts (not means) are logged, because RLlib merges per-runner means as a mean of
    means; sums add up exactly. `on_train_result` divides them into per-iteration means.
    """

    def on_episode_end(self, *, episode, metrics_logger=None, prev_episode_chunks=None, **kwargs) -> None:
        info = episode.get_infos(-1)
        missing = [k for k in ("params", "params_orig", "val_acc", "val_acc_orig") if k not in info]
        if missing:
            raise NeonRayError(f"PruningMetricsCallback: the env's last info lacks {missing}; is the env a PruningEnv?")
        ret = float(episode.get_return()) + sum(float(c.get_return()) for c in prev_episode_chunks or ())
        reduction = info["params_orig"] / max(info["params"], 1)
        values = {
            "neon_episodes": 1.0,
            "neon_return_sum": ret,
            "neon_reduction_sum": reduction,
            "neon_log_reduction_sum": math.log(reduction),
            "neon_acc_change_pp_sum": 100.0 * (info["val_acc"] - info["val_acc_orig"]),
        }
        for key, value in values.items():
            metrics_logger.log_value(key, value, reduce="sum")

    def on_train_result(self, *, algorithm=None, metrics_logger=None, result: dict, **kwargs) -> None:
        result["neon"] = iteration_means(result)


def _count(value: Any) -> int:
    """A metric that counts something, as an int: 0 when missing, NaN or not a number.

    RLlib reports NaN for a summed metric nobody logged this iteration (e.g. no episode finished
    because an EnvRunner was restarted after a memory kill).
    """
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0
    return int(round(value)) if math.isfinite(value) and value > 0 else 0


def iteration_means(result: dict) -> dict:
    """This iteration's episode count and mean return / reduction / accuracy change (0 and NaN if none)."""
    runners = result.get(ENV_RUNNER_RESULTS) or {}
    n = _count(runners.get("neon_episodes", 0))

    def mean(key: str) -> float:
        try:
            return float(runners.get(key, 0.0)) / n if n else float("nan")
        except (TypeError, ValueError):
            return float("nan")

    return {
        "episodes": n,
        "return_mean": mean("neon_return_sum"),
        "reduction_mean": mean("neon_reduction_sum"),
        "reduction_geomean": math.exp(mean("neon_log_reduction_sum")) if n else float("nan"),
        "acc_change_pp_mean": mean("neon_acc_change_pp_sum"),
    }


def algo_config(cfg: AgentTrainConfig, network_ids: Sequence[str], *, num_cpus_for_main_process: float = MAIN_PROCESS_CPUS,
                num_cpus_per_env_runner: float = 1.0, cpu_budget: float | None = None, seed: int | None = None):
    """The RLlib AlgorithmConfig for a resolved `cfg` training on `network_ids`.

    `seed` overrides cfg.seed for RLlib (module init and the envs' reset seeds); a resumed run
    uses it to draw new episodes instead of replaying the first part's.
    """
    if cfg.episodes is None or cfg.train_batch_size is None or cfg.warmup_episodes is None:
        raise ConfigError("algo_config needs a resolved AgentTrainConfig (call cfg.resolve(selection, manifest))")
    config = make_algo_config(
        cfg.algo, PruningEnv, cfg.env_config(network_ids),
        num_env_runners=cfg.num_env_runners, lr=cfg.lr, gamma=cfg.gamma, entropy_coeff=cfg.entropy_coeff,
        train_batch_size=cfg.train_batch_size, hidden=cfg.hidden, seed=cfg.seed if seed is None else seed,
        sample_timeout_s=SAMPLE_TIMEOUT_S, num_cpus_for_main_process=num_cpus_for_main_process,
        num_cpus_per_learner=num_cpus_for_main_process, num_cpus_per_env_runner=num_cpus_per_env_runner,
        cpu_budget=cpu_budget, warmup_episodes=cfg.warmup_episodes,
    )
    return config.callbacks(PruningMetricsCallback)


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


# ---------------------------------------------------------------------------- run directory


@dataclass(frozen=True)
class RunDir:
    """Paths and atomic writes of a training run directory."""

    root: Path
    """The run directory (a str is converted; made absolute, so it works from any working directory)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().absolute())

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def progress_path(self) -> Path:
        return self.root / PROGRESS_FILE

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    def latest(self) -> dict | None:
        """The newest checkpoint's pointer {checkpoint, iteration, episodes}, or None."""
        path = self.checkpoints / LATEST
        if not path.is_file():
            return None
        try:
            pointer = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: not a valid checkpoint pointer ({exc})") from None
        name = pointer.get("checkpoint") if isinstance(pointer, dict) else None
        if not isinstance(name, str) or not isinstance(pointer.get("iteration"), int):
            raise CheckpointError(f"{path}: not a valid checkpoint pointer (expected "
                                  '{"checkpoint": "iter_NNNNNN", "iteration": N, "episodes": N})')
        try:
            check_path_component(name, f"{path}: checkpoint")
        except ConfigError as exc:
            raise CheckpointError(str(exc)) from None
        if not (self.checkpoints / name).is_dir():
            raise CheckpointError(f"{path} points to {name!r}, which is not in {self.checkpoints}; "
                                  "restore that checkpoint, or start a new run in another directory")
        return pointer

    def latest_checkpoint(self) -> Path:
        pointer = self.latest()
        if pointer is None:
            raise CheckpointError(f"{self.root}: no completed checkpoint yet ({self.checkpoints / LATEST} is missing)")
        return self.checkpoints / pointer["checkpoint"]

    def read_config(self) -> AgentTrainConfig:
        if not self.config_path.is_file():
            raise NeonRayError(f"{self.root}: not an agent run directory ({CONFIG_FILE} is missing)")
        try:
            doc = json.loads(self.config_path.read_text())
            saved = doc["config"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{self.config_path}: not a readable agent run configuration "
                                  f"({type(exc).__name__}: {exc})") from None
        if not isinstance(saved, dict):
            raise CheckpointError(f"{self.config_path}: 'config' must be a JSON object")
        try:
            return AgentTrainConfig.from_dict(saved)
        except TypeError as exc:
            raise ConfigError(f"{self.config_path}: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{self.config_path}: {exc}") from None

    def write_config(self, cfg: AgentTrainConfig, selection: Selection) -> None:
        doc = {"config": cfg.to_dict(), "selection": asdict(selection)}
        atomic_write_text(self.config_path, json.dumps(doc, indent=1, sort_keys=True))

    def save_checkpoint(self, algo, iteration: int, episodes: int, keep: int, algo_name: str) -> Path:
        """algo.save_to_path and the policy export into a temporary folder, renamed into place, then the pointer moves."""
        from neon_ray.agent.export import export_from_algo

        name = f"iter_{iteration:06d}"
        final, tmp = self.checkpoints / name, self.checkpoints / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        algo.save_to_path(str(tmp))
        export_from_algo(algo, tmp, algo_name)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        atomic_write_text(self.checkpoints / LATEST,
                          json.dumps({"checkpoint": name, "iteration": iteration, "episodes": episodes}))
        self._prune(keep, name)
        return final

    def _prune(self, keep: int, newest: str) -> None:
        older = sorted(p for p in self.checkpoints.glob("iter_*") if p.is_dir() and p.name != newest)
        for path in older[: max(0, len(older) - (keep - 1))]:
            shutil.rmtree(path, ignore_errors=True)

    def clear_checkpoints(self) -> None:
        """Remove the checkpoint folders and pointer a run left (before starting it again from scratch)."""
        if not self.checkpoints.is_dir():
            return
        for path in list(self.checkpoints.glob("iter_*")) + list(self.checkpoints.glob(".iter_*.tmp")):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
        (self.checkpoints / LATEST).unlink(missing_ok=True)

    def progress_rows(self) -> list[dict]:
        if not self.progress_path.is_file():
            return []
        with self.progress_path.open(newline="") as fh:
            return list(csv.DictReader(fh))

    def truncate_progress(self, iteration: int) -> None:
        """Drop rows after `iteration` (iterations a crash lost since the last checkpoint)."""
        rows = [r for r in self.progress_rows() if int(r["iteration"]) <= iteration]
        self.write_progress(rows)

    def write_progress(self, rows: list[dict]) -> None:
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=PROGRESS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.progress_path, buffer.getvalue())

    def append_progress(self, row: dict) -> None:
        if not self.progress_path.is_file():
            self.write_progress([])
        with self.progress_path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=PROGRESS_COLUMNS).writerow(row)


def check_run(run: RunDir, cfg: AgentTrainConfig, resume: bool) -> dict | None:
    """What `cfg` may do with the run directory, checked without writing anything.

    Returns the checkpoint pointer to resume from (resume) or None (a fresh start). A directory
    whose run never completed a checkpoint may be started again from scratch; with `resume` it
    has nothing to resume from.
    """
    check_output_dir(run.root, "run directory (--out)")
    if resume:
        if not run.config_path.is_file():
            raise ConfigError(f"--resume: {run.root} holds no training run ({CONFIG_FILE} is missing); run without --resume")
        pointer = run.latest()
        if pointer is None:
            raise ConfigError(f"--resume: nothing to resume from: {run.root} has no completed checkpoint; "
                              "run without --resume to start it again from scratch")
        saved = run.read_config()
        diff = _differences(saved.identity(), cfg.identity())
        if diff:
            raise ConfigError(
                f"--resume: {run.config_path} was written with other settings ({'; '.join(diff)}); "
                "resume with the same settings, or start a new run in another directory"
            )
        return pointer
    if run.latest() is not None:
        raise ConfigError(f"{run.root} already holds a training run; pass --resume to continue it, or use another --out")
    return None


def prepare_run(run: RunDir, cfg: AgentTrainConfig, selection: Selection, resume: bool) -> dict | None:
    """check_run, then write RUN/config.json (and for a fresh start an empty progress.csv).

    A fresh start over a run that never completed a checkpoint replaces what it left.
    """
    pointer = check_run(run, cfg, resume)
    if pointer is None:
        run.clear_checkpoints()
        run.write_progress([])
    run.write_config(cfg, selection)  # on resume: records the new episode target
    return pointer


def _differences(saved: dict, new: dict, prefix: str = "") -> list[str]:
    diff = []
    for key in sorted(set(saved) | set(new)):
        a, b = saved.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key != "reward_params":
            diff += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            diff.append(f"{prefix}{key}: saved {a!r}, now {b!r}")
    return diff


# ---------------------------------------------------------------------------- training loop


@dataclass(frozen=True)
class TrainResult:
    """What a training run left behind."""

    run_dir: Path
    """The run directory."""
    checkpoint: Path
    """The final checkpoint (load it with load_agent(run_dir) or algos.load_policy)."""
    iterations: int
    """Training iterations done in total (including before a resume)."""
    episodes: int
    """Episodes sampled in total (including before a resume)."""
    history: pd.DataFrame
    """progress.csv: one row per iteration."""
    seconds: float
    """Wall-clock seconds of this call."""


def train_agent(cfg: AgentTrainConfig, address: str | None = None, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train (or with `resume`, continue training) an agent until cfg.episodes episodes are done.

    Starts a local Ray, or joins `address` / the running Ray (see raysession.ray_session).
    Everything (settings, run directory, zoo selection, CPU budget) is checked, and the algorithm
    built, before the run directory is written. `resume` restores RLlib's own checkpoint, which
    unpickles files: resume only runs you trust.
    """
    from neon_ray.agent.export import export_from_algo, has_export
    from neon_ray.runtime.ray_session import cluster_cpus, ray_session
    from neon_ray.zoo.build import open_zoo

    start = time.perf_counter()
    if not cfg.out:
        raise ConfigError("AgentTrainConfig.out: the run directory is required for training")
    run = RunDir(cfg.out)
    check_output_dir(run.root, "run directory (--out)")
    zoo = open_zoo(cfg.zoo)
    selection = select_networks(zoo, cfg.datasets, cfg.holdout)
    resolved = cfg.resolve(selection, zoo.manifest())
    pointer = check_run(run, resolved, resume)
    start_iteration = int(pointer["iteration"]) if pointer else 0
    with ray_session(address):
        cpus = cluster_cpus()
        config = algo_config(resolved, selection.train_ids, cpu_budget=cpus,
                             num_cpus_per_env_runner=runner_cpus(cpus, resolved.num_env_runners),
                             seed=_resume_seed(resolved.seed, start_iteration))
        algo = config.build_algo()
        try:
            if progress and pointer is None and run.config_path.is_file():
                print(f"{run.root} holds a run without a completed checkpoint: starting it again from scratch", flush=True)
            pointer = prepare_run(run, resolved, selection, resume)
            if pointer:
                restored = run.checkpoints / pointer["checkpoint"]
                try:
                    algo.restore_from_path(str(restored))
                except Exception as exc:  # UnpicklingError, EOFError, ...: a truncated or corrupt checkpoint
                    raise CheckpointError(f"{restored}: RLlib could not restore this checkpoint "
                                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                                          "it is truncated or corrupt") from exc
                run.truncate_progress(algo.iteration)
                if not has_export(restored):  # a checkpoint from before the safe export: add it
                    export_from_algo(algo, restored, resolved.algo)
            _announce(resolved, selection, run, algo, progress)
            checkpoint = _train_loop(algo, resolved, run, progress)
        finally:
            algo.stop()
    history = pd.read_csv(run.progress_path)
    return TrainResult(run.root, checkpoint, int(algo.iteration), _episodes_done(algo), history, time.perf_counter() - start)


def _resume_seed(seed: int, iteration: int) -> int:
    if iteration == 0:
        return seed
    return int(np.random.SeedSequence([seed, iteration]).generate_state(1)[0] & 0x7FFFFFFF)


def _episodes_done(algo) -> int:
    return _count(algo.metrics.peek((ENV_RUNNER_RESULTS, NUM_EPISODES_LIFETIME), default=0))


def _announce(cfg: AgentTrainConfig, selection: Selection, run: RunDir, algo, progress: bool) -> None:
    if not progress:
        return
    done = _episodes_done(algo)
    where = f"resuming at iteration {algo.iteration}, episode {done}" if done else "starting"
    print(f"agent {cfg.algo} protocol {selection.protocol}: {len(selection.train_ids)} training networks from "
          f"{len(selection.train_datasets)} dataset(s), {cfg.episodes} episodes ({cfg.warmup_episodes} warm-up), "
          f"{cfg.train_batch_size} steps per update, {cfg.num_env_runners} EnvRunner(s); {where}; run dir {run.root}",
          flush=True)
    print(f"{'iter':>5} {'episodes':>9} {'return':>9} {'reduction':>9} {'acc pp':>8} {'sec':>6}", flush=True)


def _train_loop(algo, cfg: AgentTrainConfig, run: RunDir, progress: bool) -> Path:
    saved_at = algo.iteration if run.latest() else -1
    empty = 0
    time_total = _last_time_total(run)
    while _episodes_done(algo) < cfg.episodes:
        t0 = time.perf_counter()
        result = algo.train()
        seconds = time.perf_counter() - t0
        time_total += seconds
        row = progress_row(result, algo.iteration, _episodes_done(algo), seconds, time_total)
        empty = empty + 1 if row["episodes"] == 0 else 0
        if empty >= MAX_EMPTY_ITERATIONS:
            raise NeonRayError(
                f"no episode finished in {empty} training iterations: a pruning episode takes longer than "
                f"sample_timeout_s={SAMPLE_TIMEOUT_S:g} s, or the EnvRunners failed (see the Ray logs)"
            )
        run.append_progress(row)
        if progress:
            _print_row(row)
        if algo.iteration % cfg.checkpoint_every == 0:
            run.save_checkpoint(algo, algo.iteration, row["episodes_total"], cfg.keep_checkpoints, cfg.algo)
            saved_at = algo.iteration
    if saved_at != algo.iteration:
        run.save_checkpoint(algo, algo.iteration, _episodes_done(algo), cfg.keep_checkpoints, cfg.algo)
    return run.latest_checkpoint()


def _last_time_total(run: RunDir) -> float:
    rows = run.progress_rows()
    return float(rows[-1]["time_total_s"]) if rows else 0.0


def progress_row(result: dict, iteration: int, episodes_total: int, seconds: float, time_total: float) -> dict:
    """One progress.csv row from an algo.train() result."""
    means = result.get("neon") or iteration_means(result)
    runners = result.get(ENV_RUNNER_RESULTS) or {}
    return {
        "iteration": iteration,
        "episodes_total": episodes_total,
        "episodes": means["episodes"],
        "env_steps": _count(runners.get("num_env_steps_sampled", 0)),
        "return_mean": means["return_mean"],
        "reduction_mean": means["reduction_mean"],
        "reduction_geomean": means["reduction_geomean"],
        "acc_change_pp_mean": means["acc_change_pp_mean"],
        "warmup": int(bool(result.get("warmup", 0.0))),
        "seconds": round(seconds, 3),
        "time_total_s": round(time_total, 3),
    }


def _print_row(row: dict) -> None:
    warm = "  warm-up" if row["warmup"] else ""
    print(f"{row['iteration']:>5} {row['episodes_total']:>9} {row['return_mean']:>+9.4f} "
          f"{'x' + format(row['reduction_mean'], '.2f'):>9} {row['acc_change_pp_mean']:>+8.2f} {row['seconds']:>6.1f}{warm}",
          flush=True)


# ---------------------------------------------------------------------------- loading


def agent_checkpoint(run_dir: str | Path) -> tuple[Path, AgentTrainConfig]:
    """(The run's latest checkpoint directory, the run's configuration), read once, paths absolute."""
    run = RunDir(run_dir)
    if not run.root.is_dir():
        raise CheckpointError(f"{run.root}: no such agent run directory")
    cfg = run.read_config()
    return run.latest_checkpoint(), cfg


def load_agent(run_dir: str | Path, *, seed: int | None = None) -> tuple[LoadedPolicy, AgentTrainConfig]:
    """The latest checkpoint's policy and the run's configuration; needs no Ray cluster.

    Reads only RUN/config.json, the `latest` pointer and the checkpoint's policy.json + policy.pt
    (see export.py): nothing that can run code. A checkpoint without that export is refused.
    """
    checkpoint, cfg = agent_checkpoint(run_dir)
    return load_policy(checkpoint, seed=seed), cfg
