"""A true advantage actor-critic (A2C) on RLlib 2.60's new API stack.

RLlib 2.60 ships no A2C, so this module hosts one on PPO's machinery: PPO's default
RLModule (separate actor and critic MLPs), its EnvRunners, and its learner connector
pipeline, which adds one artificial timestep per episode (masked out of the loss) and
computes lambda-returns with `GeneralAdvantageEstimation`. Only the loss and the training
step differ:

    loss = mean_mask[ -logp(a|s) * A  +  c_v * (V(s) - target)^2  -  c_e * H(pi(.|s)) ]

with no importance ratio, no clipping and no KL term, and exactly one gradient step per
on-policy batch (`num_epochs=1`, `minibatch_size=None`, enforced by `validate()`).

Defaults and why:
- `lr=1e-3`: NEON's original used Adam 1e-3 for actor and critic. The actor and critic are
  separate networks (PPO's default `vf_share_layers=False`), so one Adam over both is the
  same as two Adams at 1e-3, except for the joint gradient clipping below.
- `gamma=0.99`, `lambda_=1.0`: with lambda 1 the value target is the Monte-Carlo return of
  the episode (batches hold complete episodes), as in the original, and the critic is a pure
  baseline. Lower `lambda_` gives GAE.
- `vf_loss_coeff=0.5`, `entropy_coeff=0.01`: the usual A2C values (the original used no
  entropy bonus; set 0.0 to match it).
- `grad_clip=40.0` by global norm (RLlib's historic A2C default). The smaller 0.5 common in
  other A2C code would, with a joint global norm, let a large critic gradient (reward scales
  in pruning are not normalised) shrink the actor's step to almost nothing.
- `normalize_advantages=False`: RLlib's GAE connector standardises advantages over the
  batch. On small batches (one pruning episode is a handful of steps) that forces the
  advantages to mean zero, which is not A2C. By default the loss uses the raw advantage
  `target - V(s)`; `True` uses RLlib's standardised one.

Warm-up (`warmup_episodes > 0`, NEON's "min(2N, 500) episodes with random actions"): while
fewer episodes than that have been sampled, EnvRunners act uniformly at random (RLlib's
`random_actions` sampling) and the learner trains the critic only: the policy-gradient and
entropy terms are dropped, so the actor's parameters and its optimizer state stay untouched.
Training the actor on those episodes would treat random actions as the policy's own
(off-policy data in an on-policy estimator). Fitting the critic to them is safe: with
`lambda_=1` the critic only serves as a baseline, and any state-dependent baseline leaves
the policy gradient unbiased, so the warm-up buys a critic that already knows the reward
scale when policy learning starts. This needs separate actor and critic networks, which
`validate()` checks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from ray.rllib.algorithms.algorithm_config import NotProvided
from ray.rllib.algorithms.ppo.ppo import PPO, PPOConfig
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import ENTROPY_KEY, POLICY_LOSS_KEY, VF_LOSS_KEY
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_EPISODES_LIFETIME,
    NUM_MODULE_STEPS_TRAINED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)
from ray.rllib.utils.torch_utils import explained_variance
from ray.rllib.utils.typing import ModuleID, ParamDict, TensorType

from neon_ray.agent.balance import BALANCE_MODES, RunnerBalance, balanced_sample
from neon_ray.errors import ConfigError

NUM_GRADIENT_STEPS_KEY = "num_gradient_steps"
NUM_GRADIENT_STEPS_LIFETIME_KEY = "num_gradient_steps_lifetime"
CRITIC_ONLY_KEY = "critic_only"
VF_EXPLAINED_VAR_KEY = "vf_explained_var"
WARMUP_KEY = "warmup"


# --------------------------------------------------------------------------- loss


@dataclass(frozen=True)
class A2CLossTerms:
    """The batch-mean loss terms of one A2C update (scalar tensors)."""

    total: torch.Tensor
    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor


def a2c_loss(
    *,
    logp: torch.Tensor,
    entropy: torch.Tensor,
    values: torch.Tensor,
    value_targets: torch.Tensor,
    advantages: torch.Tensor,
    vf_loss_coeff: float,
    entropy_coeff: float,
    mask: torch.Tensor | None = None,
    critic_only: bool = False,
) -> A2CLossTerms:
    """A2C loss from per-timestep tensors of shape [T].

    `advantages` are treated as constants (detached); `mask` (bool, [T]) selects the real
    timesteps. With `critic_only` the total is the value term alone, so no gradient reaches
    the actor.
    """
    mean = _masked_mean(mask)
    policy = mean(-logp * advantages.detach())
    value = mean((values - value_targets) ** 2)
    ent = mean(entropy)
    total = vf_loss_coeff * value
    if not critic_only:
        total = total + policy - entropy_coeff * ent
    return A2CLossTerms(total=total, policy=policy, value=value, entropy=ent)


def _masked_mean(mask: torch.Tensor | None):
    if mask is None:
        return torch.mean
    n_valid = mask.sum()
    return lambda x: x[mask].sum() / n_valid


# --------------------------------------------------------------------------- config


class A2CConfig(PPOConfig):
    """PPOConfig with A2C defaults; see the module docstring for the choices.

    Extra settings (via `.training(...)`):
    - `warmup_episodes` (int, 0): episodes of uniformly random actions at the start, used to
      train the critic only.
    - `normalize_advantages` (bool, False): use RLlib's batch-standardised advantages instead
      of the raw `target - V(s)`.

    PPO's `clip_param`, `vf_clip_param`, `kl_coeff` and `kl_target` are ignored.
    Build configs through `neon_ray.agent.algos.make_algo_config`, which also installs an
    EnvRunner that does not replay the same seeded episode at every sampling call.
    """

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or A2C)
        self.lr = 1e-3
        self.gamma = 0.99
        self.lambda_ = 1.0
        self.vf_loss_coeff = 0.5
        self.entropy_coeff = 0.01
        self.grad_clip = 40.0
        self.grad_clip_by = "global_norm"
        # One gradient step on the whole on-policy batch.
        self.num_epochs = 1
        self.minibatch_size = None
        self.shuffle_batch_per_epoch = False
        self.use_kl_loss = False
        self.kl_coeff = 0.0
        # Whole episodes per batch: Monte-Carlo returns need no bootstrap at a cut.
        self.batch_mode = "complete_episodes"
        self.warmup_episodes = 0
        self.normalize_advantages = False
        # Each runner's share of a batch from its measured cost per step (agent/balance.py).
        self.balance_runners = "measured"

    def training(
        self,
        *,
        warmup_episodes: int = NotProvided,
        normalize_advantages: bool = NotProvided,
        balance_runners: str = NotProvided,
        **kwargs: Any,
    ) -> "A2CConfig":
        super().training(**kwargs)
        if balance_runners is not NotProvided:
            self.balance_runners = balance_runners
        if warmup_episodes is not NotProvided:
            self.warmup_episodes = warmup_episodes
        if normalize_advantages is not NotProvided:
            self.normalize_advantages = normalize_advantages
        return self

    def get_default_learner_class(self) -> type:
        if self.framework_str != "torch":
            raise ConfigError(f"A2C supports framework='torch' only, got {self.framework_str!r}")
        return A2CTorchLearner

    def validate(self) -> None:
        # Ours first: PPO's own check would accept minibatch_size == train batch size,
        # which silently gives two gradient steps (RLlib adds one timestep per episode).
        self._validate_a2c()
        super().validate()

    def _validate_a2c(self) -> None:
        if not self.enable_rl_module_and_learner:
            raise ConfigError("A2C runs on RLlib's new API stack only (RLModule/Learner)")
        if self.balance_runners not in BALANCE_MODES:
            raise ConfigError(f"balance_runners must be one of {BALANCE_MODES}, got {self.balance_runners!r}")
        if self.num_epochs != 1:
            raise ConfigError(
                f"A2C takes one gradient step per batch: num_epochs must be 1, got {self.num_epochs}"
            )
        if self.minibatch_size is not None:
            raise ConfigError(
                "A2C takes one gradient step per batch: minibatch_size must be None, got "
                f"{self.minibatch_size} (even minibatch_size == train batch size gives two "
                "steps, because RLlib adds one timestep per episode)"
            )
        if self.use_kl_loss:
            raise ConfigError("A2C has no KL term: use_kl_loss must be False")
        if not self.use_critic:
            raise ConfigError("A2C needs its critic: use_critic must be True")
        if not isinstance(self.warmup_episodes, int) or self.warmup_episodes < 0:
            raise ConfigError(
                f"warmup_episodes must be an integer >= 0, got {self.warmup_episodes!r}"
            )
        if self.warmup_episodes > 0 and self.model_config.get("vf_share_layers"):
            raise ConfigError(
                "warmup_episodes > 0 trains the critic alone, which needs separate actor and "
                "critic networks: set model_config vf_share_layers=False"
            )


# --------------------------------------------------------------------------- learner


class A2CTorchLearner(PPOTorchLearner):
    """PPO's learner (GAE connector, entropy schedule) with the A2C loss."""

    def build(self) -> None:
        super().build()
        self._critic_only = False

    def update(self, *args: Any, critic_only: bool = False, **kwargs: Any):
        """`Learner.update`; `critic_only=True` trains on the value loss alone (warm-up)."""
        self._critic_only = critic_only
        try:
            return super().update(*args, **kwargs)
        finally:
            self._critic_only = False

    def compute_loss_for_module(
        self,
        *,
        module_id: ModuleID,
        config: A2CConfig,
        batch: dict[str, Any],
        fwd_out: dict[str, TensorType],
    ) -> TensorType:
        module = self.module[module_id].unwrapped()
        dist = module.get_train_action_dist_cls().from_logits(fwd_out[Columns.ACTION_DIST_INPUTS])
        values = module.compute_values(batch, embeddings=fwd_out.get(Columns.EMBEDDINGS))
        targets = batch[Postprocessing.VALUE_TARGETS]
        terms = a2c_loss(
            logp=dist.logp(batch[Columns.ACTIONS]),
            entropy=dist.entropy(),
            values=values,
            value_targets=targets,
            advantages=self._advantages(config, batch, values),
            vf_loss_coeff=config.vf_loss_coeff,
            entropy_coeff=self.entropy_coeff_schedulers_per_module[module_id].get_current_value(),
            mask=batch.get(Columns.LOSS_MASK),
            critic_only=self._critic_only,
        )
        self._log_loss(module_id, terms, targets, values)
        return terms.total

    @staticmethod
    def _advantages(config: A2CConfig, batch: dict[str, Any], values: torch.Tensor) -> torch.Tensor:
        if config.normalize_advantages:
            return batch[Postprocessing.ADVANTAGES]
        # The GAE connector computed the targets with these very parameters (one step per
        # batch, no dropout), so target - V(s) is exactly its advantage before RLlib
        # standardised it.
        return batch[Postprocessing.VALUE_TARGETS] - values.detach()

    def _log_loss(self, module_id: ModuleID, terms: A2CLossTerms, targets, values) -> None:
        self.metrics.log_dict(
            {
                POLICY_LOSS_KEY: terms.policy,
                VF_LOSS_KEY: terms.value,
                ENTROPY_KEY: terms.entropy,
                VF_EXPLAINED_VAR_KEY: explained_variance(targets, values),
                CRITIC_ONLY_KEY: float(self._critic_only),
            },
            key=module_id,
            window=1,
        )
        # compute_loss_for_module runs once per gradient step, so counting here counts steps.
        self.metrics.log_value((module_id, NUM_GRADIENT_STEPS_KEY), 1, reduce="sum")
        self.metrics.log_value(
            (module_id, NUM_GRADIENT_STEPS_LIFETIME_KEY), 1, reduce="lifetime_sum"
        )

    def compute_gradients(self, loss_per_module: dict[ModuleID, TensorType], **kwargs: Any) -> ParamDict:
        # In a critic-only step the actor's parameters get no gradient (None). RLlib's
        # apply_gradients cannot take None, and leaving them out lets Adam skip them.
        grads = super().compute_gradients(loss_per_module, **kwargs)
        return {pid: g for pid, g in grads.items() if g is not None}


