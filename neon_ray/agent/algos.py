"""Algorithm configs for the pruning agent (A2C or PPO) and loading a trained policy.

`make_algo_config` is the one place that turns neon-ray's few agent settings into an RLlib
`AlgorithmConfig`; `load_policy` reads the trained policy back without Ray, for applying the
agent to new networks, from the pickle-free export next to each checkpoint (see `export.py`).

Settings common to both algorithms, and why:
- `batch_mode="complete_episodes"`: every batch holds whole pruning episodes, so returns are
  Monte-Carlo and one update covers whole episodes, as in NEON's original.
- `sample_timeout_s=600`: a pruning step fine-tunes a network and takes seconds; RLlib's
  default 60 s silently drops slow rollouts and nothing trains.
- `SeedOnceEnvRunner`: with a seed and complete episodes, RLlib 2.60's EnvRunner re-seeds
  its envs at every `sample()` call, so every call replays the same episodes. This runner
  seeds them once.
- Separate actor and critic MLPs (`vf_share_layers=False`), as in the original.
- CPUs are logical and fractional so that two trials fit on a 2-CPU machine: the main
  process (which also hosts the learner and, with `num_env_runners=0`, the sampling env)
  asks for max(`num_cpus_for_main_process`, `num_cpus_per_learner`), each EnvRunner for
  `num_cpus_per_env_runner`. `trial_cpus(config)` gives the total a trial reserves and
  `cpu_budget` rejects configs that cannot fit.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

from neon_ray.agent.a2c import A2CConfig
from neon_ray.agent.export import ALGOS, read_policy
from neon_ray.errors import CheckpointError, ConfigError

AlgoName = Literal["a2c", "ppo"]

# Per-algorithm defaults: A2C from NEON's original (Adam 1e-3), PPO from the experiment
# plan in method.md section 7 (lr 3e-4, clip 0.2).
DEFAULT_LR = {"a2c": 1e-3, "ppo": 3e-4}
PPO_CLIP = 0.2


def make_algo_config(
    algo: AlgoName,
    env: str | type,
    env_config: dict | None = None,
    *,
    num_env_runners: int = 0,
    num_envs_per_env_runner: int = 1,
    lr: float | None = None,
    gamma: float = 0.99,
    entropy_coeff: float = 0.01,
    train_batch_size: int = 32,
    hidden: Sequence[int] = (64, 64),
    activation: str = "tanh",
    seed: int | None = None,
    sample_timeout_s: float = 600.0,
    num_cpus_for_main_process: float = 0.5,
    num_cpus_per_learner: float = 0.5,
    num_cpus_per_env_runner: float = 0.5,
    cpu_budget: float | None = None,
    warmup_episodes: int = 0,
    balance_runners: str = "measured",
    lambda_: float = 1.0,
    ppo_num_epochs: int = 4,
    ppo_minibatch_size: int | None = None,
) -> AlgorithmConfig:
    """Builds the RLlib config for `algo` on `env` (a registered name or a gymnasium class).

    Args:
        algo: "a2c" (one gradient step per batch, see `a2c.py`) or "ppo".
        env: registered env name or `gymnasium.Env` subclass taking `env_config`.
        env_config: passed to the env constructor.
        num_env_runners: remote EnvRunners; 0 samples in the main process.
        num_envs_per_env_runner: environments stepped together inside one runner.
        lr: Adam learning rate; None takes the algorithm default (a2c 1e-3, ppo 3e-4).
        gamma: discount factor.
        entropy_coeff: entropy bonus weight.
        train_batch_size: env steps per update; whole episodes are added until reached.
        hidden: hidden widths of the actor MLP and, separately, of the critic MLP.
        activation: hidden activation (RLlib name: "tanh", "relu", ...).
        seed: seeds module initialisation and environments.
        sample_timeout_s: how long a sampling round may take before RLlib drops it.
        num_cpus_for_main_process: logical CPUs for the algorithm's own process.
        num_cpus_per_learner: logical CPUs for the (local) learner.
        num_cpus_per_env_runner: logical CPUs for each remote EnvRunner.
        cpu_budget: if given, raise `ConfigError` when the trial would reserve more CPUs.
        warmup_episodes: a2c only: random-action episodes that train the critic alone.
        balance_runners: a2c only: 'measured' (each runner's share of a batch from its measured
            cost per step, agent/balance.py) or 'model' (from the zoo's figures: reproducible batches).
        lambda_: GAE lambda; 1.0 gives Monte-Carlo advantages.
        ppo_num_epochs: ppo only: passes over each batch.
        ppo_minibatch_size: ppo only: minibatch size; None uses the whole batch each epoch.
    """
    if algo not in ALGOS:
        raise ConfigError(f"unknown algorithm {algo!r}; expected one of {', '.join(ALGOS)}")
    if warmup_episodes and algo != "a2c":
        raise ConfigError("warmup_episodes is an A2C option; PPO has no warm-up")
    config = _algo_specific(algo, warmup_episodes, ppo_num_epochs, ppo_minibatch_size)
    if algo == "a2c":
        config.training(balance_runners=balance_runners)
    config = (
        config.environment(env, env_config=dict(env_config or {}))
        .env_runners(
            env_runner_cls=SeedOnceEnvRunner,
            num_env_runners=num_env_runners,
            num_envs_per_env_runner=num_envs_per_env_runner,
            num_cpus_per_env_runner=num_cpus_per_env_runner,
            sample_timeout_s=sample_timeout_s,
            batch_mode="complete_episodes",
            rollout_fragment_length="auto",
        )
        .learners(num_learners=0, num_cpus_per_learner=num_cpus_per_learner)
        .resources(num_cpus_for_main_process=num_cpus_for_main_process)
        .training(
            lr=DEFAULT_LR[algo] if lr is None else lr,
            gamma=gamma,
            lambda_=lambda_,
            entropy_coeff=entropy_coeff,
            train_batch_size_per_learner=train_batch_size,
        )
        .rl_module(
            model_config={
                "fcnet_hiddens": list(hidden),
                "fcnet_activation": activation,
                "vf_share_layers": False,
            }
        )
        .debugging(seed=seed)
    )
    if cpu_budget is not None:
        _check_cpu_budget(config, cpu_budget)
    return config


class SeedOnceEnvRunner(SingleAgentEnvRunner):
    """SingleAgentEnvRunner that passes the configured seed to its envs once only.

    RLlib 2.60 (`SingleAgentEnvRunner._sample`) flags an "initial reset" after every
    episode-based `sample()` (the mode `batch_mode="complete_episodes"` uses) and seeds that
    reset with the runner's seed: each call then starts from the same RNG state and, with one
    env per runner, returns the same episode over and over. Later resets here continue the
    envs' own RNG streams, so runs stay reproducible and episodes differ.

    It also seeds the action space, which RLlib's `random_actions` sampling (A2C's warm-up)
    draws from and otherwise leaves unseeded.

    And it samples a runner's whole share of the train batch in one call: RLlib's complete-episode
    `sample()` returns one episode per env, so a batch took several rounds of one episode per
    runner, each round waiting for its slowest episode (`bench rollout`: 2 runners busy 51% and
    85% of the time). Here a call returns complete episodes until the runner holds its share of
    the batch's steps, so an iteration has one barrier and per-episode differences even out within
    a share. The share is the one A2C's learner sets from measured seconds per step
    (`set_batch_share`, agent/balance.py), else the env's prior `batch_share` (from the zoo's
    figures, pruning.catalogue.step_shares), else the batch / the runner count. Every episode
    still comes from the weights synced before the call: sampling stays on-policy.
    """

    def __init__(self, **kwargs) -> None:
        self._envs_seeded = False
        self._share: float | None = None  # set by the learner's balance (agent/balance.py)
        self._last_sample = (0, 0.0)
        super().__init__(**kwargs)

    def set_batch_share(self, share: float | None) -> None:
        """This runner's share of the batch's steps from now on; None: the env's prior (`batch_share`)."""
        self._share = share

    def last_sample(self) -> tuple[int, int, float]:
        """(worker index, steps, seconds) of the last batch-share sampling call."""
        return (self.worker_index, *self._last_sample)

    def sample(self, *, num_timesteps: int | None = None, num_episodes: int | None = None, **kwargs):
        if num_timesteps is not None or num_episodes is not None or self.config.batch_mode != "complete_episodes":
            return super().sample(num_timesteps=num_timesteps, num_episodes=num_episodes, **kwargs)
        share, start = self._batch_steps(), time.perf_counter()
        episodes, steps = [], 0
        while steps < share:
            more = super().sample(**kwargs)
            if not more:
                break
            episodes += more
            steps += sum(len(episode) for episode in more)
        self._last_sample = (steps, time.perf_counter() - start)
        return episodes

    def _batch_steps(self) -> int:
        share = self._share if self._share is not None else self._env_share()
        if share is None:
            return self.config.get_rollout_fragment_length(self.worker_index) * self.num_envs
        return max(1, round(self.config.total_train_batch_size * share))

    def _env_share(self) -> float | None:
        envs = getattr(getattr(self.env, "unwrapped", None), "envs", None)  # a synchronous vector env
        return getattr(envs[0].unwrapped, "batch_share", None) if envs else None

    def _try_env_reset(self, *, seed: int | None = None, options: dict | None = None):
        if self._envs_seeded:
            seed = None
        elif seed is not None:
            self._envs_seeded = True
            self.env.action_space.seed(seed)
        return super()._try_env_reset(seed=seed, options=options)


