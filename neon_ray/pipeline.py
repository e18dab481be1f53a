"""The whole NEON pipeline as one library function: zoo -> agent -> evaluation.

`neon-ray demo`, `jobs/pipeline.py` (what `ray job submit` runs) and the end-to-end test all
call `run_pipeline`; only the `PipelineConfig` differs (the defaults for the demo, or a JSON
spec under jobs/specs/). Protocol B of method.md §8: the agent trains on the train networks of
every dataset except `holdout`; then the project's one evaluation (`agent.evaluate.evaluate`)
prunes every network of the held-out datasets, which the agent has never seen, with the agent
(greedy, guarded) and the baselines, at each of `tolerances`, and scores them
(`results.summary.score`): one table per tolerance, as `neon-ray evaluate` prints.

Stages go to this module's logger at INFO (the stages' own progress to theirs); the caller
shows the returned tables (`neon-ray demo` prints them).
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from neon_ray.agent.config import AgentTrainConfig, default_agent_episode, default_finetune
from neon_ray.agent.evaluate import BASELINES, DEFAULT_BASELINES, MAX_SAMPLES, EvaluateConfig, Evaluation, evaluate
from neon_ray.agent.export import ALGOS
from neon_ray.agent.run_dir import RunDir
from neon_ray.agent.training import train_agent
from neon_ray.data.splits import MIN_CAPPED_ROWS, SplitConfig
from neon_ray.errors import ConfigError
from neon_ray.nets.checks import MAX_SEED, check_int
from neon_ray.nets.spec import MAX_LAYERS, MAX_WIDTH, SamplerConfig
from neon_ray.nets.training import MAX_EPOCHS
from neon_ray.pruning.episode_config import EpisodeConfig
from neon_ray.pruning.tolerance import parse_tolerance
from neon_ray.results.report import write_report
from neon_ray.runtime.files import atomic_write_text, check_output_dir
from neon_ray.runtime.ray_session import ray_session
from neon_ray.zoo.build import build_zoo
from neon_ray.zoo.config import MAX_NETWORKS, ZooConfig, zoo_train_config

log = logging.getLogger(__name__)

SKLEARN_DEMO = ("sklearn:breast_cancer", "sklearn:digits", "sklearn:iris", "sklearn:wine")
LIST_FIELDS = ("datasets", "holdout", "widths", "baselines", "train_tolerance", "tolerances", "keep_rates")
"""Fields a spec gives as JSON lists (tuples here)."""


@dataclass(frozen=True)
class PipelineConfig:
    """One protocol-B run, from zoo building to the summary table."""

    out: str
    """Run directory: zoo/, agent/, results/ and report/ are written under it."""
    datasets: tuple[str, ...] = SKLEARN_DEMO
    """Datasets of the zoo (MANIFEST names in data_dir, sklearn:NAME, or file paths)."""
    holdout: tuple[str, ...] = ("sklearn:digits",)
    """Datasets the agent never trains on; every network of them is pruned and reported. The demo holds
    out digits, the largest bundled set: its 270 val rows can certify a 1 pp tolerance (tolerance.drop_bound_pp),
    where wine's 27 cannot certify anything under about 6 pp."""
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
    tolerances: tuple[float, ...] = (1.0, 5.0, 50.0)
    """Tolerances (pp) the held-out networks are pruned for and scored at: one table each. A spec's old
    scalar `tolerance` key is read as `tolerances: [tolerance]`."""
    loops: int = 4
    """Passes over the hidden layers per episode."""
    episodes: int = 150
    """Agent training episodes."""
    runners: int = 1
    """RLlib EnvRunners (Ray actors running pruning rollouts in parallel)."""
    finetune_epochs: int = 2
    """Fine-tuning epochs at most after each pruning step."""
    keep_rates: tuple[float, ...] | None = None
    """The agent's actions (keep-rates); None: the agent's default (agent.config.default_agent_episode)."""
    reward: str | None = None
    """The agent's reward name (pruning.rewards); None: the agent's default."""
    reward_params: dict | None = None
    """Parameters of `reward`; None: its defaults."""
    finetune_targets: str | None = None
    """'labels' or 'original' (distillation, FinetuneConfig.targets); None: the agent's default."""
    baselines: tuple[str, ...] = DEFAULT_BASELINES
    """Baselines run on the same held-out networks (agent.evaluate.BASELINES: '-guard' names are guarded)."""
    uniform_rate: float = 0.7
    """Keep-rate of the uniform baselines."""
    magnitude_rate: float = 0.8
    """Fraction of weights the magnitude baselines remove."""
    samples: int = 0
    """K > 0 also scores the agent's best of its greedy and K sampled episodes per network, chosen on val."""
    max_rows: int | None = None
    """Cap on each dataset's rows before splitting (a stratified sample; the zoo's SplitConfig.max_rows); null: all."""

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
        _int("seed", self.seed, 0, MAX_SEED - MAX_SAMPLES)  # sampled episode k of the evaluation uses seed + k
        if self.algo not in ALGOS:
            raise ConfigError(f"PipelineConfig.algo must be one of {ALGOS}, got {self.algo!r}")
        tol = self.train_tolerance
        if not isinstance(tol, (tuple, list)) or len(tol) != 2:
            raise ConfigError(f"PipelineConfig.train_tolerance must be a pair [lo, hi] of percentage points, got {tol!r}")
        lo = _number("train_tolerance[0]", tol[0], 0, 100)
        object.__setattr__(self, "train_tolerance", (lo, _number("train_tolerance[1]", tol[1], lo, 100)))
        self._check_tolerances()
        _int("loops", self.loops, 1, None)
        _int("episodes", self.episodes, 1, None)
        _int("runners", self.runners, 0, None)
        _int("finetune_epochs", self.finetune_epochs, 1, MAX_EPOCHS)
        try:
            agent_episode(self)
        except ConfigError as exc:
            raise ConfigError(f"PipelineConfig agent episode (keep_rates, reward, reward_params, finetune_targets): {exc}") from None
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown or len(set(self.baselines)) != len(self.baselines):
            raise ConfigError(f"PipelineConfig.baselines: unknown {unknown} or repeated in {list(self.baselines)}, "
                              f"expected distinct names among {list(BASELINES)}")
        _number("uniform_rate", self.uniform_rate, 0, 1, lo_open=True)
        _number("magnitude_rate", self.magnitude_rate, 0, 1, hi_open=True)
        _int("samples", self.samples, 0, MAX_SAMPLES)
        if self.max_rows is not None:
            _int("max_rows", self.max_rows, MIN_CAPPED_ROWS, None)
        missing = set(self.holdout) - set(self.datasets)
        if missing:
            raise ConfigError(f"pipeline holdout {sorted(missing)} is not among the datasets {list(self.datasets)}")
        if set(self.holdout) == set(self.datasets):
            raise ConfigError("pipeline holdout must leave at least one dataset to train the agent on")

    def _check_tolerances(self) -> None:
        tols = self.tolerances
        if not isinstance(tols, (tuple, list)) or not tols:
            raise ConfigError(f"PipelineConfig.tolerances must be a non-empty list of percentage points, got {tols!r}")
        tols = tuple(parse_tolerance(t, f"PipelineConfig.tolerances[{i}]", allow_range=False) for i, t in enumerate(tols))
        if len(set(tols)) != len(tols):
            raise ConfigError(f"PipelineConfig.tolerances repeat a value: {list(tols)}")
        object.__setattr__(self, "tolerances", tols)

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
    unknown = sorted(set(doc) - known - {"description", "tolerance"})
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown}; expected some of {sorted(known)}")
    doc.pop("description", None)
    _old_tolerance(path, doc)
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


