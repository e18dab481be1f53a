"""One evaluation: a trained agent against the baselines on the same networks, at several tolerances.

    ev = evaluate(EvaluateConfig(agent="runs/agent", zoo="runs/zoo", datasets=("phoneme",),
                                 tolerances=(1, 5, 50), results="runs/results"))
    ev.tables[5.0]      # one summary row per method at a = 5 pp, with its `score`

Every network of `datasets` (all roles) is pruned by:

- the agent, greedy (`apply_agent`), guard on unless `guard=False`;
- with `samples` K > 0 also `<method>-best{K}`: per network the greedy episode and K sampled
  ones (seeds 1..K), returning the smallest network whose val accuracy is within the tolerance,
  else the greedy one (`BestOfSampled`): the choice uses val only, test stays a report;
- each baseline (`run_baseline`), with the agent's episode (keep-rates, loops, fine-tuning), so
  only the choice of actions differs. A name ending in `-guard` (e.g. `random-guard`, the fair
  random baseline) is that baseline with the guard; `uniform` and `magnitude` use `uniform_rate` /
  `magnitude_rate` (None: the baseline's default rate).

Rows go to `results` through `pruning.batch.run_networks` (one run per method and tolerance,
each with its manifest). Baselines whose pruning does not depend on the tolerance (unguarded
random, uniform, magnitude) run ONCE with no tolerance recorded and are scored at every
tolerance: running them per tolerance would repeat identical work. The summaries (and their
`score`, results/summary.py) are computed from this evaluation's rows only, never from other
runs in `results`. `out` (default RES/_evaluation: Parquet readers skip `_` folders) receives
`evaluation.json` and one Pareto plot per tolerance, `pareto_a{a}.png`.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from neon_ray.agent.apply import PolicyChooser, agent_pruner, apply_agent, default_run_id
from neon_ray.baselines.pruners import METHODS, make_pruner, run_baseline
from neon_ray.errors import ConfigError
from neon_ray.nets.checks import MAX_SEED, check_int
from neon_ray.nets.metrics import count_params
from neon_ray.pruning.batch import run_networks, zoo_networks
from neon_ray.pruning.episodes import EpisodePruner, Pruned, RunOptions
from neon_ray.results.report import plot_pareto
from neon_ray.results.schema import check_tolerance
from neon_ray.results.summary import score, summarise
from neon_ray.runtime.files import atomic_write_bytes, atomic_write_text, check_output_dir, display, resolved
from neon_ray.runtime.ray_session import ray_session
from neon_ray.zoo.store import open_zoo

log = logging.getLogger(__name__)

GUARD_SUFFIX = "-guard"
BASELINES = METHODS + tuple(f"{m}{GUARD_SUFFIX}" for m in METHODS if m != "uniform-search")
"""Baseline names `evaluate` knows: every baseline, and every one but uniform-search with `-guard`."""
DEFAULT_BASELINES = ("random", "random-guard", "uniform-search", "magnitude")
EVALUATION_DIR = "_evaluation"
"""Default output folder under the results directory."""
MAX_SAMPLES = 1000


@dataclass(frozen=True)
class EvaluateConfig:
    """What `evaluate` prunes, with what, and where it writes."""

    agent: str
    """Training run directory of the agent."""
    datasets: tuple[str, ...]
    """Datasets whose networks (all roles) are pruned."""
    tolerances: tuple[float, ...]
    """Tolerances (pp) to prune for and score at."""
    results: str
    """Results directory (Parquet rows)."""
    zoo: str | None = None
    """Zoo directory (None: the one the agent trained on)."""
    baselines: tuple[str, ...] = DEFAULT_BASELINES
    """Baseline names (BASELINES)."""
    samples: int = 0
    """K > 0 adds the best of the greedy and K sampled episodes per network, chosen on val."""
    guard: bool = True
    """The agent's guard (baselines: the `-guard` names)."""
    seed: int = 0
    """Seed of the baselines and of the greedy agent; sampled episode k uses seed + k."""
    out: str | None = None
    """Folder for evaluation.json and the plots (None: RES/_evaluation)."""
    options: RunOptions = field(default_factory=RunOptions)
    """Measurement options of every run (timing, ...)."""
    address: str | None = None
    """Ray cluster to join (None: the running Ray, or a local one)."""
    uniform_rate: float | None = None
    """Keep-rate of the `uniform` baselines (None: the baseline's default)."""
    magnitude_rate: float | None = None
    """Fraction of weights the `magnitude` baselines remove (None: the baseline's default)."""

    def __post_init__(self) -> None:
        for name in ("datasets", "tolerances", "baselines"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, (tuple, list)):
                raise ConfigError(f"evaluate {name} must be a list, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if not self.datasets or not all(isinstance(d, str) and d for d in self.datasets):
            raise ConfigError(f"evaluate needs at least one dataset name, got {list(self.datasets)}")
        if not self.tolerances:
            raise ConfigError("evaluate needs at least one tolerance (pp), e.g. 1,5,50")
        tolerances = tuple(check_tolerance(t, "evaluate tolerance") for t in self.tolerances)
        if len(set(tolerances)) != len(tolerances):
            raise ConfigError(f"evaluate tolerances repeat a value: {list(self.tolerances)}")
        object.__setattr__(self, "tolerances", tolerances)
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown or len(set(self.baselines)) != len(self.baselines):
            raise ConfigError(f"evaluate baselines {list(self.baselines)}: expected distinct names among "
                              f"{', '.join(BASELINES)}")
        check_int("evaluate samples", self.samples, 0, MAX_SAMPLES)
        check_int("evaluate seed", self.seed, 0, MAX_SEED - MAX_SAMPLES)
        if not isinstance(self.guard, bool):
            raise ConfigError(f"evaluate guard must be True or False, got {self.guard!r}")
        if not isinstance(self.options, RunOptions):
            raise ConfigError(f"evaluate options must be a RunOptions, got {type(self.options).__name__}")
        if self.options.compress:
            # '+dc' rows would be a second row per network under the same method name in the tables
            raise ConfigError("evaluate compares pruning methods: run Deep Compression separately (options.compress=False)")
        for method, rate in (("uniform", self.uniform_rate), ("magnitude", self.magnitude_rate)):
            if rate is not None:
                make_pruner(method, rate)  # refuses a bad rate now, not after the agent's runs

    @property
    def out_dir(self) -> Path:
        return Path(self.out if self.out is not None else Path(self.results) / EVALUATION_DIR).expanduser().absolute()


@dataclass(frozen=True)
class BestOfSampled:
    """The agent's greedy episode and K sampled ones per network; returns the smallest network within
    the tolerance on val, else the greedy one. `seconds` counts every episode: the cost is K + 1 episodes."""

    greedy: EpisodePruner
    samples: tuple[EpisodePruner, ...]

    @property
    def method(self) -> str:
        return f"{self.greedy.method}-best{len(self.samples)}"

    @property
    def label(self) -> str:
        return f"{self.greedy.label} samples={len(self.samples)}"

    @property
    def tolerance(self) -> float:
        return self.greedy.tolerance

    @property
    def seed(self) -> int:
        return self.greedy.seed

    @property
    def loops(self) -> int:
        return self.greedy.loops

    def row_config(self) -> dict:
        return {**self.greedy.row_config(), "samples": len(self.samples), "sample_seeds": [p.seed for p in self.samples],
                "choice": "smallest within tolerance on val of greedy + samples, else greedy"}

    def prune(self, model, dataset, network: dict) -> Pruned:
        first = self.greedy.prune(model, dataset, network)
        best, best_size, chosen, seconds = first, None, 0, first.seconds
        if self._within(first):
            best_size = count_params(first.model)
        for k, pruner in enumerate(self.samples, start=1):
            cand = pruner.prune(model, dataset, network)
            seconds += cand.seconds
            size = count_params(cand.model)
            if self._within(cand) and (best_size is None or size < best_size):
                best, best_size, chosen = cand, size, k
        return replace(best, seconds=seconds, info={**best.info, "chosen_episode": chosen})

    def _within(self, pruned: Pruned) -> bool:
        return pruned.info["within_tolerance"]


@dataclass
class Evaluation:
    """What `evaluate` returns: rows and summary per tolerance (the `method` column holds the names)."""

    frames: dict[float, pd.DataFrame]
    tables: dict[float, pd.DataFrame]
    out: Path


def _baseline(cfg: EvaluateConfig, zoo, name: str, tolerance: float | None, episode) -> pd.DataFrame:
    method = name.removesuffix(GUARD_SUFFIX)
    loops = episode.loops if method == "random" else None  # random plays the agent's episode, same length
    rate = {"uniform": cfg.uniform_rate, "magnitude": cfg.magnitude_rate}.get(method)
    return run_baseline(zoo, method, rate, list(cfg.datasets), "all", cfg.results, tolerance=tolerance, loops=loops,
                        seed=cfg.seed, episode=episode, guard=name.endswith(GUARD_SUFFIX), options=cfg.options,
                        progress=False)


def _needs_tolerance(name: str) -> bool:
    return name.endswith(GUARD_SUFFIX) or name == "uniform-search"


def evaluate(cfg: EvaluateConfig) -> Evaluation:
    """Prune, write rows, summarise per tolerance, write evaluation.json and the plots (module docstring)."""
    with ray_session(cfg.address):  # one Ray for every run, not one start per method and tolerance
        return _evaluate(cfg)


def _evaluate(cfg: EvaluateConfig) -> Evaluation:
    check_output_dir(cfg.results, "results directory")
    out = check_output_dir(cfg.out_dir, "evaluation output directory (--out)")
    agent = resolved(cfg.agent)
    greedy, train_cfg = agent_pruner(agent, cfg.tolerances[0], True, cfg.seed, cfg.guard)  # fails early on a bad run
    zoo = open_zoo(Path(cfg.zoo or train_cfg.zoo).expanduser().resolve())
    networks = zoo_networks(zoo, list(cfg.datasets), "all")
    seen = [d for d in cfg.datasets if d not in train_cfg.holdout]
    if seen:
        log.warning("datasets %s were not held out of the agent's training: not an unseen-dataset evaluation", seen)
    shared: dict[str, pd.DataFrame] = {}
    for name in (b for b in cfg.baselines if not _needs_tolerance(b)):
        log.info("baseline %s (tolerance-independent: run once)", name)
        shared[name] = _baseline(cfg, zoo, name, None, greedy.episode)
    frames, tables = {}, {}
    for tol in cfg.tolerances:
        greedy, _ = agent_pruner(agent, tol, True, cfg.seed, cfg.guard)
        log.info("agent at a=%g", tol)
        parts = {greedy.method: apply_agent(agent, zoo=zoo, datasets=list(cfg.datasets), role="all", tolerance=tol,
                                            guard=cfg.guard, seed=cfg.seed, results=cfg.results, options=cfg.options,
                                            progress=False)}
        if cfg.samples:
            best = BestOfSampled(greedy, tuple(
                replace(greedy, chooser=PolicyChooser(greedy.chooser.checkpoint, False, cfg.seed + k), seed=cfg.seed + k)
                for k in range(1, cfg.samples + 1)))
            parts[best.method] = run_networks(zoo, best, networks, run_id=default_run_id(best, agent),
                                              results=cfg.results, options=cfg.options, progress=False)
        for name in cfg.baselines:
            parts[name] = shared[name] if name in shared else _baseline(cfg, zoo, name, tol, greedy.episode)
        frames[tol] = pd.concat([f.assign(method=name) for name, f in parts.items()], ignore_index=True)
        tables[tol] = summarise(frames[tol], tolerance=tol)
    _write(cfg, out, frames, tables, len(networks))
    return Evaluation(frames, tables, out)


def _write(cfg: EvaluateConfig, out: Path, frames: dict, tables: dict, n_networks: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    doc = {"agent": display(resolved(cfg.agent)), "datasets": list(cfg.datasets), "networks": n_networks,
           "results": str(Path(cfg.results).expanduser().absolute()), "samples": cfg.samples, "guard": cfg.guard,
           "score": " ".join(score.__doc__.split("\n\n")[0].split()), "tolerances": {}}
    for tol, table in tables.items():
        records = json.loads(table.to_json(orient="records"))  # NaN -> null
        doc["tolerances"][f"{tol:g}"] = {r.pop("method"): r for r in records}
        title = f"{', '.join(cfg.datasets)}: {n_networks} networks, a = {tol:g} pp"
        atomic_write_bytes(out / f"pareto_a{tol:g}.png", plot_pareto(frames[tol], tol, title))
    atomic_write_text(out / "evaluation.json", json.dumps(doc, indent=1) + "\n")
