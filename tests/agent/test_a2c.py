"""A2C on RLlib: the loss by hand, one gradient step per batch, warm-up, learning, checkpoints.

Unit tests build the learner directly (no Ray); integration tests share one local Ray.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.evaluation.postprocessing import Postprocessing

from neon_ray.agent.a2c import A2C, A2CConfig, a2c_loss
from neon_ray.agent.algos import load_policy, make_algo_config
from neon_ray.agent.export import export_from_algo
from neon_ray.errors import ConfigError
from toy_env import N_ACTIONS, ToyPruningEnv, expected_return

MID = "default_policy"
ENV = ToyPruningEnv()


# --------------------------------------------------------------------------- helpers


def _learner(**training):
    config = (
        A2CConfig()
        .environment(observation_space=ENV.observation_space, action_space=ENV.action_space)
        .rl_module(model_config={"fcnet_hiddens": [8], "vf_share_layers": False})
        .training(**training)
        .debugging(seed=0)
    )
    return config, config.build_learner(env=ENV)


def _obs(best: int, t: int) -> np.ndarray:
    obs = np.zeros(N_ACTIONS + 1, dtype=np.float32)
    obs[best] = 1.0
    obs[-1] = t / 4
    return obs


def _episode(bests: list[int], actions: list[int], rewards: list[float]) -> SingleAgentEpisode:
    ep = SingleAgentEpisode(observation_space=ENV.observation_space, action_space=ENV.action_space)
    ep.add_env_reset(observation=_obs(bests[0], 0))
    for t, (a, r) in enumerate(zip(actions, rewards)):
        done = t == len(actions) - 1
        ep.add_env_step(observation=_obs(bests[t + 1], t + 1), action=a, reward=r, terminated=done)
    return ep.to_numpy()


def _params(module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _is_actor(name: str) -> bool:
    return name.startswith(("encoder.actor_encoder", "pi."))


def _changed(before: dict, after: dict) -> set[str]:
    return {n for n in before if not torch.equal(before[n], after[n])}


def _peek(results: dict, key: str) -> float:
    return float(results[MID][key].peek())


# --------------------------------------------------------------------------- loss


def test_a2c_loss_matches_hand_computation():
    # Three real timesteps and one masked (artificial) one with absurd values.
    logp = torch.tensor([-1.0, -2.0, -0.5, -9.0])
    entropy = torch.tensor([1.5, 1.0, 0.5, 9.0])
    values = torch.tensor([0.5, 1.0, 2.0, 9.0])
    targets = torch.tensor([1.5, 0.0, 2.0, -9.0])
    adv = torch.tensor([1.0, -1.0, 0.0, 9.0])
    mask = torch.tensor([True, True, True, False])

    terms = a2c_loss(logp=logp, entropy=entropy, values=values, value_targets=targets,
                     advantages=adv, vf_loss_coeff=0.5, entropy_coeff=0.1, mask=mask)

    policy = (1.0 * 1.0 + (-1.0) * 2.0 + 0.0) / 3          # mean(-logp * A) = -1/3
    value = (1.0 + 1.0 + 0.0) / 3                          # mean((V - target)^2) = 2/3
    ent = (1.5 + 1.0 + 0.5) / 3                            # 1.0
    assert terms.policy.item() == pytest.approx(policy)
    assert terms.value.item() == pytest.approx(value)
    assert terms.entropy.item() == pytest.approx(ent)
    assert terms.total.item() == pytest.approx(policy + 0.5 * value - 0.1 * ent)

    critic = a2c_loss(logp=logp, entropy=entropy, values=values, value_targets=targets,
                      advantages=adv, vf_loss_coeff=0.5, entropy_coeff=0.1, mask=mask,
                      critic_only=True)
    assert critic.total.item() == pytest.approx(0.5 * value)


def test_advantages_are_constants_in_the_policy_gradient():
    values = torch.tensor([1.0, 2.0], requires_grad=True)
    logp = torch.tensor([-1.0, -1.0], requires_grad=True)
    terms = a2c_loss(logp=logp, entropy=torch.zeros(2), values=values,
                     value_targets=torch.tensor([3.0, 3.0]), advantages=3.0 - values,
                     vf_loss_coeff=0.5, entropy_coeff=0.0)
    terms.total.backward()
    # Only the value term reaches V: d/dV 0.5 * mean((V - 3)^2) = (V - 3) / 2.
    assert values.grad.tolist() == pytest.approx([-1.0, -0.5])


def _fixed_batch():
    obs = torch.as_tensor(np.stack([_obs(0, 0), _obs(3, 1), _obs(4, 2), _obs(4, 3)]))
    return {
        Columns.OBS: obs,
        Columns.ACTIONS: torch.tensor([0, 2, 4, 4]),
        Postprocessing.VALUE_TARGETS: torch.tensor([2.0, 1.5, 1.0, 0.0]),
        Postprocessing.ADVANTAGES: torch.tensor([9.0, 9.0, 9.0, 9.0]),  # ignored by default
        Columns.LOSS_MASK: torch.tensor([True, True, True, False]),
    }


def test_learner_loss_matches_torch_math_by_hand():
    config, learner = _learner(vf_loss_coeff=0.5, entropy_coeff=0.01)
    module = learner.module[MID]
    batch = _fixed_batch()
    loss = learner.compute_loss_for_module(
        module_id=MID, config=config, batch=batch, fwd_out=module.forward_train(batch))

    with torch.no_grad():
        logits = module.forward_train(batch)[Columns.ACTION_DIST_INPUTS]
        values = module.compute_values(batch)
    log_probs = torch.log_softmax(logits, dim=-1)
    logp = log_probs.gather(1, batch[Columns.ACTIONS][:, None]).squeeze(1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    targets = batch[Postprocessing.VALUE_TARGETS]
    per_step = -logp * (targets - values) + 0.5 * (values - targets) ** 2 - 0.01 * entropy
    assert loss.item() == pytest.approx(per_step[:3].mean().item(), rel=1e-5)


def test_normalize_advantages_uses_rllibs_standardised_column():
    config, learner = _learner(normalize_advantages=True, entropy_coeff=0.0, vf_loss_coeff=0.0)
    module = learner.module[MID]
    batch = _fixed_batch()
    loss = learner.compute_loss_for_module(
        module_id=MID, config=config, batch=batch, fwd_out=module.forward_train(batch))
    with torch.no_grad():
        logits = module.forward_train(batch)[Columns.ACTION_DIST_INPUTS]
    logp = torch.log_softmax(logits, -1).gather(1, batch[Columns.ACTIONS][:, None]).squeeze(1)
    assert loss.item() == pytest.approx((-logp[:3] * 9.0).mean().item(), rel=1e-5)


def test_importance_ratio_is_irrelevant():
    config, learner = _learner()
    module = learner.module[MID]

    def loss_and_grads(batch):
        module.zero_grad()
        loss = learner.compute_loss_for_module(
            module_id=MID, config=config, batch=batch, fwd_out=module.forward_train(batch))
        loss.backward()
        return loss.item(), [p.grad.clone() for p in module.parameters()]

    plain = _fixed_batch()
    stale = dict(plain)  # behaviour-policy outputs far from the current policy
    stale[Columns.ACTION_LOGP] = torch.tensor([-5.0, -0.1, -3.0, -2.0])
    stale[Columns.ACTION_DIST_INPUTS] = torch.randn(4, N_ACTIONS) * 10

    loss_a, grads_a = loss_and_grads(plain)
    loss_b, grads_b = loss_and_grads(stale)
    assert loss_a == loss_b
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))


def test_update_uses_monte_carlo_returns_and_takes_one_step():
    config, learner = _learner(gamma=0.9, vf_loss_coeff=0.5, entropy_coeff=0.0)
    module = learner.module[MID]
    bests, actions, rewards = [1, 2, 3, 0], [1, 0, 4], [1.0, 2.0, 3.0]
    returns = torch.tensor([1 + 0.9 * 2 + 0.81 * 3, 2 + 0.9 * 3, 3.0])
    obs = torch.as_tensor(np.stack([_obs(b, t) for t, b in enumerate(bests[:3])]))
    with torch.no_grad():
        values = module.compute_values({Columns.OBS: obs})
        logits = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    logp = torch.log_softmax(logits, -1)[torch.arange(3), torch.tensor(actions)]

    results = learner.update(episodes=[_episode(bests, actions, rewards)], timesteps={})

    assert _peek(results, "vf_loss") == pytest.approx(((values - returns) ** 2).mean().item(), rel=1e-5)
    assert _peek(results, "policy_loss") == pytest.approx(
        (-logp * (returns - values)).mean().item(), rel=1e-5)
    assert _peek(results, "num_gradient_steps") == 1
    steps = [state["step"].item() for state in learner.get_optimizer().state.values()]
    assert steps and all(s == 1 for s in steps)


def test_critic_only_update_leaves_the_actor_untouched():
    _, learner = _learner()
    module = learner.module[MID]
    before = _params(module)
    episode = _episode([1, 2, 3], [0, 0], [1.0, 0.5])

    results = learner.update(episodes=[episode], timesteps={}, critic_only=True)

    changed = _changed(before, _params(module))
    assert changed and not any(_is_actor(n) for n in changed)
    assert {n for n in before if not _is_actor(n)} == changed
    assert _peek(results, "critic_only") == 1.0
    # A normal update afterwards trains the actor again.
    learner.update(episodes=[episode], timesteps={})
    assert any(_is_actor(n) for n in _changed(before, _params(module)))


# --------------------------------------------------------------------------- config


def test_defaults_are_a2c():
    c = A2CConfig()
    assert (c.lr, c.gamma, c.lambda_, c.vf_loss_coeff, c.entropy_coeff, c.grad_clip) == (
        1e-3, 0.99, 1.0, 0.5, 0.01, 40.0)
    assert (c.num_epochs, c.minibatch_size, c.use_kl_loss) == (1, None, False)
    assert c.batch_mode == "complete_episodes" and c.warmup_episodes == 0
    A2CConfig().environment(ToyPruningEnv).validate()


@pytest.mark.parametrize(
    "training, match",
    [
        ({"num_epochs": 2}, "num_epochs must be 1"),
        ({"minibatch_size": 32}, "minibatch_size must be None"),
        ({"use_kl_loss": True}, "no KL term"),
        ({"use_critic": False}, "needs its critic"),
        ({"warmup_episodes": -1}, "warmup_episodes must be"),
    ],
)
def test_validation_rejects_non_a2c_settings(training, match):
    config = A2CConfig().environment(ToyPruningEnv).training(**training)
    with pytest.raises(ConfigError, match=match):
        config.validate()


def test_warmup_needs_separate_actor_and_critic():
    config = (A2CConfig().environment(ToyPruningEnv).training(warmup_episodes=4)
              .rl_module(model_config={"vf_share_layers": True}))
    with pytest.raises(ConfigError, match="separate actor and critic"):
        config.validate()


# --------------------------------------------------------------------------- on Ray


def _config(algo="a2c", **kw):
    kw = {"seed": 0, "hidden": (32,), "train_batch_size": 32, **kw}
    return make_algo_config(algo, ToyPruningEnv, {}, **kw).reporting(
        metrics_num_episodes_for_smoothing=16)


def _learner_state(algo):
    """(module parameters, Adam step per parameter) from the algorithm's learner."""
    def read(learner):
        steps = [s["step"].item() for s in learner.get_optimizer().state.values()]
        return _params(learner.module[MID]), steps
    return next(iter(algo.learner_group.foreach_learner(read))).get()