def _old_tolerance(path: Path, doc: dict) -> None:
    """Specs written before `tolerances` give one scalar `tolerance`: it becomes the only tolerance."""
    if "tolerance" not in doc:
        return
    if "tolerances" in doc:
        raise ConfigError(f"{path}: give either tolerances (a list) or the older scalar tolerance, not both")
    old = doc.pop("tolerance")
    if isinstance(old, list | tuple):
        raise ConfigError(f"{path}: tolerance (the older scalar key) must be one number; use tolerances for a list, "
                          f"got {old!r}")
    doc["tolerances"] = [old]


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
        split=SplitConfig(max_rows=cfg.max_rows),
    )


def agent_episode(cfg: PipelineConfig) -> EpisodeConfig:
    """The episode the agent trains in: the agent's defaults with the spec's choices."""
    targets = {"targets": cfg.finetune_targets} if cfg.finetune_targets is not None else {}
    finetune = replace(default_finetune(), max_epochs=cfg.finetune_epochs, **targets)
    chosen = {k: v for k in ("keep_rates", "reward") if (v := getattr(cfg, k)) is not None}
    if cfg.reward is not None or cfg.reward_params is not None:
        chosen["reward_params"] = cfg.reward_params
    return default_agent_episode(tolerance=cfg.train_tolerance, loops=cfg.loops, finetune=finetune, **chosen)


