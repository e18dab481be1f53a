"""make_algo_config defaults, CPU budgeting, SeedOnceEnvRunner and load_policy."""
from __future__ import annotations

import math

import numpy as np
import pytest

from neon_ray.agent.a2c import A2C, A2CConfig
from neon_ray.agent.algos import (
    LoadedPolicy,
    SeedOnceEnvRunner,
    load_policy,
    make_algo_config,
    trial_cpus,
)
from neon_ray.agent.export import POLICY_SUBDIR, export_policy
from neon_ray.errors import CheckpointError, ConfigError
from toy_env import N_ACTIONS, ToyPruningEnv


def test_a2c_config():
    c = make_algo_config("a2c", ToyPruningEnv, {"episode_len": 3}, seed=7, hidden=(16, 8),
                         train_batch_size=12, warmup_episodes=5)
    assert c.algo_class is A2C and isinstance(c, A2CConfig)
    assert (c.lr, c.gamma, c.entropy_coeff, c.lambda_) == (1e-3, 0.99, 0.01, 1.0)
    assert (c.num_epochs, c.minibatch_size, c.warmup_episodes) == (1, None, 5)
    assert c.batch_mode == "complete_episodes" and c.sample_timeout_s == 600.0
    assert c.env_runner_cls is SeedOnceEnvRunner
    assert c.train_batch_size_per_learner == 12 and c.seed == 7
    assert c.env_config == {"episode_len": 3}
    assert c.model_config["fcnet_hiddens"] == [16, 8]
    assert c.model_config["vf_share_layers"] is False
    c.validate()


def test_ppo_config_follows_the_method():
    c = make_algo_config("ppo", ToyPruningEnv)
    assert (c.lr, c.gamma, c.clip_param, c.entropy_coeff) == (3e-4, 0.99, 0.2, 0.01)
    assert c.use_kl_loss is False and math.isinf(c.vf_clip_param)
    assert (c.num_epochs, c.minibatch_size) == (4, None)
    assert c.batch_mode == "complete_episodes" and c.sample_timeout_s == 600.0
    c.validate()
    assert make_algo_config("ppo", ToyPruningEnv, lr=1e-4).lr == 1e-4


def test_bad_choices_are_config_errors():
    with pytest.raises(ConfigError, match="unknown algorithm 'dqn'"):
        make_algo_config("dqn", ToyPruningEnv)
    with pytest.raises(ConfigError, match="warmup_episodes is an A2C option"):
        make_algo_config("ppo", ToyPruningEnv, warmup_episodes=3)


def test_trial_cpus_lets_two_trials_share_two_cpus():
    assert trial_cpus(make_algo_config("a2c", ToyPruningEnv)) == 0.5
    one_runner = make_algo_config("a2c", ToyPruningEnv, num_env_runners=1, cpu_budget=1.0)
    assert trial_cpus(one_runner) == 1.0
    big = make_algo_config("ppo", ToyPruningEnv, num_env_runners=2, num_cpus_per_env_runner=1)
    assert trial_cpus(big) == 2.5


def test_cpu_budget_is_enforced():
    with pytest.raises(ConfigError, match="reserve 1.5 CPUs .* budget is 1"):
        make_algo_config("a2c", ToyPruningEnv, num_env_runners=2, cpu_budget=1.0)


def test_load_policy_without_ray(tmp_path):
    # load_policy reads the pickle-free export (policy.json + policy.pt), not RLlib's checkpoint
    env = ToyPruningEnv()
    module = make_algo_config("a2c", ToyPruningEnv, seed=0).get_rl_module_spec(env=env).build()
    export_policy(module, tmp_path, "a2c")
    policy = load_policy(tmp_path, seed=0)

    obs, _ = env.reset(seed=1)
    probs = policy.action_probs(obs)
    assert probs.shape == (N_ACTIONS,) and probs.sum() == pytest.approx(1.0)
    assert policy(obs) == int(np.argmax(probs))
    np.testing.assert_array_equal(probs, LoadedPolicy(module).action_probs(obs))


def test_load_policy_names_a_bad_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="has no safe policy export"):
        load_policy(tmp_path)
    # an RLlib checkpoint alone is refused, not unpickled
    module = make_algo_config("a2c", ToyPruningEnv, seed=0).get_rl_module_spec(env=ToyPruningEnv()).build()
    module.save_to_path(tmp_path / POLICY_SUBDIR)
    with pytest.raises(CheckpointError, match="holds an RLlib checkpoint but no safe policy export"):
        load_policy(tmp_path)


def _episodes(algo, n: int, random_actions: bool) -> list[tuple[tuple[int, ...], ...]]:
    """(best buckets, actions) of the next n episodes the local EnvRunner samples."""
    out = []
    for _ in range(n):
        ep = algo.env_runner.sample(random_actions=random_actions)[0]
        bests = np.argmax(np.asarray(ep.get_observations())[:, :N_ACTIONS], 1)
        out.append((tuple(bests.tolist()), tuple(np.asarray(ep.get_actions()).tolist())))
    return out


@pytest.mark.ray
def test_seeded_sampling_varies_between_calls_and_reproduces(ray_session):
    runs = []
    for _ in range(2):
        algo = make_algo_config("a2c", ToyPruningEnv, seed=0).build_algo()
        try:
            runs.append(_episodes(algo, 4, random_actions=True) + _episodes(algo, 4, False))
        finally:
            algo.stop()
    observed = [bests for bests, _ in runs[0]]
    assert len(set(observed)) == len(observed), observed  # RLlib alone replays one episode
    assert runs[0] == runs[1]  # including the random (warm-up) actions


@pytest.fixture
def toy_env_by_value():
    """Ship toy_env's code to remote EnvRunners, which cannot import the tests folder."""
    import ray.cloudpickle
    import toy_env

    ray.cloudpickle.register_pickle_by_value(toy_env)
    yield
    ray.cloudpickle.unregister_pickle_by_value(toy_env)


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_remote_runner_within_budget_trains_with_warmup(ray_session, toy_env_by_value):
    # One 0.5-CPU runner plus the 0.5-CPU main process: fits beside a second such trial.
    config = make_algo_config("a2c", ToyPruningEnv, num_env_runners=1, cpu_budget=1.0,
                              train_batch_size=16, warmup_episodes=4, seed=0)
    algo = config.build_algo()
    try:
        warm, trained = algo.train(), algo.train()
    finally:
        algo.stop()
    assert (warm["warmup"], trained["warmup"]) == (1.0, 0.0)
    assert warm["learners"]["default_policy"]["critic_only"] == 1.0
    assert trained["learners"]["default_policy"]["num_gradient_steps_lifetime"] == 2


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_a_remote_runner_samples_its_share_of_the_batch_in_one_call(ray_session, toy_env_by_value):
    config = make_algo_config("a2c", ToyPruningEnv, num_env_runners=1, cpu_budget=1.0, train_batch_size=16, seed=0)
    algo = config.build_algo()
    try:
        [(steps, done)] = algo.env_runner_group.foreach_env_runner(
            lambda w: (lambda eps: (sum(len(e) for e in eps), all(e.is_done for e in eps)))(w.sample()),
            local_env_runner=False)
    finally:
        algo.stop()
    assert steps >= 16 and done  # the whole batch, in complete episodes, from one round
