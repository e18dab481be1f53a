"""What a sweep varies: reward variants, tolerances, and numeric or categorical dimensions, as a Tune search space.

    space = SearchSpace(tolerances=(5.0, (1.0, 50.0)), rewards=(RewardVariant("neon"),),
                        dims=(Dim.parse("lr=1e-4:1e-2:log"), Dim.parse("loops=2,4")))
    space.param_space("grid", samples=2)     # Tune's param_space: every combination, 2 seeds each
    trial_config(base, params)               # one trial's AgentTrainConfig (+ its batch size in episodes)

A dimension is `NAME=V1,V2,...` (choices: a grid axis, or a categorical for random/Optuna
search) or `NAME=LO:HI` / `NAME=LO:HI:log` (a range: random and Optuna search only). Names are
the agent settings a sweep may vary (`DIM_NAMES`) and `reward.PARAM` for a parameter of the reward
variants that accept it. Values reach Tune as plain numbers and strings (tolerances as `A` or
`LO:HI`, rewards as `NAME:key=value`), which every searcher accepts and params.json shows as given.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ray import tune

from neon_ray.agent.config import AgentTrainConfig
from neon_ray.agent.export import ALGOS
from neon_ray.errors import ConfigError
from neon_ray.pruning.rewards import get_reward
from neon_ray.pruning.tolerance import parse_tolerance

DEFAULT_TOLERANCES: tuple[float, ...] = (1.0, 5.0, 50.0)
SEARCHES = ("grid", "random", "optuna")
DIM_NAMES = ("loops", "lr", "entropy", "batch_episodes", "algo")
"""Agent settings a sweep can vary, besides tolerance and reward (and reward.PARAM)."""
_INTEGER_DIMS = ("loops", "batch_episodes")
_REWARD_PREFIX = "reward."
REPEAT_KEY = "repeat"
"""Param holding the repeat index (seed offset) in grid and random search."""
TRIAL_INDEX_KEY = "__trial_index__"
"""Param Tune's Repeater sets on each repeat of an Optuna suggestion."""


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
        """`neon` or `composite(w_params=2)`: short, for trial names and tables."""
        if not self.params:
            return self.reward
        return f"{self.reward}(" + ",".join(f"{k}={_short(v)}" for k, v in sorted(self.params.items())) + ")"

    @property
    def text(self) -> str:
        """`neon` or `composite:w_params=2.0`: the form `parse` reads back exactly."""
        if not self.params:
            return self.reward
        return f"{self.reward}:" + ",".join(f"{k}={v!r}" if isinstance(v, float) else f"{k}={v}"
                                            for k, v in sorted(self.params.items()))

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

    def accepts(self, param: str, value: float) -> bool:
        """Whether this reward takes parameter `param` (with `value`)."""
        try:
            get_reward(self.reward, **{**self.params, param: value})
        except ConfigError:
            return False
        return True


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


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def tolerance_text(tolerance) -> str:
    """`5.0` or `1.0:50.0`: a tolerance as a string parse_tolerance reads back exactly."""
    return ":".join(repr(float(t)) for t in tolerance) if isinstance(tolerance, tuple) else repr(float(tolerance))


def tolerance_label(tolerance) -> str:
    """`5` or `1-50`."""
    return "-".join(f"{t:g}" for t in tolerance) if isinstance(tolerance, tuple) else f"{tolerance:g}"