def agent_config(cfg: PipelineConfig) -> AgentTrainConfig:
    return AgentTrainConfig(
        zoo=str(cfg.root / "zoo"),
        out=str(cfg.root / "agent"),
        holdout=cfg.holdout,
        algo=cfg.algo,
        episode=agent_episode(cfg),
        episodes=cfg.episodes,
        num_env_runners=cfg.runners,
        seed=cfg.seed,
    )


def evaluate_config(cfg: PipelineConfig) -> EvaluateConfig:
    """The pipeline's last stage: every held-out network, the agent against the baselines, per tolerance."""
    root = cfg.root
    return EvaluateConfig(agent=str(root / "agent"), zoo=str(root / "zoo"), datasets=cfg.holdout,
                          tolerances=cfg.tolerances, results=str(root / "results"), baselines=cfg.baselines,
                          samples=cfg.samples, seed=cfg.seed, uniform_rate=cfg.uniform_rate,
                          magnitude_rate=cfg.magnitude_rate)


@dataclass(frozen=True)
class PipelineResult:
    """What a pipeline run left behind."""

    root: Path
    """The run directory."""
    results: Path
    """The results directory (Hive-partitioned Parquet)."""
    reports: dict[float, Path]
    """Per tolerance, the report written from the results (REPORT/a{tolerance}/report.md)."""
    evaluation: Evaluation
    """The evaluation of the held-out networks: `.tables[tolerance]` (one summary row per method, with its
    `score`), `.frames`, and `.out` (evaluation.json and the Pareto plots)."""


def run_pipeline(cfg: PipelineConfig, address: str | None = None, progress: bool = True) -> PipelineResult:
    """Build the zoo, train the agent, evaluate it against the baselines on the held-out networks, write reports.

    Re-running with the same `out` reuses the finished zoo, continues the agent from its last
    checkpoint (nothing to do once it reached `episodes`), and replaces its own result rows.
    """
    root = cfg.root
    check_output_dir(root, "pipeline run directory")
    agent, evaluation = agent_config(cfg), evaluate_config(cfg)  # both checked before any work
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "pipeline.json", json.dumps(asdict(cfg), indent=1))
    with ray_session(address):
        _stage(progress, f"1/3 zoo: {cfg.networks} networks x {len(cfg.datasets)} datasets -> {root / 'zoo'}")
        build_zoo(zoo_config(cfg), progress=progress)
        _stage(progress, f"2/3 agent: {cfg.algo} on every dataset but {', '.join(cfg.holdout)}, {cfg.episodes} episodes")
        train_agent(agent, resume=RunDir(root / "agent").latest() is not None, progress=progress)
        _stage(progress, f"3/3 evaluate on every network of {', '.join(cfg.holdout)}: the agent and "
                         f"{', '.join(cfg.baselines)} at tolerances {', '.join(f'{t:g}' for t in cfg.tolerances)} pp")
        ev = evaluate(evaluation)
    # one report per tolerance: rows of unguarded baselines carry none and are scored at the report's
    reports = {tol: write_report(evaluation.results, root / "report" / f"a{tol:g}", tolerance=tol)
               for tol in cfg.tolerances}
    return PipelineResult(root, Path(evaluation.results), reports, ev)


def _stage(progress: bool, message: str) -> None:
    if progress:
        log.info(f"== {message}")
