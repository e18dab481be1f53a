"""TensorBoard diagnostics: the tags of a few fake iterations, NaN iterations, resume, and the per-band sums."""
from __future__ import annotations

import math

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from neon_ray.agent.callbacks import (ACTION_PREFIX, EPISODES_METRIC, SUM_METRICS, band_metric, iteration_means,
                                      progress_row, tolerance_band)
from neon_ray.agent.diagnostics import TrainingBoard, episode_actions, iteration_scalars
from neon_ray.pruning.episode_config import EpisodeConfig

EPISODE = EpisodeConfig(keep_rates=(1.0, 0.6), remove_layer_action=True)


def _result(episodes: list[tuple[float, float, float, float]], actions: dict[int, int]) -> dict:
    """A train() result as RLlib sums what PruningMetricsCallback logs: episodes are (tolerance, return, reduction, dacc)."""
    runners: dict[str, float] = {}

    def add(key, value):
        runners[key] = runners.get(key, 0.0) + value

    for tol, ret, red, dacc in episodes:
        for key, value in ((EPISODES_METRIC, 1.0), (SUM_METRICS["return_mean"], ret),
                           (SUM_METRICS["reduction_mean"], red), ("neon_log_reduction_sum", math.log(red)),
                           (SUM_METRICS["acc_change_pp_mean"], dacc)):
            add(key, value)
            add(band_metric(key, tolerance_band(tol)), value)
    for index, count in actions.items():
        runners[f"{ACTION_PREFIX}{index}"] = float(count)
    runners["num_env_steps_sampled"] = float(sum(actions.values()))
    learner = {"default_policy": {"total_loss": 0.5, "policy_loss": -0.1, "vf_loss": 1.2, "entropy": 0.69,
                                  "vf_explained_var": math.nan}}
    result = {"env_runners": runners or {EPISODES_METRIC: math.nan}, "learners": learner}
    result["neon"] = iteration_means(result)
    return result


def _write(board: TrainingBoard, iteration: int, result: dict) -> list[str]:
    return board.write(result, progress_row(result, iteration, 10 * iteration, 1.5, 3.0 * iteration))


def _read(log_dir) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def test_tolerance_bands_and_band_means():
    assert [tolerance_band(a) for a in (0.5, 2.0, 2.1, 10.0, 50.0)] == ["tol_le_2", "tol_le_2", "tol_2_10", "tol_2_10",
                                                                         "tol_gt_10"]
    means = _result([(1.0, 0.2, 2.0, -1.0), (1.5, 0.4, 4.0, -3.0), (20.0, 1.0, 8.0, -10.0)], {0: 3, 1: 5})["neon"]
    assert means["episodes"] == 3 and means["return_mean"] == pytest.approx(1.6 / 3)
    tight, loose, middle = means["bands"]["tol_le_2"], means["bands"]["tol_gt_10"], means["bands"]["tol_2_10"]
    assert tight["episodes"] == 2 and tight["return_mean"] == pytest.approx(0.3) and tight["reduction_mean"] == 3.0
    assert tight["reduction_geomean"] == pytest.approx(math.sqrt(8.0)) and tight["acc_change_pp_mean"] == -2.0
    assert loose["episodes"] == 1 and loose["reduction_mean"] == 8.0
    assert middle["episodes"] == 0 and math.isnan(middle["return_mean"])
    assert means["actions"] == {0: 3, 1: 5}


def test_writer_produces_the_expected_tags_and_skips_nan(tmp_path):
    first = _result([(1.0, 0.2, 2.0, -1.0), (20.0, 1.0, 8.0, -10.0)], {0: 2, 1: 5, 2: 1})
    empty = _result([], {})  # no finished episode (e.g. an EnvRunner was being restarted)
    third = _result([(5.0, 0.5, 3.0, -2.0)], {1: 4})
    with TrainingBoard(tmp_path, EPISODE) as board:
        tags = _write(board, 1, first)
        assert _write(board, 2, empty) == ["episodes/count", "episodes/env_steps", "time/iteration_s",
                                           "bands/tol_le_2/count", "bands/tol_2_10/count", "bands/tol_gt_10/count"]
        _write(board, 3, third)
    acc = _read(tmp_path)
    scalars = set(acc.Tags()["scalars"])
    expected = {"episodes/return_mean", "episodes/reduction_mean", "episodes/reduction_geomean",
                "episodes/acc_change_pp_mean", "episodes/count", "episodes/env_steps", "time/iteration_s",
                "actions/keep_1.00", "actions/keep_0.60", "actions/remove_layer",
                "learner/total_loss", "learner/policy_loss", "learner/vf_loss", "learner/entropy"}
    expected |= {f"bands/{b}/{k}" for b in ("tol_le_2", "tol_gt_10", "tol_2_10")
                 for k in ("return_mean", "reduction_mean", "acc_change_pp_mean", "count")}
    assert scalars == expected and set(tags) == (expected - {"bands/tol_2_10/return_mean", "bands/tol_2_10/reduction_mean",
                                                             "bands/tol_2_10/acc_change_pp_mean"}) | {"actions/keep_rate"}
    assert "learner/vf_explained_var" not in scalars  # NaN: left out
    returns = acc.Scalars("episodes/return_mean")
    assert [(e.step, e.value) for e in returns] == [(1, pytest.approx(0.6)), (3, pytest.approx(0.5))]  # step 2 skipped
    assert [e.step for e in acc.Scalars("episodes/count")] == [1, 2, 3]
    assert [e.value for e in acc.Scalars("actions/keep_0.60")] == [pytest.approx(5 / 8), 1.0]
    assert [e.step for e in acc.Scalars("learner/vf_loss")] == [1, 3]  # nothing trained at step 2: no stale loss
    histogram = acc.Histograms("actions/keep_rate")
    assert [h.step for h in histogram] == [1, 3]
    assert list(histogram[0].histogram_value.bucket_limit) == [0.0, 0.6, 1.0]
    assert list(histogram[0].histogram_value.bucket) == [1, 5, 2]


def test_a_resumed_board_replaces_the_steps_after_the_checkpoint(tmp_path):
    result = _result([(1.0, 0.2, 2.0, -1.0)], {0: 1})
    with TrainingBoard(tmp_path, EPISODE) as board:
        for iteration in (1, 2, 3, 4):  # a crash after iteration 4, the last checkpoint at 2
            _write(board, iteration, result)
    resumed = _result([(1.0, 0.9, 2.0, -1.0)], {0: 1})
    with TrainingBoard(tmp_path, EPISODE, first_iteration=3) as board:
        for iteration in (3, 4, 5):
            _write(board, iteration, resumed)
    returns = _read(tmp_path).Scalars("episodes/return_mean")
    assert [(e.step, round(e.value, 3)) for e in returns] == [(1, 0.2), (2, 0.2), (3, 0.9), (4, 0.9), (5, 0.9)]


def test_episode_actions_and_unknown_action_indices():
    assert episode_actions(EPISODE) == (("keep_1.00", 1.0), ("keep_0.60", 0.6), ("remove_layer", 0.0))
    result = _result([(1.0, 0.2, 2.0, -1.0)], {0: 1, 7: 1})
    scalars = iteration_scalars(result, progress_row(result, 1, 1, 1.0, 1.0), episode_actions(EPISODE))
    assert scalars["actions/keep_1.00"] == 0.5 and scalars["actions/action_7"] == 0.5