def _algo_specific(
    algo: AlgoName, warmup_episodes: int, ppo_num_epochs: int, ppo_minibatch_size: int | None
) -> AlgorithmConfig:
    if algo == "a2c":
        return A2CConfig().training(warmup_episodes=warmup_episodes)
    # Plain clipped PPO: no adaptive KL penalty, and no value clipping, whose threshold
    # would depend on the reward scale.
    return PPOConfig().training(
        clip_param=PPO_CLIP,
        use_kl_loss=False,
        vf_clip_param=math.inf,
        num_epochs=ppo_num_epochs,
        minibatch_size=ppo_minibatch_size,
    )


def trial_cpus(config: AlgorithmConfig) -> float:
    """Logical CPUs one algorithm (one Tune trial) reserves with this config."""
    bundles = config.algo_class.default_resource_request(config).bundles
    return float(sum(bundle.get("CPU", 0.0) for bundle in bundles))


def _check_cpu_budget(config: AlgorithmConfig, cpu_budget: float) -> None:
    need = trial_cpus(config)
    if need > cpu_budget + 1e-9:
        raise ConfigError(
            f"the agent would reserve {need:g} CPUs (main process/learner + "
            f"{config.num_env_runners} EnvRunners x {config.num_cpus_per_env_runner:g}) but "
            f"the budget is {cpu_budget:g}; lower num_env_runners or the per-process CPUs"
        )


