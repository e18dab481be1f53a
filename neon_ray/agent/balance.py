"""Keeping EnvRunners busy: each runner's share of a synchronous batch from its measured cost per step.

A2C samples synchronously: the learner waits until every runner has returned its share of the
batch, so the batch takes as long as the slowest share. Runners hold different datasets
(pruning.catalogue), and a step on one runner may cost several times a step on another. Each
runner's share of the batch's steps is therefore made inverse to its seconds per step, as
measured over its past sampling calls (smoothed), so that the runners finish together.

Until every runner has been measured (the first iteration, or a runner restarted after a fault),
runners take the prior from the zoo's figures (`catalogue.step_shares`). 'model' balancing keeps
that prior throughout: batches are then the same from run to run (bit-reproducible training),
at the cost of idle runners where the model is off. The model's one constant (STEP_OVERHEAD) was
calibrated on one zoo, where both modes measured alike (2 runners x1.80-1.95 at 16 episodes per
batch, docs/scaling.md), but between single datasets it was 1.6x off (phoneme and diabetes),
which the measurement does not depend on.
"""
from __future__ import annotations

BALANCE_MODES = ("measured", "model")
CALL_TIMEOUT_S = 60.0
"""Limit on the small calls that set shares and read timings (a runner that misses it keeps its share)."""
SMOOTHING = 0.5
"""Weight of the newest measurement in a runner's seconds per step (an exponential average)."""


class RunnerBalance:
    """Seconds per step of each remote runner (by worker index), and the shares they imply."""

    def __init__(self) -> None:
        self.seconds_per_step: dict[int, float] = {}

    def shares(self, workers: list[int]) -> dict[int, float] | None:
        """Share of the batch's steps per worker, summing to 1; None until all of `workers` were measured."""
        if not workers or any(w not in self.seconds_per_step for w in workers):
            return None
        speed = {w: 1.0 / self.seconds_per_step[w] for w in workers}
        total = sum(speed.values())
        return {w: v / total for w, v in speed.items()}

    def update(self, samples: list[tuple[int, int, float]]) -> None:
        """Fold in (worker index, steps, seconds) of each runner's last sampling call."""
        for worker, steps, seconds in samples:
            if steps <= 0 or seconds <= 0:
                continue
            rate, old = seconds / steps, self.seconds_per_step.get(worker)
            self.seconds_per_step[worker] = rate if old is None else (1 - SMOOTHING) * old + SMOOTHING * rate


def balanced_sample(group, balance: RunnerBalance | None, sample):
    """`sample()` (a synchronous round over the EnvRunnerGroup `group`) with each remote runner's share set
    from `balance` first and its timing folded in after; `sample()` alone without a balance or with
    fewer than two remote runners."""
    if balance is None or group.num_remote_env_runners() < 2:
        return sample()
    shares = balance.shares(sorted(group.healthy_worker_ids()))
    group.foreach_env_runner(lambda w: w.set_batch_share(None if shares is None else shares.get(w.worker_index)),
                             local_env_runner=False, timeout_seconds=CALL_TIMEOUT_S)
    result = sample()
    balance.update(group.foreach_env_runner(lambda w: w.last_sample(), local_env_runner=False,
                                            timeout_seconds=CALL_TIMEOUT_S))
    return result
