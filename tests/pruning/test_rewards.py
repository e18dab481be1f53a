"""Rewards: every branch of NEON's table (method.md §6), its 2020 variant, and the composite."""
from __future__ import annotations

import math
import pickle

import pytest

from neon_ray.errors import ConfigError
from neon_ray.pruning.rewards import NEON_MAX_ABS, REWARD_NAMES, StepOutcome, get_reward


def outcome(keep=0.8, orig=0.90, now=0.90, a=1.0, **kw) -> StepOutcome:
    base = dict(keep_rate=keep, acc_orig=orig, acc_before=orig, acc_now=now, params_orig=1000, params_before=1000, params_after=800, tolerance=a)
    base.update(kw)
    return StepOutcome(**base)


# (keep, acc_orig, acc_now, a, expected): s = 100 * (1 - keep)
NEON_TABLE = [
    (0.8, 0.90, 0.85, 1.0, -8000.0),  # D = -5 < -a: -s^3
    (0.8, 0.90, 0.89, 1.0, 20.0),  # D = -1 == -a: s (boundary, not a penalty)
    (0.8, 0.90, 0.895, 1.0, 20.0),  # -a < D < 0: s
    (0.8, 0.90, 0.90, 1.0, 20.0),  # D == 0: s (boundary, not a bonus)
    (0.8, 0.90, 0.905, 1.0, 8000.0),  # 0 < D <= a: +s^3 for neon
    (0.8, 0.90, 0.95, 1.0, 8000.0),  # D > a: +s^3
    (0.6, 0.90, 0.40, 50.0, 20.0 * 2),  # D = -50 == -a with a = 50: s = 40
    (0.6, 0.90, 0.39, 50.0, -64000.0),  # D = -51 < -50
    (0.9, 0.73, 0.72, 1.0, 10.0),  # another exact -a boundary with float-unfriendly values
    (0.7, 0.90, 0.90, 0.0, 30.0),  # a = 0, D = 0: s
    (0.7, 0.90, 0.8999, 0.0, -27000.0),  # a = 0, any drop is a penalty
]


@pytest.mark.parametrize("keep,orig,now,a,expected", NEON_TABLE)
def test_neon_table(keep, orig, now, a, expected):
    assert get_reward("neon")(outcome(keep, orig, now, a)) == pytest.approx(expected)


@pytest.mark.parametrize("orig,now", [(0.9, 0.5), (0.9, 0.9), (0.9, 0.99)])
def test_keep_rate_one_always_gives_zero(orig, now):
    for name in REWARD_NAMES:
        assert get_reward(name)(outcome(1.0, orig, now, params_after=1000)) == 0.0


@pytest.mark.parametrize(
    "orig,now,expected",
    [
        (0.90, 0.85, -8000.0),  # D < -a
        (0.90, 0.89, 20.0),  # D == -a
        (0.90, 0.90, 20.0),  # D == 0
        (0.90, 0.905, 20.0),  # 0 < D < a: only s in the 2020 variant
        (0.90, 0.91, 20.0),  # D == +a: still s
        (0.90, 0.92, 8000.0),  # D > a: +s^3
    ],
)
def test_neon2020_table(orig, now, expected):
    assert get_reward("neon2020")(outcome(0.8, orig, now, 1.0)) == pytest.approx(expected)


def test_scale_divides_and_64000_normalises_the_largest_default_magnitude():
    r = get_reward("neon", scale=NEON_MAX_ABS)
    assert r(outcome(0.6, 0.9, 0.5, 1.0)) == pytest.approx(-1.0)
    assert r(outcome(0.6, 0.9, 0.95, 1.0)) == pytest.approx(1.0)
    assert r(outcome(0.9, 0.9, 0.9, 1.0)) == pytest.approx(10.0 / 64000)
    assert get_reward("neon2020", scale=2)(outcome(0.8, 0.9, 0.9)) == pytest.approx(10.0)


def test_remove_layer_step_size_is_the_parameter_share_removed():
    o = outcome(keep=1.0, orig=0.9, now=0.9, removed_layer=True, params_before=1000, params_after=700)
    assert o.step_size == pytest.approx(30.0)
    assert get_reward("neon")(o) == pytest.approx(30.0)
    drop = outcome(keep=1.0, orig=0.9, now=0.8, removed_layer=True, params_before=1000, params_after=700)
    assert get_reward("neon")(drop) == pytest.approx(-27000.0)


def _composite_outcome(**kw) -> StepOutcome:
    base = dict(
        keep=0.5, orig=0.90, now=0.90, a=1.0, acc_before=0.90, params_before=1000, params_after=600,
        flops_orig=2000, flops_before=2000, flops_after=1000, latency_orig=2.0, latency_before=2.0, latency_after=1.5,
        memory_orig=4000, memory_before=4000, memory_after=3000, f1_orig=0.80, f1_before=0.80, f1_now=0.70,
    )
    base.update(kw)
    keep, orig, now, a = base.pop("keep"), base.pop("orig"), base.pop("now"), base.pop("a")
    return outcome(keep, orig, now, a, **base)


