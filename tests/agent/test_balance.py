"""Runner balance: shares inverse to measured seconds per step (unit), and a 2-runner A2C that measures them (Ray)."""
from __future__ import annotations

import math

import pytest

from neon_ray.agent.algos import make_algo_config
from neon_ray.agent.balance import SMOOTHING, RunnerBalance
from neon_ray.errors import ConfigError
from test_algos import toy_env_by_value  # noqa: F401  (fixture)
from toy_env import ToyPruningEnv


def test_shares_are_inverse_to_seconds_per_step_once_every_runner_was_measured():
    balance = RunnerBalance()
    balance.update([(1, 30, 3.0)])
    assert balance.shares([1, 2]) is None  # runner 2 not measured yet: the runners' own prior
    balance.update([(2, 10, 2.0), (3, 0, 1.0), (4, 5, 0.0)])  # empty calls teach nothing
    assert set(balance.seconds_per_step) == {1, 2}
    shares = balance.shares([1, 2])
    assert math.isclose(sum(shares.values()), 1.0) and math.isclose(shares[1] / shares[2], 0.2 / 0.1)
    balance.update([(1, 10, 3.0)])  # 0.3 s per step now: smoothed, not replaced
    assert math.isclose(balance.seconds_per_step[1], (1 - SMOOTHING) * 0.1 + SMOOTHING * 0.3)


def test_balance_mode_is_checked():
    with pytest.raises(ConfigError, match="balance_runners must be one of"):
        make_algo_config("a2c", ToyPruningEnv, balance_runners="fastest").validate()


@pytest.mark.ray
@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["measured", "model"])
def test_two_runners_measure_their_cost_and_sample_their_shares(ray_session, toy_env_by_value, mode):
    config = make_algo_config("a2c", ToyPruningEnv, num_env_runners=2, cpu_budget=2.0, num_cpus_per_env_runner=0.5,
                              train_batch_size=24, seed=0, balance_runners=mode)
    algo = config.build_algo()
    try:
        algo.train(), algo.train()
        balance = algo.runner_balance
        sampled = algo.env_runner_group.foreach_env_runner(lambda w: w.last_sample(), local_env_runner=False)
    finally:
        algo.stop()
    assert sorted(w for w, _, _ in sampled) == [1, 2] and all(steps >= 4 for _, steps, _ in sampled)
    if mode == "model":
        assert balance is None  # nothing measured: every batch split by the prior
    else:
        shares = balance.shares([1, 2])
        assert math.isclose(sum(shares.values()), 1.0) and all(0 < s < 1 for s in shares.values())
