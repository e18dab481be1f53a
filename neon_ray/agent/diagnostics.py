"""TensorBoard diagnostics of a training run: RUN/tensorboard/, one global step per training iteration.

    with TrainingBoard(run.tensorboard, cfg.episode, first_iteration=algo.iteration + 1) as board:
        board.write(result, row)          # after each algo.train(); flushed at once

Tags (`iteration_scalars`): `episodes/{return_mean,reduction_mean,reduction_geomean,
acc_change_pp_mean,count,env_steps}`; per tolerance band (callbacks.TOLERANCE_BANDS)
`bands/{band}/{return_mean,reduction_mean,acc_change_pp_mean,count}`; the share of steps
that chose each action, `actions/{keep_0.60,...,remove_layer}`, and the histogram
`actions/keep_rate` of the chosen keep-rates (remove-layer counts as 0); the learner's
`learner/{total_loss,policy_loss,vf_loss,entropy,vf_explained_var}`; `time/iteration_s`.

A figure that is NaN (an iteration in which no episode finished, e.g. while RLlib restarts a
lost EnvRunner, has no means) is left out rather than written, so the curves skip it instead of
breaking. A resumed run starts a new event file whose first event tells TensorBoard to drop the
older files' events from the resumed iteration on (`purge_step`), as progress.csv is cut back
to the checkpoint: every step appears once.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.utils.metrics import LEARNER_RESULTS
from torch.utils.tensorboard import SummaryWriter

from neon_ray.agent.callbacks import iteration_means
from neon_ray.pruning.episode_config import EpisodeConfig

EPISODE_FIGURES = ("return_mean", "reduction_mean", "reduction_geomean", "acc_change_pp_mean")
BAND_FIGURES = ("return_mean", "reduction_mean", "acc_change_pp_mean")
LEARNER_FIGURES = ("total_loss", "policy_loss", "vf_loss", "entropy", "vf_explained_var")
REMOVE_LAYER = "remove_layer"


def episode_actions(episode: EpisodeConfig) -> tuple[tuple[str, float], ...]:
    """(name, keep-rate) of each action index: `keep_0.60` per keep-rate, then `remove_layer` (as keep-rate 0)."""
    actions = tuple((f"keep_{float(rate):.2f}", float(rate)) for rate in episode.keep_rates)
    return actions + (((REMOVE_LAYER, 0.0),) if episode.remove_layer_action else ())


def iteration_scalars(result: dict, row: dict, actions: Sequence[tuple[str, float]]) -> dict[str, float]:
    """TensorBoard tag -> value for one iteration (an algo.train() result and its progress.csv row); no NaN.

    `actions`: episode_actions(), which names the action indices."""
    means = result.get("neon") or iteration_means(result)
    scalars = {f"episodes/{k}": means[k] for k in EPISODE_FIGURES}
    scalars["episodes/count"] = means["episodes"]
    scalars["episodes/env_steps"] = row["env_steps"]
    scalars["time/iteration_s"] = row["seconds"]
    for band, figures in means.get("bands", {}).items():
        scalars.update({f"bands/{band}/{k}": figures[k] for k in BAND_FIGURES})
        scalars[f"bands/{band}/count"] = figures["episodes"]
    counts = means.get("actions", {})
    chosen = sum(counts.values())
    for index, count in counts.items():
        scalars[f"actions/{_action(actions, index)[0]}"] = count / chosen if chosen else math.nan
    if row["env_steps"]:  # nothing was trained on an iteration that sampled nothing: no stale losses
        learner = (result.get(LEARNER_RESULTS) or {}).get(DEFAULT_MODULE_ID) or {}
        scalars.update({f"learner/{k}": learner.get(k, math.nan) for k in LEARNER_FIGURES})
    return {tag: float(value) for tag, value in scalars.items() if _finite(value)}


def keep_rate_counts(result: dict, actions: Sequence[tuple[str, float]]) -> dict[float, int]:
    """{keep-rate: times chosen} this iteration, in increasing keep-rate (remove-layer as 0)."""
    counts: dict[float, int] = {}
    for index, count in ((result.get("neon") or iteration_means(result)).get("actions", {})).items():
        rate = _action(actions, index)[1]
        if count and math.isfinite(rate):
            counts[rate] = counts.get(rate, 0) + count
    return dict(sorted(counts.items()))


class TrainingBoard:
    """Writes each iteration's figures (see the module docstring) to TensorBoard event files under `log_dir`."""

    def __init__(self, log_dir: Path, episode: EpisodeConfig, first_iteration: int = 1) -> None:
        self.actions = episode_actions(episode)
        # purge_step hides what an earlier, interrupted writer left from first_iteration on
        self._writer = SummaryWriter(str(log_dir), purge_step=first_iteration if first_iteration > 1 else None)

    def write(self, result: dict, row: dict) -> list[str]:
        """Write iteration row["iteration"]'s figures and flush; returns the tags written."""
        step = int(row["iteration"])
        scalars = iteration_scalars(result, row, self.actions)
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, value, global_step=step)
        tags = list(scalars)
        counts = keep_rate_counts(result, self.actions)
        if counts:
            rates, n = list(counts), list(counts.values())
            self._writer.add_histogram_raw(
                "actions/keep_rate", min=rates[0], max=rates[-1], num=sum(n),
                sum=sum(r * c for r, c in counts.items()), sum_squares=sum(r * r * c for r, c in counts.items()),
                bucket_limits=rates, bucket_counts=n, global_step=step)
            tags.append("actions/keep_rate")
        self._writer.flush()
        return tags

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "TrainingBoard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _action(actions: Sequence[tuple[str, float]], index: int) -> tuple[str, float]:
    return actions[index] if 0 <= index < len(actions) else (f"action_{index}", math.nan)


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
