"""The settings of pruning episodes, typed and checked once.

`EpisodeConfig` says what an episode does (actions, loops, tolerance, reward, fine-tuning,
observation and measurement settings); `EnvConfig` says which zoo networks a `PruningEnv`
draws episodes from, with what seed, on which RLlib worker, and holds the `EpisodeConfig`.

    episode = EpisodeConfig(loops=4, tolerance=(1.0, 50.0), keep_rates=(1.0, 0.8, 0.6))
    env = PruningEnv(EnvConfig(zoo="runs/zoo", networks="train", episode=episode))

Both are frozen and validated when built, and travel typed through the project (agent
training config, apply, tune, pipeline). They become a plain dict only where RLlib, Tune or a
Ray task need one: `to_dict()` is JSON-ready, and `EnvConfig.to_dict()` puts the episode's
fields next to the env's own, the flat `env_config` RLlib passes back to the env;
`from_dict` reads either back, naming unknown keys. An episode dict cannot name a zoo or a
network, so whoever runs episodes on chosen networks sets those itself.
"""
from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from neon_ray.errors import ConfigError
from neon_ray.nets.checks import check_int
from neon_ray.pruning.finetune import MAX_SEED, FinetuneConfig
from neon_ray.pruning.rewards import get_reward
from neon_ray.pruning.structured import IMPORTANCE_METHODS
from neon_ray.pruning.tolerance import CONFIDENCE_Z, Tolerance, check_confidence_z, check_sampling, parse_tolerance

DEFAULT_KEEP_RATES = (1.0, 0.9, 0.8, 0.7, 0.6)
ROLE_FILTERS = ("train", "test", "all")
# Where an env runs: RLlib's EnvContext knows it better than any dict.
PLACEMENT_FIELDS = ("worker_index", "num_workers", "vector_index")


@dataclass(frozen=True)
class EpisodeConfig:
    """What one pruning episode does, whichever network it prunes."""

    keep_rates: tuple[float, ...] = DEFAULT_KEEP_RATES
    """Keep-rate of each action (action i keeps ceil(keep_rates[i] * width) neurons)."""
    remove_layer_action: bool = False
    """Add one last action that merges the current hidden layer away."""
    loops: int = 4
    """Passes over the hidden layers; an episode has loops * (original depth) steps."""
    tolerance: Tolerance = 1.0
    """Allowed accuracy reduction a in pp, or (lo, hi) to draw one per episode (see tolerance.py)."""
    tolerance_sampling: str = "log-uniform"
    """How a (lo, hi) tolerance is drawn: 'log-uniform' (needs lo > 0) or 'uniform'."""
    confidence_z: float = CONFIDENCE_Z
    """A network is within the tolerance when the upper bound of its val drop, measured drop + z standard
    errors (tolerance.drop_bound_pp), is at most a; the guard, the guarded reward and the observation use it."""
    reward: str = "neon"
    """Reward name (see neon_ray.pruning.rewards)."""
    reward_params: dict | None = None
    """Keyword parameters of the reward; None: its own defaults (an agent run fills in NEON's scale)."""
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    """Fine-tuning after each step that changed the network."""
    importance: str = "l2"
    """Neuron importance for pruning: 'l2', 'l1' or 'activation'."""
    reinit: bool = False
    """Original NEON behaviour: restart the two Linears around a pruned layer from random weights."""
    probe_rows: int = 512
    """Training rows (fixed per network) for activation statistics and activation importance."""
    latency_batch: int = 1
    """Rows per forward pass when a reward needs latency."""
    latency_repeats: int = 10
    """Timed forward passes per latency measurement."""
    memory_batch: int = 1024
    """Rows per forward pass when a reward needs peak memory."""
    info_timings: bool = True
    """Put wall-clock seconds per step piece in info["seconds"] (not reproducible: off for determinism checks)."""

    def __post_init__(self) -> None:
        rates = tuple(self.keep_rates) if isinstance(self.keep_rates, (tuple, list)) else ()
        if not rates or any(isinstance(r, bool) or not isinstance(r, numbers.Real) or not 0 < r <= 1 for r in rates):
            raise ConfigError(f"keep_rates must be a non-empty list of numbers in (0, 1], got {self.keep_rates!r}")
        object.__setattr__(self, "keep_rates", rates)
        object.__setattr__(self, "tolerance", parse_tolerance(self.tolerance))
        check_sampling(self.tolerance, self.tolerance_sampling)
        object.__setattr__(self, "confidence_z", check_confidence_z(self.confidence_z, "EpisodeConfig.confidence_z"))
        check_int("EpisodeConfig.loops", self.loops, 1)
        if self.reward_params is not None and not isinstance(self.reward_params, dict):
            raise ConfigError(f"reward_params must be a dict of reward parameters or None, got {self.reward_params!r}")
        get_reward(self.reward, **(self.reward_params or {}))  # names a bad reward or parameter
        if not isinstance(self.finetune, FinetuneConfig):
            raise ConfigError(f"EpisodeConfig.finetune must be a FinetuneConfig, got {type(self.finetune).__name__}")
        if self.importance not in IMPORTANCE_METHODS:
            raise ConfigError(f"importance must be one of {IMPORTANCE_METHODS}, got {self.importance!r}")
        check_int("EpisodeConfig.probe_rows", self.probe_rows, 2)
        for name in ("latency_batch", "latency_repeats", "memory_batch"):
            check_int(f"EpisodeConfig.{name}", getattr(self, name), 1)

    @property
    def n_actions(self) -> int:
        """Size of the action space: the keep-rates, plus remove-layer if on."""
        return len(self.keep_rates) + int(bool(self.remove_layer_action))

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists, the fine-tuning config a dict)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: Mapping | None) -> "EpisodeConfig":
        """Inverse of to_dict, for any subset of the fields; unknown keys are a ConfigError."""
        d = dict(d or {})
        _refuse_unknown(d, {f.name for f in fields(cls)}, "episode settings")
        if isinstance(d.get("finetune"), Mapping):
            d["finetune"] = FinetuneConfig.from_dict(d["finetune"])
        return cls(**d)


