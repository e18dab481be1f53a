"""The whole NEON pipeline as one library function: zoo -> agent -> prune -> baselines -> summary.

`neon-ray demo`, `jobs/pipeline.py` (what `ray job submit` runs) and the end-to-end test all
call `run_pipeline`; only the `PipelineConfig` differs (the embedded demo default, or a JSON
spec under jobs/specs/). Protocol B of method.md §8: the agent trains on the train networks of
every dataset except `holdout`, then prunes every network of the held-out datasets, which it
has never seen; the baselines run on exactly those networks.

Stages go to this module's logger at INFO (the stages' own progress to theirs); the caller
shows the returned summary (`neon-ray demo` prints it).
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import pandas as pd

from neon_ray.agent.apply import apply_agent, trained_episode
from neon_ray.agent.config import AgentTrainConfig, default_agent_episode, default_finetune
from neon_ray.agent.export import ALGOS
from neon_ray.agent.run_dir import RunDir
from neon_ray.agent.training import train_agent
from neon_ray.baselines.pruners import METHODS, run_baseline
from neon_ray.errors import ConfigError
from neon_ray.nets.checks import check_int
from neon_ray.nets.spec import MAX_LAYERS, MAX_WIDTH, SamplerConfig
from neon_ray.nets.training import MAX_EPOCHS
from neon_ray.pruning.tolerance import parse_tolerance
from neon_ray.results.report import write_report
from neon_ray.results.store import read_results
from neon_ray.results.summary import summarise
from neon_ray.runtime.files import atomic_write_text, check_output_dir
from neon_ray.runtime.ray_session import ray_session
from neon_ray.zoo.build import build_zoo
from neon_ray.zoo.config import MAX_NETWORKS, MAX_SEED, ZooConfig, zoo_train_config

log = logging.getLogger(__name__)

SKLEARN_DEMO = ("sklearn:breast_cancer", "sklearn:digits", "sklearn:iris", "sklearn:wine")
LIST_FIELDS = ("datasets", "holdout", "widths", "baselines", "train_tolerance")
"""Fields a spec gives as JSON lists (tuples here)."""


@dataclass(frozen=True)
class PipelineConfig:
    """One protocol-B run, from zoo building to the summary table."""

    out: str
    """Run directory: zoo/, agent/, results/ and report/ are written under it."""
    datasets: tuple[str, ...] = SKLEARN_DEMO
    """Datasets of the zoo (MANIFEST names in data_dir, sklearn:NAME, or file paths)."""
    holdout: tuple[str, ...] = ("sklearn:wine",)
    """Datasets the agent never trains on; every network of them is pruned and reported."""
    data_dir: str | None = None
    """Directory with MANIFEST.csv (not needed for sklearn: datasets)."""
    networks: int = 4
    """Networks per dataset."""
    test_networks: int = 1
    """Networks per dataset with role 'test'."""
    widths: tuple[int, ...] = (16, 32, 64, 128)
    """Hidden widths of the zoo's random architectures."""
    max_layers: int = 3
    """Most hidden layers of the zoo's networks."""
    zoo_epochs: int = 100
    """Base-network training epochs at most (early stopping on val)."""
    seed: int = 0
    """Seed of everything (splits, architectures, agent, baselines)."""
    algo: str = "a2c"
    """Agent learner: 'a2c' or 'ppo'."""
    train_tolerance: tuple[float, float] = (1.0, 50.0)
    """Tolerance range (pp) sampled per training episode, so one agent serves all of them."""
    tolerance: float = 5.0
    """Tolerance (pp) the held-out networks are pruned under."""
    loops: int = 4
    """Passes over the hidden layers per episode."""
    episodes: int = 150
    """Agent training episodes."""
    runners: int = 1
    """RLlib EnvRunners (Ray actors running pruning rollouts in parallel)."""
    finetune_epochs: int = 2
    """Fine-tuning epochs at most after each pruning step."""
    baselines: tuple[str, ...] = ("random", "uniform")
    """Baselines run on the same held-out networks."""
    uniform_rate: float = 0.7
    """Keep-rate of the uniform baseline."""
    magnitude_rate: float = 0.8
    """Fraction of weights the magnitude baseline removes."""

    def __post_init__(self) -> None:
        """Refuse bad values before any work: ConfigError naming the field, the value and what is allowed."""
        if not isinstance(self.out, (str, os.PathLike)) or not str(self.out):
            raise ConfigError(f"PipelineConfig.out must be a directory path, got {self.out!r}")
        for name in ("datasets", "holdout", "baselines"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or not all(isinstance(v, str) and v for v in value):
                raise ConfigError(f"PipelineConfig.{name} must be a list of names, got {value!r}")
        if not self.datasets:
            raise ConfigError("PipelineConfig.datasets is empty; give at least two datasets (one to train on, one held out)")
        if self.data_dir is not None and not isinstance(self.data_dir, (str, os.PathLike)):
            raise ConfigError(f"PipelineConfig.data_dir must be a directory path or null, got {self.data_dir!r}")
        _int("networks", self.networks, 1, MAX_NETWORKS)
        _int("test_networks", self.test_networks, 0, self.networks - 1)  # every dataset keeps a 'train' network
        if not isinstance(self.widths, (tuple, list)) or not self.widths:
            raise ConfigError(f"PipelineConfig.widths must be a non-empty list of integers in [1, {MAX_WIDTH}], got {self.widths!r}")
        for i, width in enumerate(self.widths):
            _int(f"widths[{i}]", width, 1, MAX_WIDTH)
        _int("max_layers", self.max_layers, 1, MAX_LAYERS)
        _int("zoo_epochs", self.zoo_epochs, 1, MAX_EPOCHS)
        _int("seed", self.seed, 0, MAX_SEED)
        if self.algo not in ALGOS:
            raise ConfigError(f"PipelineConfig.algo must be one of {ALGOS}, got {self.algo!r}")
        tol = self.train_tolerance
        if not isinstance(tol, (tuple, list)) or len(tol) != 2:
            raise ConfigError(f"PipelineConfig.train_tolerance must be a pair [lo, hi] of percentage points, got {tol!r}")
        lo = _number("train_tolerance[0]", tol[0], 0, 100)
        object.__setattr__(self, "train_tolerance", (lo, _number("train_tolerance[1]", tol[1], lo, 100)))
        object.__setattr__(self, "tolerance", parse_tolerance(self.tolerance, "PipelineConfig.tolerance", allow_range=False))
        _int("loops", self.loops, 1, None)
        _int("episodes", self.episodes, 1, None)
        _int("runners", self.runners, 0, None)
        _int("finetune_epochs", self.finetune_epochs, 1, MAX_EPOCHS)
        unknown = [b for b in self.baselines if b not in METHODS]
        if unknown:
            raise ConfigError(f"PipelineConfig.baselines: unknown {unknown}, expected some of {list(METHODS)}")
        _number("uniform_rate", self.uniform_rate, 0, 1, lo_open=True)
        _number("magnitude_rate", self.magnitude_rate, 0, 1, hi_open=True)
        missing = set(self.holdout) - set(self.datasets)
        if missing:
            raise ConfigError(f"pipeline holdout {sorted(missing)} is not among the datasets {list(self.datasets)}")
        if set(self.holdout) == set(self.datasets):
            raise ConfigError("pipeline holdout must leave at least one dataset to train the agent on")

    @property
    def root(self) -> Path:
        return Path(self.out).resolve()


def _int(name: str, value, lo: int, hi: int | None) -> int:
    return check_int(f"PipelineConfig.{name}", value, lo, hi)


def _number(name: str, value, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> float:
    # nets.checks.check_number has no open upper bound, which magnitude_rate needs
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        allowed = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ConfigError(f"PipelineConfig.{name} must be a finite number in {allowed}, got {value!r}")
    return float(value)


def load_spec(path: str | Path, **overrides) -> PipelineConfig:
    """A PipelineConfig from a JSON spec file; `overrides` that are not None replace its values."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(), parse_constant=_no_constant)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: pipeline spec not found") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a directory, expected a pipeline spec (JSON file)") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file ({exc})") from exc
    except ValueError as exc:  # JSONDecodeError, and NaN / Infinity refused by _no_constant
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a JSON object of PipelineConfig fields, got {type(doc).__name__}")
    known = {f.name for f in fields(PipelineConfig)}
    unknown = sorted(set(doc) - known - {"description"})
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown}; expected some of {sorted(known)}")
    doc.pop("description", None)
    doc.update({k: v for k, v in overrides.items() if v is not None})
    for key in LIST_FIELDS:
        if key in doc:
            if not isinstance(doc[key], list | tuple):  # a string would become a tuple of its characters
                raise ConfigError(f"{path}: {key} must be a JSON list, got {doc[key]!r}")
            doc[key] = tuple(doc[key])
    if "out" not in doc:
        raise ConfigError(f"{path}: no output directory (give --out)")
    try:
        return PipelineConfig(**doc)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number a pipeline spec may hold (values must be finite)")


def zoo_config(cfg: PipelineConfig) -> ZooConfig:
    return ZooConfig(
        out=str(cfg.root / "zoo"),
        datasets=cfg.datasets,
        data_dir=cfg.data_dir,
        networks=cfg.networks,
        test_networks=cfg.test_networks,
        seed=cfg.seed,
        sampler=SamplerConfig(max_layers=cfg.max_layers, widths=cfg.widths),
        train=zoo_train_config(max_epochs=cfg.zoo_epochs),  # plateau schedule and settle phase, as `zoo build`
    )


def agent_config(cfg: PipelineConfig) -> AgentTrainConfig:
    finetune = replace(default_finetune(), max_epochs=cfg.finetune_epochs)
    return AgentTrainConfig(
        zoo=str(cfg.root / "zoo"),
        out=str(cfg.root / "agent"),
        holdout=cfg.holdout,
        algo=cfg.algo,
        episode=default_agent_episode(tolerance=cfg.train_tolerance, loops=cfg.loops, finetune=finetune),
        episodes=cfg.episodes,
        num_env_runners=cfg.runners,
        seed=cfg.seed,
    )


@dataclass(frozen=True)
class PipelineResult:
    """What a pipeline run left behind."""

    root: Path
    """The run directory."""
    results: Path
    """The results directory (Hive-partitioned Parquet)."""
    report: Path
    """The report written from the results."""
    summary: pd.DataFrame
    """The summary of the held-out networks at the pipeline's tolerance (results.summary.summarise)."""


def run_pipeline(cfg: PipelineConfig, address: str | None = None, progress: bool = True) -> PipelineResult:
    """Build the zoo, train the agent, prune the held-out networks, run the baselines, summarise.

    Re-running with the same `out` reuses the finished zoo, continues the agent from its last
    checkpoint (nothing to do once it reached `episodes`), and replaces its own result rows.
    """
    root, results = cfg.root, cfg.root / "results"
    check_output_dir(root, "pipeline run directory")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "pipeline.json", json.dumps(asdict(cfg), indent=1))
    agent = agent_config(cfg)
    with ray_session(address):
        _stage(progress, f"1/4 zoo: {cfg.networks} networks x {len(cfg.datasets)} datasets -> {root / 'zoo'}")
        build_zoo(zoo_config(cfg), progress=progress)
        _stage(progress, f"2/4 agent: {cfg.algo} on every dataset but {', '.join(cfg.holdout)}, {cfg.episodes} episodes")
        train_agent(agent, resume=RunDir(root / "agent").latest() is not None, progress=progress)
        _stage(progress, f"3/4 prune: the agent on every network of {', '.join(cfg.holdout)} at tolerance {cfg.tolerance:g} pp")
        apply_agent(agent.out, tolerance=cfg.tolerance, results=results, seed=cfg.seed, progress=progress)
        _stage(progress, f"4/4 baselines on the same networks: {', '.join(cfg.baselines)}")
        # the baselines play the agent's episode (fine-tuning, keep-rates, reward), at the pipeline's tolerance
        episode = trained_episode(agent, cfg.tolerance)
        for method in cfg.baselines:
            rate = {"uniform": cfg.uniform_rate, "magnitude": cfg.magnitude_rate}.get(method)
            loops = cfg.loops if method == "random" else None  # the random agent plays the agent's episode
            run_baseline(agent.zoo, method, rate, datasets=list(cfg.holdout), role="all", results=str(results),
                         tolerance=cfg.tolerance, loops=loops, seed=cfg.seed, episode=episode,
                         progress=progress)
    summary = summarise(read_results(results), tolerance=cfg.tolerance)
    report = write_report(results, root / "report", tolerance=cfg.tolerance)
    return PipelineResult(root, results, report, summary)


def _stage(progress: bool, message: str) -> None:
    if progress:
        log.info(f"== {message}")