@pytest.mark.ray
def test_each_train_call_is_one_optimizer_step(ray_session):
    algo = _config().build_algo()
    try:
        for i in (1, 2, 3):
            result = algo.train()
            learner = result["learners"][MID]
            assert learner["num_gradient_steps"] == 1
            assert learner["num_gradient_steps_lifetime"] == i
            _, steps = _learner_state(algo)
            assert steps and all(s == i for s in steps)
    finally:
        algo.stop()


def _log_policy_sampled(*, env_runner, metrics_logger, samples, **_):
    # Episodes acted by the policy carry its log-probs; random warm-up actions do not.
    by_policy = all(Columns.ACTION_LOGP in ep.extra_model_outputs for ep in samples)
    metrics_logger.log_value("acted_by_policy", float(by_policy), window=1)


@pytest.mark.ray
def test_warmup_acts_randomly_and_trains_the_critic_only(ray_session):
    # 32-step batches of 4-step episodes: 8 episodes per iteration, 2 warm-up iterations.
    algo = _config(warmup_episodes=16).callbacks(on_sample_end=_log_policy_sampled).build_algo()
    try:
        start, _ = _learner_state(algo)
        for _ in range(2):
            result = algo.train()
            assert result["warmup"] == 1.0
            assert result["env_runners"]["acted_by_policy"] == 0.0
        warm, _ = _learner_state(algo)
        changed = _changed(start, warm)
        assert changed == {n for n in start if not _is_actor(n)}

        result = algo.train()
        assert result["warmup"] == 0.0
        assert result["env_runners"]["acted_by_policy"] == 1.0
        after, _ = _learner_state(algo)
        assert any(_is_actor(n) for n in _changed(warm, after))
    finally:
        algo.stop()