@dataclass(frozen=True)
class EnvConfig:
    """Everything a `PruningEnv` is built from: which networks, which seed, where, and the episode."""

    zoo: Any
    """Zoo directory (read with neon_ray.zoo.store.open_zoo), or an already opened Zoo."""
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)
    """What every episode does."""
    datasets: tuple[str, ...] | None = None
    """Datasets to draw networks from; None: every dataset of the zoo."""
    networks: str | tuple[str, ...] = "train"
    """Role filter 'train' | 'test' | 'all', or an explicit list of network IDs."""
    seed: int = 0
    """Seed of network order, tolerance draws and fine-tuning (a reset(seed=...) replaces it)."""
    worker_index: int = 0
    """RLlib worker index (0 local, 1..num_workers remote); taken from an EnvContext when given."""
    num_workers: int = 0
    """Remote RLlib workers sharing the datasets; 0: this env takes all of them."""
    vector_index: int = 0
    """Index of the env inside its worker (from an EnvContext); mixed into the seed."""

    def __post_init__(self) -> None:
        if not isinstance(self.episode, EpisodeConfig):
            raise ConfigError(f"EnvConfig.episode must be an EpisodeConfig, got {type(self.episode).__name__}")
        if isinstance(self.networks, (tuple, list)):
            object.__setattr__(self, "networks", tuple(self.networks))
        elif self.networks not in ROLE_FILTERS:
            raise ConfigError(f"networks must be one of {ROLE_FILTERS} or a list of network IDs, got {self.networks!r}")
        if self.datasets is not None:
            if isinstance(self.datasets, str):
                raise ConfigError(f"datasets must be a list of dataset names, not the string {self.datasets!r}")
            object.__setattr__(self, "datasets", tuple(self.datasets))
        check_int("EnvConfig.seed", self.seed, 0, MAX_SEED)
        for name in PLACEMENT_FIELDS:
            check_int(f"EnvConfig.{name}", getattr(self, name), 0)

    def to_dict(self) -> dict:
        """The flat `env_config` of RLlib and Tune: the env's fields and the episode's side by side."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("zoo", "episode")}
        own = json.loads(json.dumps(own))
        return {"zoo": self.zoo if not hasattr(self.zoo, "__fspath__") else str(self.zoo), **own, **self.episode.to_dict()}

    @classmethod
    def from_dict(cls, env_config: Mapping | None) -> "EnvConfig":
        """Parse a flat dict (see to_dict) or an RLlib EnvContext (a dict with .worker_index / .num_workers)."""
        d = dict(env_config or {})
        for name in PLACEMENT_FIELDS:
            if hasattr(env_config, name):
                d[name] = int(getattr(env_config, name))
        own = {f.name for f in fields(cls)} - {"episode"}
        episode_keys = {f.name for f in fields(EpisodeConfig)}
        _refuse_unknown(d, own | episode_keys, "env_config")
        if "zoo" not in d:
            raise ConfigError("env_config needs 'zoo': the path of a zoo directory")
        episode = EpisodeConfig.from_dict({k: d.pop(k) for k in list(d) if k in episode_keys})
        return cls(episode=episode, **d)


def _refuse_unknown(d: dict, known: set[str], what: str) -> None:
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"{what}: unknown key(s) {unknown}, accepted: {sorted(known)}")