@dataclass(frozen=True)
class Dim:
    """One searched agent setting: choices, or a range (uniform, or log-uniform with `log`)."""

    name: str
    """One of DIM_NAMES, or reward.PARAM."""
    values: tuple = ()
    """Choices; empty for a range."""
    low: float | None = None
    """A range's lower end."""
    high: float | None = None
    """A range's upper end."""
    log: bool = False
    """Draw a range log-uniformly."""

    def __post_init__(self) -> None:
        if not (self.name in DIM_NAMES or (self.name.startswith(_REWARD_PREFIX) and len(self.name) > len(_REWARD_PREFIX))):
            raise ConfigError(f"search dimension {self.name!r}: expected one of {list(DIM_NAMES)} or reward.PARAM")
        object.__setattr__(self, "values", tuple(self.values))
        if bool(self.values) == (self.low is not None or self.high is not None):
            raise ConfigError(f"search dimension {self.name}: give either choices or a LO:HI range")
        if self.values:
            object.__setattr__(self, "values", tuple(_check_value(self.name, v) for v in self.values))
            if len(set(self.values)) != len(self.values):
                raise ConfigError(f"search dimension {self.name}: choices repeat a value: {list(self.values)}")
            return
        if self.name == "algo":
            raise ConfigError("search dimension algo: give choices (a2c,ppo), not a range")
        low, high = (_check_value(self.name, v) for v in (self.low, self.high))
        if not low < high or (self.log and low <= 0):
            raise ConfigError(f"search dimension {self.name}: range {self.low}:{self.high} needs LO < HI"
                              f"{' and LO > 0 (log)' if self.log else ''}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @classmethod
    def parse(cls, text: str) -> "Dim":
        """`NAME=V1,V2`, `NAME=LO:HI` or `NAME=LO:HI:log`."""
        name, eq, spec = (s.strip() for s in text.partition("="))
        if not eq or not spec:
            raise ConfigError(f"search dimension {text!r}: expected NAME=V1,V2,... or NAME=LO:HI[:log]")
        if ":" in spec:
            parts = spec.split(":")
            log = parts[-1] == "log"
            if len(parts) != 2 + log:
                raise ConfigError(f"search dimension {text!r}: a range is LO:HI or LO:HI:log")
            return cls(name, low=_number_or_text(parts[0]), high=_number_or_text(parts[1]), log=log)
        return cls(name, tuple(_number_or_text(v.strip()) for v in spec.split(",") if v.strip()))

    @property
    def is_range(self) -> bool:
        return not self.values

    @property
    def text(self) -> str:
        """The form `parse` reads back."""
        if self.values:
            return f"{self.name}=" + ",".join(_short(v) for v in self.values)
        return f"{self.name}={self.low!r}:{self.high!r}" + (":log" if self.log else "")

    def domain(self, search: str):
        """The Tune value of this dimension for `search`: a constant, a grid axis, or a sampled domain."""
        if self.values:
            if len(self.values) == 1:
                return self.values[0]
            return tune.grid_search(list(self.values)) if search == "grid" else tune.choice(list(self.values))
        if search == "grid":
            raise ConfigError(f"search dimension {self.text}: a range needs --search random or optuna "
                              "(a grid takes choices only)")
        if self.name in _INTEGER_DIMS:
            high = int(self.high) + 1  # Tune's randint excludes its upper end
            return tune.lograndint(int(self.low), high) if self.log else tune.randint(int(self.low), high)
        return tune.loguniform(self.low, self.high) if self.log else tune.uniform(self.low, self.high)

    @property
    def varies(self) -> bool:
        return self.is_range or len(self.values) > 1


def _check_value(name: str, value):
    if name == "algo":
        if value not in ALGOS:
            raise ConfigError(f"search dimension algo: {value!r} is not one of {list(ALGOS)}")
        return value
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if name in _INTEGER_DIMS:
        if not ok or value != int(value) or value < 1:
            raise ConfigError(f"search dimension {name}: values must be integers >= 1, got {value!r}")
        return int(value)
    if not ok or value < 0 or (name == "lr" and value == 0):
        raise ConfigError(f"search dimension {name}: values must be finite numbers "
                          f"{'> 0' if name == 'lr' else '>= 0'}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SearchSpace:
    """Tolerances x reward variants x dimensions; seeds are repeats, not a dimension."""

    tolerances: tuple = DEFAULT_TOLERANCES
    rewards: tuple[RewardVariant, ...] = DEFAULT_REWARDS
    dims: tuple[Dim, ...] = ()

    def __post_init__(self) -> None:
        if not self.tolerances:
            raise ConfigError("sweep: tolerances is empty; give at least one")
        if not self.rewards:
            raise ConfigError("sweep: rewards is empty; give at least one")
        object.__setattr__(self, "tolerances", tuple(parse_tolerance(t, "sweep: tolerance") for t in self.tolerances))
        object.__setattr__(self, "dims", tuple(self.dims))
        names = [d.name for d in self.dims]
        if len(set(names)) != len(names):
            raise ConfigError(f"sweep: a search dimension is given twice: {names}")
        for dim in self.dims:
            if dim.name.startswith(_REWARD_PREFIX):
                param = dim.name[len(_REWARD_PREFIX):]
                probe = dim.values[0] if dim.values else dim.low
                if not any(v.accepts(param, probe) for v in self.rewards):
                    raise ConfigError(f"search dimension {dim.name}: none of the rewards "
                                      f"{[v.label for v in self.rewards]} takes parameter {param!r}")

    def varied(self, samples: int = 1) -> tuple[str, ...]:
        """Names of what differs between trials (shown in trial names); "seed" when repeated."""
        names = ["tolerance"] if len(self.tolerances) > 1 else []
        names += ["reward"] if len(self.rewards) > 1 else []
        return tuple(names + [d.name for d in self.dims if d.varies] + (["seed"] if samples > 1 else []))

    def param_space(self, search: str, samples: int) -> dict:
        """Tune's param_space. Grid and random search repeat every configuration `samples` times
        through a `repeat` grid axis (random search keeps its draws constant over it); Optuna's
        repeats come from Tune's Repeater, which sets __trial_index__."""
        def axis(values: list):
            if len(values) == 1:
                return values[0]
            return tune.grid_search(values) if search == "grid" else tune.choice(values)

        space = {"tolerance": axis([tolerance_text(t) for t in self.tolerances]),
                 "reward": axis([v.text for v in self.rewards])}
        reward_dims = {d.name[len(_REWARD_PREFIX):]: d.domain(search) for d in self.dims if d.name.startswith(_REWARD_PREFIX)}
        space.update({d.name: d.domain(search) for d in self.dims if not d.name.startswith(_REWARD_PREFIX)})
        if reward_dims:
            space["reward_params"] = reward_dims
        if search != "optuna":
            space[REPEAT_KEY] = tune.grid_search(list(range(samples))) if samples > 1 else 0
        return space

    def to_dict(self) -> dict:
        return {"tolerances": [tolerance_text(t) for t in self.tolerances], "rewards": [v.text for v in self.rewards],
                "dims": [d.text for d in self.dims]}

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        return cls(tuple(d["tolerances"]), tuple(RewardVariant.parse(r) for r in d["rewards"]),
                   tuple(Dim.parse(t) for t in d["dims"]))


def repeat_index(params: dict) -> int:
    """Which repeat of its configuration a trial is (0 for the first)."""
    return int(params.get(TRIAL_INDEX_KEY, params.get(REPEAT_KEY, 0)))


def trial_config(base: AgentTrainConfig, params: dict) -> tuple[AgentTrainConfig, float | None]:
    """One trial's agent settings: `base` with the trial's params applied, and its batch size in
    episodes (None: base's), which needs the zoo's networks to become env steps."""
    variant = RewardVariant.parse(params["reward"])
    reward_params = dict(variant.params)
    for param, value in (params.get("reward_params") or {}).items():
        if variant.accepts(param, value):
            reward_params[param] = value
    episode = replace(base.episode, tolerance=parse_tolerance(params["tolerance"]), reward=variant.reward,
                      reward_params=reward_params or None, loops=int(params.get("loops", base.episode.loops)))
    algo = params.get("algo", base.algo)
    changes = {"episode": episode, "algo": algo, "seed": base.seed + repeat_index(params)}
    if "lr" in params:
        changes["lr"] = float(params["lr"])
    if "entropy" in params:
        changes["entropy_coeff"] = float(params["entropy"])
    if algo != "a2c" and base.warmup_episodes:
        changes["warmup_episodes"] = None  # PPO has no warm-up: base's applies to the A2C trials
    batch = params.get("batch_episodes")
    return replace(base, **changes), (float(batch) if batch is not None else None)


def trial_label(params: dict, varied: tuple[str, ...]) -> str:
    """`tol=5_neon_lr=0.001_s1`: the `varied` params of a trial (s1: repeat 1, seed offset 1)."""
    parts = []
    for name in varied:
        if name == "tolerance":
            parts.append(f"tol={tolerance_label(parse_tolerance(params['tolerance']))}")
        elif name == "reward":
            parts.append(RewardVariant.parse(params["reward"]).label)
        elif name.startswith(_REWARD_PREFIX):
            parts.append(f"{name[len(_REWARD_PREFIX):]}={_short(params['reward_params'][name[len(_REWARD_PREFIX):]])}")
        elif name == "seed":
            parts.append(f"s{repeat_index(params)}")
        else:
            parts.append(f"{name}={_short(params[name])}")
    return "_".join(parts) or "trial"
