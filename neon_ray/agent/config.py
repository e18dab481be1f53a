"""The settings of one agent training run (`AgentTrainConfig`, saved as RUN/config.json) and their defaults.

    cfg = AgentTrainConfig(zoo="runs/zoo", out="runs/agent", episode=default_agent_episode(loops=2))
    resolved = cfg.resolve(selection, zoo.manifest())     # every None default filled in
    env = resolved.env_config(selection.train_ids)        # the typed EnvConfig the EnvRunners build

The episode the agent trains in is one typed `EpisodeConfig` (keep-rates, loops, tolerance,
reward, fine-tuning, ...); everything else here is about the learner and the run. The agent's
episode defaults differ from the env's on purpose: one agent for every tolerance from 1 to 50
pp, and a small fine-tuning budget, because every training episode pays it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Sequence

import pandas as pd

from neon_ray.agent.balance import BALANCE_MODES
from neon_ray.agent.export import ALGOS
from neon_ray.agent.protocols import Selection, select_networks
from neon_ray.errors import ConfigError
from neon_ray.nets.checks import check_int, check_number
from neon_ray.pruning.episode_config import EnvConfig, EpisodeConfig
from neon_ray.pruning.finetune import MAX_SEED, FinetuneConfig  # 32-bit: RLlib seeds numpy's legacy global RNG

# Fields that may change when a run is resumed: how long it runs, how often it saves, and how
# many processes sample. Everything else shapes what is learned and must match.
RESUMABLE_FIELDS = ("out", "episodes", "checkpoint_every", "keep_checkpoints", "num_env_runners", "balance_runners")
# Episodes per gradient update when train_batch_size is not given.
BATCH_EPISODES = 4
# RUN/config.json of runs from before the episode settings were nested: these keys sat at the top.
_FLAT_EPISODE_KEYS = ("tolerance", "tolerance_sampling", "loops", "keep_rates", "reward", "reward_params",
                      "finetune", "importance")


def default_finetune() -> FinetuneConfig:
    """The agent's per-step fine-tuning budget: small, because every training episode pays it, and
    distilling (targets 'original'): the guard certifies a network by how few val rows it answers
    differently from the original, and fitting the original's answers keeps that number small."""
    return FinetuneConfig(max_epochs=3, patience=1, max_train_rows=2048, max_val_rows=2048, targets="original")


def default_agent_episode(**changes) -> EpisodeConfig:
    """The agent's default episode (tolerances 1 to 50 pp, the guarded reward, `default_finetune`) with `changes` applied.

    The guarded reward pays what the guard returns (pruning.rewards.guarded); NEON's reward stays
    available (`reward="neon"`). Measured on 18 training and 4 validation datasets of the reduced
    protocol B (README, "The agent"), it scored higher at a = 5 and 50 pp.
    """
    return EpisodeConfig(**{"tolerance": (1.0, 50.0), "reward": "guarded", "finetune": default_finetune(), **changes})


