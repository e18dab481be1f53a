"""A sweep's settings (`SweepConfig`), as OUT/NAME/sweep.json and job specs hold them.

    cfg = SweepConfig(base=AgentTrainConfig(zoo="runs/zoo"), out="runs/sweeps", validation_datasets=("adult",))
    load_sweep("runs/sweeps/sweep")                          # the settings a sweep was started with
    load_sweep_spec("jobs/specs/sweep_b_small.json", out="runs/sweeps", zoo="runs/zoo")

A spec is sweep.json without `out`: `base` lists only the agent settings that differ from
AgentTrainConfig's defaults (nested: `episode`, `episode.finetune`), the rest are SweepConfig's
fields (tolerances as "A" or "LO:HI" strings, rewards as "NAME:key=value", dims as
"NAME=VALUES"), and a "description" is ignored.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from neon_ray.agent.config import AgentTrainConfig
from neon_ray.agent.evaluate import BASELINES, DEFAULT_BASELINES
from neon_ray.errors import ConfigError
from neon_ray.nets.checks import MAX_SEED, check_int, check_number
from neon_ray.results.schema import check_tolerance
from neon_ray.runtime.files import (
    Location, base_name, display, is_file, is_uri, join, parent, read_bytes, resolved, without_credentials,
)
from neon_ray.tune.space import DEFAULT_REWARDS, DEFAULT_TOLERANCES, SEARCHES, Dim, RewardVariant, SearchSpace

SWEEP_FILE = "sweep.json"
SCHEDULERS = ("fifo", "asha")
# A trial limited by iterations runs until then, however many episodes that takes.
UNLIMITED_EPISODES = 2**31 - 1


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: the agent settings every trial shares, what varies, how it is searched, and where it runs."""

    base: AgentTrainConfig
    """Settings every trial shares; tolerance, reward and the searched dimensions are replaced per trial."""
    out: str
    """Tune storage directory (made absolute), or a URI such as s3://bucket/sweeps; the sweep goes to OUT/NAME."""
    name: str = "sweep"
    """Experiment name: the folder under `out`."""
    tolerances: tuple = DEFAULT_TOLERANCES
    """Tolerances to try: numbers (pp) or (lo, hi) ranges drawn per episode."""
    rewards: tuple[RewardVariant, ...] = DEFAULT_REWARDS
    """Reward variants to try."""
    dims: tuple[Dim, ...] = ()
    """Further searched settings (space.DIM_NAMES, reward.PARAM): choices or ranges."""
    search: str = "grid"
    """'grid' (every combination), 'random' (`trials` draws) or 'optuna' (`trials` suggestions; needs optuna)."""
    samples: int = 1
    """Repeats of every configuration, with seeds base.seed, base.seed + 1, ..."""
    trials: int = 8
    """Configurations drawn by random or Optuna search (each run `samples` times); unused by the grid."""
    scheduler: str = "fifo"
    """'fifo' (every trial runs to the end) or 'asha' (stops trials scoring low at each rung)."""
    grace_reports: int = 2
    """ASHA: reports (validations) every trial gets before it may be stopped."""
    validation_datasets: tuple[str, ...] = ()
    """Datasets every trial is scored on and none trains on (empty: base's validation_datasets)."""
    report_every: int = 10
    """Validate, checkpoint and report to Tune every this many iterations (at most `iterations`)."""
    iterations: int | None = None
    """Training iterations per trial; None: until base.episodes episodes (resolved as for train_agent)."""
    cpus_per_trial: float = 1.0
    """Logical CPUs of each trial's process (algorithm, learner, sampling without runners)."""
    cpus_per_runner: float = 1.0
    """Logical CPUs of each of a trial's base.num_env_runners EnvRunners."""
    concurrent: int | None = None
    """Trials running at once; None: as many as the cluster's CPUs hold."""
    max_failures: int = 1
    """Retries of a failed trial (from its last report) before it counts as failed."""
    summary_iterations: int = 5
    """The summary averages each trial's training episodes over its last this many iterations."""
    final_tolerances: tuple[float, ...] = (1.0, 5.0, 50.0)
    """Tolerances (pp) of the best agent's held-out evaluation."""
    final_baselines: tuple[str, ...] = DEFAULT_BASELINES
    """Baselines pruned next to the best agent in the held-out evaluation."""
    final_evaluation: bool = True
    """Evaluate the best agent on base.holdout when the sweep is complete (protocol B)."""
    space: SearchSpace = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.base, AgentTrainConfig):
            raise ConfigError(f"sweep: base must be an AgentTrainConfig, got {type(self.base).__name__}")
        if not isinstance(self.out, (str, os.PathLike)) or not str(self.out):
            raise ConfigError(f"sweep: out must be a directory path, got {self.out!r}")
        space = SearchSpace(self.tolerances, tuple(self.rewards), tuple(self.dims))
        object.__setattr__(self, "space", space)
        for name in ("tolerances", "rewards", "dims"):
            object.__setattr__(self, name, getattr(space, name))
        for tol in space.tolerances:
            replace(self.base.episode, tolerance=tol)  # the episode checks its sampling can draw from it
        for name in ("iterations", "concurrent"):
            if getattr(self, name) is not None:
                _check_count(name, getattr(self, name))
        for name in ("samples", "trials", "grace_reports", "report_every", "summary_iterations"):
            _check_count(name, getattr(self, name))
        check_number("sweep: cpus_per_trial", self.cpus_per_trial, 0, None, lo_open=True)
        check_number("sweep: cpus_per_runner", self.cpus_per_runner, 0, None, lo_open=True)
        check_int("sweep: max_failures", self.max_failures, 0)
        self._check_choices()

    def _check_choices(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ConfigError(f"sweep: name {self.name!r} must use letters, digits, '_', '.', '-' only")
        if self.search not in SEARCHES:
            raise ConfigError(f"sweep: search must be one of {list(SEARCHES)}, got {self.search!r}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"sweep: scheduler must be one of {list(SCHEDULERS)}, got {self.scheduler!r}")
        if self.search == "grid":
            for dim in self.dims:
                dim.domain("grid")  # a range in a grid is refused by name
        if self.base.seed + self.samples - 1 > MAX_SEED:
            raise ConfigError(f"sweep: seeds {self.base.seed}..{self.base.seed + self.samples - 1} pass {MAX_SEED}")
        if self.iterations is not None and self.iterations % self.reports_every:
            raise ConfigError(f"sweep: iterations={self.iterations} must be a multiple of report_every="
                              f"{self.report_every} (a trial stops at a report)")
        if self.base.keep_checkpoints < 2:
            raise ConfigError("sweep: base.keep_checkpoints must be >= 2 (a resumed trial goes back to its last report)")
        for name in ("validation_datasets", "final_baselines", "final_tolerances"):
            if isinstance(getattr(self, name), str):  # a string would become a tuple of its characters
                raise ConfigError(f"sweep: {name} must be a list, got {getattr(self, name)!r}")
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for tol in self.final_tolerances:
            check_tolerance(tol, "sweep: final tolerance")
        unknown = [b for b in self.final_baselines if b not in BASELINES]
        if unknown:
            raise ConfigError(f"sweep: final baselines {unknown} unknown; expected some of {', '.join(BASELINES)}")
        if self.validation_datasets or self.base.validation_datasets:
            self.trial_base()  # validation datasets disjoint from datasets and holdout

    @property
    def reports_every(self) -> int:
        """report_every, at most `iterations`."""
        return min(self.report_every, self.iterations) if self.iterations else self.report_every

    @property
    def experiment_dir(self) -> Location:
        return join(self.out, self.name) if is_uri(self.out) else Path(self.out).resolve() / self.name

    def trial_base(self) -> AgentTrainConfig:
        """`base` as every trial starts from it: validated, checkpointed and reported every reports_every iterations."""
        validation = self.validation_datasets or self.base.validation_datasets
        if not validation:
            raise ConfigError("a sweep ranks trials by their score on validation datasets no trial trains on: "
                              "give validation_datasets (--validate-on)")
        return replace(self.base, validation_datasets=tuple(validation), validate_every=self.reports_every,
                       checkpoint_every=self.reports_every,
                       episodes=UNLIMITED_EPISODES if self.iterations else self.base.episodes)

    def trial_count(self) -> int:
        """How many trials the sweep runs."""
        if self.search != "grid":
            return self.trials * self.samples
        sizes = [len(self.tolerances), len(self.rewards)] + [len(d.values) for d in self.dims]
        return math.prod(sizes) * self.samples

    def to_dict(self) -> dict:
        """JSON-ready, as OUT/NAME/sweep.json holds it."""
        plain = {k: getattr(self, k) for k in ("name", "search", "samples", "trials", "scheduler", "grace_reports",
                                               "report_every", "iterations", "cpus_per_trial", "cpus_per_runner",
                                               "concurrent", "max_failures", "summary_iterations", "final_evaluation")}
        out = without_credentials(self.out) if is_uri(self.out) else str(Path(self.out).resolve())
        return {"base": self.base.to_dict(), "out": out, **plain, **self.space.to_dict(),
                "validation_datasets": list(self.validation_datasets),
                "final_tolerances": list(self.final_tolerances), "final_baselines": list(self.final_baselines)}

    @classmethod
    def from_dict(cls, d: dict, **overrides) -> "SweepConfig":
        d = {**d, **overrides}
        allowed = {f.name for f in fields(cls) if f.init}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ConfigError(f"sweep settings: unknown key(s) {unknown}, accepted: {sorted(allowed)}")
        space = SearchSpace.from_dict({"tolerances": DEFAULT_TOLERANCES, "rewards": [v.text for v in DEFAULT_REWARDS],
                                       "dims": [], **d})
        known = {k: v for k, v in d.items() if k not in ("base", "tolerances", "rewards", "dims")}
        for key in ("validation_datasets", "final_tolerances", "final_baselines"):
            if key in known:
                if not isinstance(known[key], (list, tuple)):  # a string would become a tuple of its characters
                    raise ConfigError(f"sweep settings: {key} must be a list, got {known[key]!r}")
                known[key] = tuple(known[key])
        if not isinstance(d.get("base"), dict):
            raise ConfigError("sweep settings: 'base' (the agent settings) must be an object")
        return cls(base=AgentTrainConfig.from_dict(d["base"]), tolerances=space.tolerances, rewards=space.rewards,
                   dims=space.dims, **known)


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"sweep: {name} must be an integer >= 1, got {value!r}")


def load_sweep(experiment_dir: Location) -> SweepConfig:
    """The SweepConfig saved in OUT/NAME/sweep.json (a path or a URI), with out and name taken from where it is now."""
    folder = resolved(experiment_dir)
    path = join(folder, SWEEP_FILE)
    try:
        if not is_file(path):
            raise ConfigError(f"{display(folder)}: not a sweep directory ({SWEEP_FILE} is missing)")
        saved = json.loads(read_bytes(path).decode())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{display(path)}: not a readable sweep configuration ({exc})") from None
    return SweepConfig.from_dict(saved, out=str(parent(folder)), name=base_name(folder))


def load_sweep_spec(path: str | Path, out: str, name: str | None = None, zoo: str | None = None) -> SweepConfig:
    """A SweepConfig from a JSON spec (module docstring); `name` and `zoo` replace the spec's when given."""
    path = Path(path).expanduser()
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable sweep spec ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("base", {}), dict):
        raise ConfigError(f"{path}: expected a JSON object with a 'base' object of agent settings")
    doc.pop("description", None)
    base = _merged(AgentTrainConfig(zoo=zoo or ".").to_dict(), {**doc.get("base", {}), **({"zoo": zoo} if zoo else {})})
    if not zoo and not doc.get("base", {}).get("zoo"):
        raise ConfigError(f"{path}: no zoo (give --zoo, or base.zoo in the spec)")
    try:
        return SweepConfig.from_dict({**doc, "base": base}, out=out, **({"name": name} if name else {}))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _merged(defaults: dict, changes: dict) -> dict:
    return {**defaults, **{k: _merged(defaults[k], v) if isinstance(v, dict) and isinstance(defaults.get(k), dict)
                           and k != "reward_params" else v for k, v in changes.items()}}