@pytest.mark.ray
def test_a2c_learns_the_toy_env(ray_session):
    algo = _config(lr=1e-2).build_algo()
    try:
        module = algo.get_module()
        probs = lambda obs: _probs(module, obs)  # noqa: E731
        before = expected_return(probs)
        first = algo.train()["env_runners"]["episode_return_mean"]
        for _ in range(39):
            result = algo.train()
        after = expected_return(lambda obs: _probs(algo.get_module(), obs))
        last = result["env_runners"]["episode_return_mean"]
    finally:
        algo.stop()
    # A uniform policy earns 2.4, the optimal one 4.0.
    assert after > before + 0.4, (before, after)
    assert last > first + 0.3, (first, last)


def _probs(module, obs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        logits = module.forward_inference({Columns.OBS: torch.as_tensor(obs)[None]})[
            Columns.ACTION_DIST_INPUTS][0]
    return torch.softmax(logits, -1).numpy()


@pytest.mark.ray
def test_ppo_smoke(ray_session):
    algo = _config("ppo").build_algo()
    try:
        for _ in range(2):
            result = algo.train()
    finally:
        algo.stop()
    learner = result["learners"][MID]
    assert math.isfinite(learner["policy_loss"]) and math.isfinite(learner["vf_loss"])
    assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 64


@pytest.mark.ray
def test_checkpoint_round_trip_gives_the_same_greedy_actions(ray_session, tmp_path):
    algo = _config(lr=1e-2).build_algo()
    try:
        for _ in range(5):
            algo.train()
        ckpt = algo.save_to_path(str(tmp_path / "ckpt"))
        export_from_algo(algo, ckpt, "a2c")  # what training writes next to each checkpoint
        module = algo.get_module()
        observations = [_obs(b, t) for b in range(N_ACTIONS) for t in range(4)]
        expected = [int(np.argmax(_probs(module, o))) for o in observations]
    finally:
        algo.stop()

    policy = load_policy(ckpt, seed=3)
    assert [policy(o) for o in observations] == expected
    restored = A2C.from_checkpoint(ckpt)
    try:
        assert [int(np.argmax(_probs(restored.get_module(), o))) for o in observations] == expected
    finally:
        restored.stop()
    sampled = [policy(o, greedy=False) for o in observations]
    assert all(0 <= a < N_ACTIONS for a in sampled)
    again = load_policy(ckpt, seed=3)
    assert sampled == [again(o, greedy=False) for o in observations]
    # Non-greedy actions follow the policy's probabilities.
    obs = observations[0]
    counts = np.bincount([policy(obs, greedy=False) for _ in range(2000)], minlength=N_ACTIONS)
    np.testing.assert_allclose(counts / 2000, policy.action_probs(obs), atol=0.05)