@dataclass(frozen=True)
class AgentTrainConfig:
    """Everything that defines one agent training run (saved as RUN/config.json)."""

    zoo: str
    """Zoo directory (see neon_ray.zoo.store)."""
    out: str | None = None
    """Run directory for config.json, progress.csv and checkpoints; required by train_agent."""
    datasets: tuple[str, ...] | None = None
    """Datasets to use; None: every dataset of the zoo."""
    holdout: tuple[str, ...] = ()
    """Datasets never trained on (protocol B); empty: protocol A."""
    algo: str = "a2c"
    """'a2c' (NEON's agent, one gradient step per batch) or 'ppo'."""
    episode: EpisodeConfig = field(default_factory=default_agent_episode)
    """The episode the agent trains in; reward_params None: for neon/neon2020 a scale mapping the largest |reward| to 1."""
    episodes: int | None = None
    """Training episodes in total; None: NEON's 10 x training networks + warm-up."""
    warmup_episodes: int | None = None
    """A2C random-action episodes training the critic only; None: NEON's min(2N, 500) (PPO: 0)."""
    num_env_runners: int = 0
    """Remote EnvRunners (processes sampling in parallel); 0 samples in the driver."""
    balance_runners: str = "measured"
    """A2C with 2+ runners: each runner's share of a batch from its 'measured' seconds per step (runners
    finish together), or from the zoo's figures, 'model' (batches, and so runs, reproducible)."""
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
    validation_datasets: tuple[str, ...] = ()
    """Datasets the checkpoints are scored on (never trained on, not in holdout); empty: no validation."""
    validate_every: int = 0
    """Score the policy on validation_datasets every this many iterations (at a checkpoint); 0: never."""

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ConfigError(f"algo must be one of {list(ALGOS)}, got {self.algo!r}")
        if not isinstance(self.episode, EpisodeConfig):
            raise ConfigError(f"AgentTrainConfig.episode must be an EpisodeConfig, got {type(self.episode).__name__}")
        check_int("AgentTrainConfig.num_env_runners", self.num_env_runners, 0)
        if self.balance_runners not in BALANCE_MODES:
            raise ConfigError(f"AgentTrainConfig.balance_runners must be one of {BALANCE_MODES}, got {self.balance_runners!r}")
        check_int("AgentTrainConfig.checkpoint_every", self.checkpoint_every, 1)
        check_int("AgentTrainConfig.keep_checkpoints", self.keep_checkpoints, 1)
        check_int("AgentTrainConfig.seed", self.seed, 0, MAX_SEED)
        for name in ("episodes", "train_batch_size"):
            if getattr(self, name) is not None:
                check_int(f"AgentTrainConfig.{name}", getattr(self, name), 1)
        if self.warmup_episodes is not None:
            check_int("AgentTrainConfig.warmup_episodes", self.warmup_episodes, 0)
            if self.warmup_episodes and self.algo != "a2c":
                raise ConfigError(f"warmup_episodes={self.warmup_episodes}: warm-up is an A2C option; PPO has none (use 0)")
        if not self.hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ConfigError(f"hidden must be a non-empty list of positive integers, got {list(self.hidden)}")
        if self.lr is not None:
            check_number("AgentTrainConfig.lr", self.lr, 0, None, lo_open=True)
        check_number("AgentTrainConfig.gamma", self.gamma, 0, 1, lo_open=True)
        check_number("AgentTrainConfig.entropy_coeff", self.entropy_coeff, 0, None)
        if isinstance(self.holdout, str) or (self.datasets is not None and isinstance(self.datasets, str)) \
                or isinstance(self.validation_datasets, str):
            raise ConfigError("datasets, holdout and validation_datasets must be lists of dataset names, not a single string")
        self._check_validation()

    def _check_validation(self) -> None:
        check_int("AgentTrainConfig.validate_every", self.validate_every, 0)
        val = list(self.validation_datasets)
        if bool(val) != bool(self.validate_every):
            raise ConfigError(f"validation needs both validation_datasets (got {val}) and validate_every >= 1 "
                              f"(got {self.validate_every}): give both or neither")
        for what, names in (("holdout", self.holdout), ("datasets", self.datasets or ())):
            both = sorted(set(val) & set(names))
            if both:
                raise ConfigError(f"validation_datasets {both} are also in {what}: validation datasets are never "
                                  f"trained on{' nor tested on' if what == 'holdout' else ''}; choose disjoint datasets")

    # ------------------------------------------------------------------ resolution

    def select(self, zoo_or_manifest) -> Selection:
        """`protocols.select_networks` for this run, with the validation datasets left out of training.

        What is reported on (eval_datasets/eval_ids) is the protocol's as without validation.
        """
        selection = select_networks(zoo_or_manifest, self.datasets, self.holdout)
        if not self.validation_datasets:
            return selection
        manifest = zoo_or_manifest.manifest() if hasattr(zoo_or_manifest, "manifest") else zoo_or_manifest
        known = sorted(set(manifest["dataset"]))
        unknown = [d for d in self.validation_datasets if d not in known]
        if unknown:
            raise ConfigError(f"validation_datasets: {unknown} not in the zoo, which has datasets {known}")
        left = sorted(set(selection.train_datasets) - set(self.validation_datasets))
        if not left:
            raise ConfigError(f"validation_datasets {sorted(self.validation_datasets)} cover every training dataset "
                              f"{list(selection.train_datasets)}: nothing is left to train on")
        trained = select_networks(manifest, left)
        return replace(selection, train_datasets=trained.train_datasets, train_ids=trained.train_ids)

    def resolved_reward_params(self) -> dict:
        """The reward parameters, with the default scale filled in for NEON's rewards."""
        ep = self.episode
        if ep.reward_params is not None:
            return dict(ep.reward_params)
        if ep.reward in ("neon", "neon2020"):
            biggest_step = 100.0 * (1.0 - min(ep.keep_rates))
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
            steps = mean_episode_steps(manifest, selection.train_ids, self.episode.loops)
            batch = max(1, int(round(BATCH_EPISODES * steps)))
        return replace(self, warmup_episodes=warmup, episodes=episodes, train_batch_size=batch,
                       episode=replace(self.episode, reward_params=self.resolved_reward_params()))

    def env_config(self, network_ids: Sequence[str]) -> EnvConfig:
        """The PruningEnv settings for training on these networks (every 'train' network if empty)."""
        return EnvConfig(zoo=str(Path(self.zoo).resolve()), networks=tuple(network_ids) if network_ids else "train",
                         seed=self.seed, episode=replace(self.episode, reward_params=self.resolved_reward_params()))

    # ------------------------------------------------------------------ (de)serialisation

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists, the episode a nested dict)."""
        d = asdict(self)
        # absolute, so a run resumes or loads from any working directory
        d["zoo"] = str(Path(self.zoo).resolve())
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: dict) -> "AgentTrainConfig":
        """Inverse of to_dict (also reads the flat episode keys of older runs); names unknown keys."""
        d = _nest_flat_episode(dict(d))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"agent config: unknown key(s) {unknown}, accepted: {sorted(known)}")
        for key in ("datasets", "holdout", "hidden", "validation_datasets"):
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        if isinstance(d.get("episode"), dict):
            d["episode"] = EpisodeConfig.from_dict(d["episode"])
        return cls(**d)

    def identity(self) -> dict:
        """The settings a resumed run must share with the run it continues."""
        d = self.to_dict()
        for key in RESUMABLE_FIELDS:
            d.pop(key)
        return d


def _nest_flat_episode(d: dict) -> dict:
    """RUN/config.json as written before the episode settings were nested, in today's shape."""
    flat = {k: d.pop(k) for k in _FLAT_EPISODE_KEYS if k in d}
    if "remove_layer" in d:
        flat["remove_layer_action"] = d.pop("remove_layer")
    if flat and "episode" not in d:
        d["episode"] = flat
    elif flat:
        raise ConfigError(f"agent config: keys {sorted(flat)} belong inside 'episode'")
    return d


def mean_episode_steps(manifest: pd.DataFrame, network_ids: Sequence[str], loops: int) -> float:
    """Mean episode length (loops x hidden layers) over these networks of a zoo manifest."""
    rows = manifest[manifest["network_id"].isin(list(network_ids))]
    if "depth" not in rows.columns or rows.empty:
        raise ConfigError("zoo manifest has no 'depth' column for the training networks; give train_batch_size explicitly")
    return loops * float(rows["depth"].mean())