# --------------------------------------------------------------------------- policy


class LoadedPolicy:
    """A trained RLModule as `policy(obs, greedy=True) -> action`, no Ray needed.

    Observations go to the module as they come from the env: the configs built here add no
    observation filter to the env-to-module pipeline. `spec` is the export's policy.json.
    """

    def __init__(self, module: RLModule, seed: int | None = None, spec: dict | None = None) -> None:
        self.module = module
        self.spec = spec
        self._rng = np.random.default_rng(seed)

    def action_probs(self, obs: np.ndarray) -> np.ndarray:
        """The policy's action probabilities for one observation."""
        return _softmax(self._logits(obs))

    def __call__(self, obs: np.ndarray, greedy: bool = True) -> int:
        """The most likely action (greedy) or one sampled from the policy."""
        logits = self._logits(obs)
        if greedy:
            return int(np.argmax(logits))
        return int(self._rng.choice(len(logits), p=_softmax(logits)))

    def _logits(self, obs: np.ndarray) -> np.ndarray:
        batch = {Columns.OBS: torch.as_tensor(np.asarray(obs, dtype=np.float32))[None]}
        with torch.no_grad():
            out = self.module.forward_inference(batch)
        return out[Columns.ACTION_DIST_INPUTS][0].double().numpy()


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


def load_policy(checkpoint_dir: str | Path, *, seed: int | None = None) -> LoadedPolicy:
    """Loads the policy exported next to a checkpoint (policy.json + policy.pt, see `export.py`).

    Never unpickles: a checkpoint directory without the export is refused with a CheckpointError
    (RLlib's own pickles run arbitrary code when loaded). `seed` seeds non-greedy actions.
    """
    folder = Path(checkpoint_dir).expanduser().absolute()
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such policy directory (expected policy.json + policy.pt)")
    module, spec = read_policy(folder)
    return LoadedPolicy(module, seed=seed, spec=spec)