def test_composite_weights_each_relative_reduction():
    o = _composite_outcome()
    assert get_reward("composite", w_metric=1, w_params=1)(o) == pytest.approx(0.4)
    assert get_reward("composite", w_params=0, w_flops=1)(o) == pytest.approx(0.5)
    assert get_reward("composite", w_params=0, w_latency=2)(o) == pytest.approx(2 * 0.25)
    assert get_reward("composite", w_params=0, w_memory=1)(o) == pytest.approx(0.25)
    both = get_reward("composite", w_params=0.5, w_flops=0.5, w_latency=0.5, w_memory=0.5, scale=2)
    assert both(o) == pytest.approx((0.2 + 0.25 + 0.125 + 0.125) / 2)


def test_composite_accuracy_change_is_relative_to_the_previous_step():
    o = _composite_outcome(acc_before=0.92, now=0.905)
    assert get_reward("composite", w_metric=10, w_params=0)(o) == pytest.approx(10 * (0.905 - 0.92))


def test_composite_penalty_only_beyond_tolerance():
    at_edge = _composite_outcome(now=0.89)  # D == -a: no penalty
    assert get_reward("composite", w_params=0, w_metric=0)(at_edge) == pytest.approx(0.0)
    beyond = _composite_outcome(now=0.86)  # D = -4, 3 pp beyond a
    r = get_reward("composite", w_params=0, w_metric=0, penalty=1.0, penalty_per_pp=0.1)
    assert r(beyond) == pytest.approx(-(1.0 + 0.3))


def test_composite_on_macro_f1():
    o = _composite_outcome(now=0.95)  # accuracy rose but F1 fell by 10 pp, far beyond a = 1
    r = get_reward("composite", metric="f1", w_metric=1, w_params=0, penalty=2.0, penalty_per_pp=0.0)
    assert r(o) == pytest.approx(-0.1 - 2.0)
    assert r.needs == {"f1"}
    with pytest.raises(ConfigError, match="macro-F1 was not measured"):
        r(outcome(0.5, 0.9, 0.9))


def test_composite_needs_only_what_its_weights_use():
    assert get_reward("composite").needs == frozenset()
    assert get_reward("composite", w_flops=1, w_latency=0.5).needs == {"flops", "latency"}
    with pytest.raises(ConfigError, match="flops was not measured"):
        get_reward("composite", w_flops=1)(outcome(0.5))


def test_registry_errors_name_the_choices():
    with pytest.raises(ConfigError, match=r"unknown reward 'nope'.*composite.*neon.*neon2020"):
        get_reward("nope")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['alpha'\].*scale"):
        get_reward("neon", alpha=1)
    with pytest.raises(ConfigError, match="scale must be a positive"):
        get_reward("neon", scale=0)
    with pytest.raises(ConfigError, match="metric must be"):
        get_reward("composite", metric="auc")


def test_rewards_pickle_for_ray_workers():
    r = get_reward("neon", scale=10.0)
    assert pickle.loads(pickle.dumps(r))(outcome()) == r(outcome())


def test_guarded_pays_the_log_shrink_of_the_best_network_within_tolerance():
    reward = get_reward("guarded")
    shrunk = outcome(keep=0.5, orig=0.9, now=0.895, a=1, best_params_before=1000, best_params_after=500)
    assert reward(shrunk) == pytest.approx(math.log(2.0))
    # outside the tolerance: the best stays, and the step pays the penalty
    outside = outcome(keep=0.5, orig=0.9, now=0.85, a=1, best_params_before=1000, best_params_after=1000)
    assert reward(outside) == pytest.approx(-0.1)
    assert get_reward("guarded", penalty=0.0, scale=2.0)(shrunk) == pytest.approx(math.log(2.0) / 2)
    assert reward(outcome(keep=1.0, orig=0.9, now=0.5, a=1, best_params_before=10, best_params_after=10)) == 0.0


def test_guarded_rewards_of_an_episode_add_up_to_the_log_reduction_of_what_the_guard_returns():
    best = [1000, 600, 600, 300, 300]  # step 2 left the tolerance, step 4 came back smaller
    accs = [0.9, 0.895, 0.80, 0.892, 0.70]
    reward = get_reward("guarded", penalty=0.0)
    total = sum(reward(outcome(keep=0.7, orig=0.9, now=accs[i + 1], a=1, best_params_before=best[i], best_params_after=best[i + 1]))
                for i in range(4))
    assert total == pytest.approx(math.log(1000 / 300))


def test_guarded_refuses_a_bad_penalty_and_missing_best_counts():
    with pytest.raises(ConfigError, match="penalty"):
        get_reward("guarded", penalty=-1)
    with pytest.raises(ConfigError, match="best_params"):
        get_reward("guarded")(outcome(keep=0.5, orig=0.9, now=0.9, a=1))


def test_guarded_per_tolerance_divides_by_log_one_plus_a():
    step = dict(keep=0.5, orig=0.9, now=0.9, best_params_before=1000, best_params_after=500)
    for a in (1.0, 50.0):
        assert get_reward("guarded", per_tolerance=True)(outcome(a=a, **step)) == pytest.approx(math.log(2) / math.log1p(a))
    with pytest.raises(ConfigError, match="per_tolerance"):
        get_reward("guarded", per_tolerance="yes")
    assert get_reward("guarded", per_tolerance=1.0)(outcome(a=1.0, keep=0.5, best_params_before=2, best_params_after=1)) > 0
