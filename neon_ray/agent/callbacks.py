"""Per-episode training figures: logged on the EnvRunners, added up by RLlib, turned into per-iteration means.

`PruningMetricsCallback.on_episode_end` logs each finished episode's return, parameter
reduction and accuracy change as sums and counts, which RLlib adds up exactly across runners
(it would merge means as a mean of means); `on_train_result` turns them into per-iteration
means under `result["neon"]`, so the same figures reach progress.csv, Ray Tune and
TensorBoard. `means_from_sums` is that division, shared with the sweep summary.

The same sums are also logged per tolerance band (`TOLERANCE_BANDS`: an agent trained on a
range of tolerances can be good at loose ones and bad at tight ones, which the overall mean
hides) and, per action index, the number of times the action was chosen.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS

from neon_ray.errors import NeonRayError

EPISODES_METRIC = "neon_episodes"
"""Summed metric: episodes finished."""
SUM_METRICS = {"return_mean": "neon_return_sum", "reduction_mean": "neon_reduction_sum",
               "acc_change_pp_mean": "neon_acc_change_pp_sum"}
"""Per-episode mean -> the summed metric it divides."""
LOG_REDUCTION_METRIC = "neon_log_reduction_sum"
"""Summed metric whose mean is the log of the geometric mean reduction."""
ACTION_PREFIX = "neon_action_"
"""Summed metric `neon_action_{i}`: steps that chose action i."""
TOLERANCE_BANDS = (("tol_le_2", 2.0), ("tol_2_10", 10.0), ("tol_gt_10", math.inf))
"""(band name, upper bound in pp): a <= 2, 2 < a <= 10, a > 10."""


def tolerance_band(tolerance: float) -> str:
    """The name of the band of TOLERANCE_BANDS that holds `tolerance` (pp)."""
    return next(name for name, upper in TOLERANCE_BANDS if tolerance <= upper)


def band_metric(metric: str, band: str) -> str:
    """The summed metric `metric` restricted to the episodes of tolerance band `band`."""
    return f"{metric}__{band}"


class PruningMetricsCallback(RLlibCallback):
    """Logs each finished episode's return, parameter reduction and accuracy change (see the module docstring)."""

    def on_episode_end(self, *, episode, metrics_logger=None, prev_episode_chunks=None, **kwargs) -> None:
        info = episode.get_infos(-1)
        missing = [k for k in ("params", "params_orig", "val_acc", "val_acc_orig", "tolerance") if k not in info]
        if missing:
            raise NeonRayError(f"PruningMetricsCallback: the env's last info lacks {missing}; is the env a PruningEnv?")
        ret = float(episode.get_return()) + sum(float(c.get_return()) for c in prev_episode_chunks or ())
        reduction = info["params_orig"] / max(info["params"], 1)
        values = {
            EPISODES_METRIC: 1.0,
            SUM_METRICS["return_mean"]: ret,
            SUM_METRICS["reduction_mean"]: reduction,
            LOG_REDUCTION_METRIC: math.log(reduction),
            SUM_METRICS["acc_change_pp_mean"]: 100.0 * (info["val_acc"] - info["val_acc_orig"]),
        }
        band = tolerance_band(float(info["tolerance"]))
        values.update({band_metric(key, band): value for key, value in list(values.items())})
        for action in info.get("actions", ()):  # the whole episode's, also across chunks
            values[f"{ACTION_PREFIX}{int(action)}"] = values.get(f"{ACTION_PREFIX}{int(action)}", 0.0) + 1.0
        for key, value in values.items():
            metrics_logger.log_value(key, value, reduce="sum")

    def on_train_result(self, *, algorithm=None, metrics_logger=None, result: dict, **kwargs) -> None:
        result["neon"] = iteration_means(result)


def count_metric(value: Any) -> int:
    """A metric that counts something, as an int: 0 when missing, NaN or not a number.

    RLlib reports NaN for a summed metric nobody logged this iteration (e.g. no episode finished
    because an EnvRunner was restarted after a memory kill).
    """
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0
    return int(round(value)) if math.isfinite(value) and value > 0 else 0


def means_from_sums(episodes: float, total: Callable[[str], Any]) -> dict:
    """Mean return / reduction / geometric-mean reduction / accuracy change of `episodes` episodes,
    where `total(metric)` is the sum of a summed metric over them (NaN when there are none)."""
    def mean(metric: str) -> float:
        try:
            return float(total(metric)) / episodes if episodes else math.nan
        except (TypeError, ValueError):
            return math.nan

    return {
        "return_mean": mean(SUM_METRICS["return_mean"]),
        "reduction_mean": mean(SUM_METRICS["reduction_mean"]),
        "reduction_geomean": math.exp(mean(LOG_REDUCTION_METRIC)) if episodes else math.nan,
        "acc_change_pp_mean": mean(SUM_METRICS["acc_change_pp_mean"]),
    }


def iteration_means(result: dict) -> dict:
    """This iteration's episode count and mean return / reduction / accuracy change (0 and NaN if none),
    the same per tolerance band under "bands", and under "actions" {action index: times chosen}."""
    runners = result.get(ENV_RUNNER_RESULTS) or {}

    def means(suffix: Callable[[str], str]) -> dict:
        n = count_metric(runners.get(suffix(EPISODES_METRIC), 0))
        return {"episodes": n, **means_from_sums(n, lambda metric: runners.get(suffix(metric), 0.0))}

    actions = {int(key[len(ACTION_PREFIX):]): count_metric(value) for key, value in runners.items()
               if isinstance(key, str) and key.startswith(ACTION_PREFIX) and key[len(ACTION_PREFIX):].isdigit()}
    return {**means(lambda metric: metric),
            "bands": {band: means(lambda metric, band=band: band_metric(metric, band)) for band, _ in TOLERANCE_BANDS},
            "actions": dict(sorted(actions.items()))}


def progress_row(result: dict, iteration: int, episodes_total: int, seconds: float, time_total: float) -> dict:
    """One progress.csv row (run_dir.PROGRESS_COLUMNS) from an algo.train() result."""
    means = result.get("neon") or iteration_means(result)
    runners = result.get(ENV_RUNNER_RESULTS) or {}
    return {
        "iteration": iteration,
        "episodes_total": episodes_total,
        "episodes": means["episodes"],
        "env_steps": count_metric(runners.get("num_env_steps_sampled", 0)),
        "return_mean": means["return_mean"],
        "reduction_mean": means["reduction_mean"],
        "reduction_geomean": means["reduction_geomean"],
        "acc_change_pp_mean": means["acc_change_pp_mean"],
        "warmup": int(bool(result.get("warmup", 0.0))),
        "seconds": round(seconds, 3),
        "time_total_s": round(time_total, 3),
    }