# --------------------------------------------------------------------------- algorithm


class A2C(PPO):
    """Advantage actor-critic: one gradient step per on-policy batch of whole episodes."""

    @classmethod
    def get_default_config(cls) -> A2CConfig:
        return A2CConfig()

    def setup(self, config) -> None:
        super().setup(config)
        self.runner_balance = RunnerBalance() if self.config.balance_runners == "measured" else None

    def training_step(self) -> None:
        warmup = self._in_warmup()
        def sample():
            return synchronous_parallel_sample(
                worker_set=self.env_runner_group,
                max_env_steps=self.config.total_train_batch_size,
                sample_timeout_s=self.config.sample_timeout_s,
                random_actions=warmup,
                _uses_new_env_runners=True,
                _return_metrics=True,
            )

        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            episodes, runner_results = balanced_sample(self.env_runner_group, self.runner_balance, sample)
        if not episodes:
            return
        self.metrics.aggregate(runner_results, key=ENV_RUNNER_RESULTS)
        self.metrics.log_value(WARMUP_KEY, float(warmup), window=1)

        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self.learner_group.update(
                episodes=episodes,
                timesteps=self._timesteps(),
                num_epochs=1,
                minibatch_size=None,
                critic_only=warmup,
            )
            self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)

        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group,
                policies=set(learner_results[0].keys()) - {ALL_MODULES},
                inference_only=True,
            )

    def _in_warmup(self) -> bool:
        # An iteration is warm-up if it starts with fewer episodes sampled than asked for
        # (the last warm-up batch may overshoot). Read from the algorithm's metrics, which
        # are checkpointed with it, so a restored run does not repeat its warm-up.
        done = self.metrics.peek((ENV_RUNNER_RESULTS, NUM_EPISODES_LIFETIME), default=0)
        return done < self.config.warmup_episodes

    def _timesteps(self) -> dict[str, Any]:
        return {
            NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME)
            ),
            NUM_MODULE_STEPS_TRAINED_LIFETIME: self.metrics.peek(
                (LEARNER_RESULTS, ALL_MODULES, NUM_MODULE_STEPS_TRAINED_LIFETIME), default=0
            ),
        }
