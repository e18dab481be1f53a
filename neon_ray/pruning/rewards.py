"""Per-step rewards, chosen by name: `get_reward("neon", scale=64000)`.

A reward is a plain function of a `StepOutcome` (what one pruning step did) plus keyword
parameters; `get_reward` binds the parameters and checks them. Every reward says which costly
measurements it needs (`Reward.needs`), so the environment measures FLOPs, latency, memory or
macro-F1 only when the chosen reward reads them.

The step size s: for a keep-rate action, s = 100 * (1 - keep_rate) as in NEON. A remove-layer
action has no keep-rate, so it gets the keep-rate that would remove the same share of
parameters in this step: s = 100 * (1 - params_after / params_before).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from neon_ray.errors import ConfigError

# D is compared with the tolerance at this precision, so a drop of exactly a pp
# (0.90 -> 0.89 with a = 1) is not pushed over the edge by float error in 100 * (x - y).
D_DECIMALS = 9



def change_pp(now: float, orig: float) -> float:
    """D = 100 * (now - orig) in percentage points, at the precision D is compared with a tolerance."""
    return round(100.0 * (now - orig), D_DECIMALS)


# |s^3| for the smallest keep-rate of NEON's action set (0.6): (100 * 0.4)^3.
NEON_MAX_ABS = 64000.0


@dataclass(frozen=True)
class StepOutcome:
    """What one step did, as seen by the reward. Accuracies are fractions in [0, 1] on the reward split."""

    keep_rate: float
    """The action's keep-rate (1.0 for a no-op; ignored when removed_layer)."""
    acc_orig: float
    """Accuracy of the unpruned network."""
    acc_before: float
    """Accuracy before this step."""
    acc_now: float
    """Accuracy after this step's fine-tuning."""
    params_orig: int
    """Parameters of the unpruned network."""
    params_before: int
    """Parameters before this step."""
    params_after: int
    """Parameters after this step."""
    tolerance: float
    """Allowed accuracy reduction a, in percentage points."""
    removed_layer: bool = False
    """True when the action merged a whole hidden layer away."""
    best_params_before: int | None = None
    """Parameters of the smallest network within the tolerance visited before this step (the original at first)."""
    best_params_after: int | None = None
    """The same after this step: smaller when this step's network is within the tolerance and the smallest yet."""
    within_after: bool | None = None
    """This step's network is within the tolerance by the env's confidence bound (None: not measured)."""
    f1_orig: float | None = None
    """Macro-F1 of the unpruned network (measured only when a reward needs it)."""
    f1_before: float | None = None
    """Macro-F1 before this step."""
    f1_now: float | None = None
    """Macro-F1 after this step."""
    flops_orig: int | None = None
    """Per-row FLOPs of the unpruned network."""
    flops_before: int | None = None
    """Per-row FLOPs before this step."""
    flops_after: int | None = None
    """Per-row FLOPs after this step."""
    latency_orig: float | None = None
    """Inference latency (ms) of the unpruned network."""
    latency_before: float | None = None
    """Inference latency (ms) before this step."""
    latency_after: float | None = None
    """Inference latency (ms) after this step."""
    memory_orig: int | None = None
    """Peak inference memory (bytes) of the unpruned network."""
    memory_before: int | None = None
    """Peak inference memory (bytes) before this step."""
    memory_after: int | None = None
    """Peak inference memory (bytes) after this step."""

    @property
    def changed(self) -> bool:
        """False for a no-op step (keep-rate 1.0)."""
        return self.removed_layer or self.keep_rate < 1.0

    @property
    def step_size(self) -> float:
        """s in percentage points: 100 * (1 - keep_rate), or the parameter share a layer removal took."""
        if self.removed_layer:
            return 100.0 * (1.0 - self.params_after / self.params_before)
        return 100.0 * (1.0 - self.keep_rate)

    @property
    def acc_change_pp(self) -> float:
        """D = 100 * (acc_now - acc_orig), in percentage points."""
        return change_pp(self.acc_now, self.acc_orig)


def neon(outcome: StepOutcome, scale: float = 1.0) -> float:
    """NEON's reward (method.md §6): -s^3 if D < -a, +s^3 if D > 0, s otherwise; divided by `scale`.

    `scale` = 1 is the paper's reward; NEON_MAX_ABS (64000) maps the largest magnitude the default
    keep-rates can produce to 1, which suits gradient-based agents.
    """
    if not outcome.changed:
        return 0.0
    s, d, a = outcome.step_size, outcome.acc_change_pp, outcome.tolerance
    if d < -a:
        return -(s**3) / scale
    if d > 0:
        return s**3 / scale
    return s / scale


def neon2020(outcome: StepOutcome, scale: float = 1.0) -> float:
    """The earlier NEON reward: +s^3 only when accuracy rises by more than a (D > +a)."""
    if not outcome.changed:
        return 0.0
    s, d, a = outcome.step_size, outcome.acc_change_pp, outcome.tolerance
    if d < -a:
        return -(s**3) / scale
    if d > a:
        return s**3 / scale
    return s / scale


def _reduction(before: float | None, after: float | None, orig: float | None, what: str) -> float:
    """(before - after) / orig: this step's share of the original cost; an episode's steps sum to the total reduction."""
    if before is None or after is None or orig is None:
        raise ConfigError(f"composite reward: {what} was not measured for this step (the environment must fill {what}_*)")
    return (before - after) / orig if orig else 0.0


def composite(
    outcome: StepOutcome,
    metric: str = "acc",
    w_metric: float = 1.0,
    w_params: float = 1.0,
    w_flops: float = 0.0,
    w_latency: float = 0.0,
    w_memory: float = 0.0,
    penalty: float = 1.0,
    penalty_per_pp: float = 0.1,
    scale: float = 1.0,
) -> float:
    """Weighted trade-off of quality against cost, per step (method.md §6, the plan's composite).

    R = w_metric * (m_now - m_before) + sum_k w_k * (k_before - k_after) / k_orig
        - [D_m < -a] * (penalty + penalty_per_pp * (-D_m - a)),
    with m accuracy or macro-F1 (`metric`), k in params, FLOPs, latency, memory, and
    D_m = 100 * (m_now - m_orig) in pp. All terms are fractions, so the per-step rewards of an
    episode add up to the total quality change and the total relative reductions. The penalty
    is paid on every changing step taken while quality is below the tolerance; a no-op step
    (keep-rate 1.0) earns 0, as in NEON.
    """
    if not outcome.changed:
        return 0.0
    if metric == "acc":
        m_orig, m_before, m_now = outcome.acc_orig, outcome.acc_before, outcome.acc_now
    else:
        m_orig, m_before, m_now = outcome.f1_orig, outcome.f1_before, outcome.f1_now
        if m_orig is None or m_before is None or m_now is None:
            raise ConfigError("composite reward with metric 'f1': macro-F1 was not measured (f1_* are None)")
    reward = w_metric * (m_now - m_before)
    for weight, what in ((w_params, "params"), (w_flops, "flops"), (w_latency, "latency"), (w_memory, "memory")):
        if weight:
            before = getattr(outcome, f"{what}_before")
            after = getattr(outcome, f"{what}_after")
            reward += weight * _reduction(before, after, getattr(outcome, f"{what}_orig"), what)
    d = change_pp(m_now, m_orig)
    if d < -outcome.tolerance:
        reward -= penalty + penalty_per_pp * (-d - outcome.tolerance)
    return reward / scale


def guarded(outcome: StepOutcome, penalty: float = 0.1, scale: float = 1.0, per_tolerance: bool = False) -> float:
    """The guard's objective, per step: log(best_before / best_after) - penalty * [changed and outside]; / scale.

    best is the smallest network within the tolerance visited so far, which is exactly what the
    tolerance guard returns (within: the env's confidence bound, `within_after`; without one, D >= -a), so an episode's rewards add up to the log of the returned network's
    reduction (the log of what `results.summary.score` averages) less the penalties. A step that
    leaves the tolerance earns nothing by itself and pays `penalty`: small, so the agent still
    probes past the edge (the guard keeps the best network), but prefers ending within it, which
    is what matters when no guard is used. NEON's reward instead pays s (at most 40/64000 after
    scaling) for a step within the tolerance against s^3 for luck on the val split, so it teaches
    timid, noise-chasing pruning.

    `per_tolerance` also divides by log(1 + a) (a >= 0.1): what a network can lose grows with a,
    and so does the log reduction an episode can earn, so an agent trained over a = 1..50 learns
    mostly from the large tolerances; the division gives every tolerance a comparable share of
    the gradient.
    """
    if not outcome.changed:
        return 0.0
    if outcome.best_params_before is None or outcome.best_params_after is None:
        raise ConfigError("guarded reward: best_params_before/after were not filled (the environment tracks them)")
    reward = math.log(outcome.best_params_before / outcome.best_params_after)
    within = outcome.within_after if outcome.within_after is not None else outcome.acc_change_pp >= -outcome.tolerance
    if not within:
        reward -= penalty
    if per_tolerance:
        reward /= math.log1p(max(outcome.tolerance, 0.1))
    return reward / scale


@dataclass(frozen=True)
class Reward:
    """A reward function with its parameters bound; call it with a `StepOutcome`."""

    name: str
    """Registry name."""
    fn: Callable[..., float]
    """The reward function."""
    params: dict = field(default_factory=dict)
    """Keyword parameters passed to `fn`."""
    needs: frozenset = frozenset()
    """Optional measurements the reward reads: any of 'f1', 'flops', 'latency', 'memory'."""

    def __call__(self, outcome: StepOutcome) -> float:
        return float(self.fn(outcome, **self.params))


def _check_scale(params: dict) -> None:
    scale = params.get("scale", 1.0)
    if not isinstance(scale, (int, float)) or scale <= 0:
        raise ConfigError(f"reward parameter scale must be a positive number, got {scale!r}")


def _neon_needs(params: dict) -> frozenset:
    _check_scale(params)
    return frozenset()


def _guarded_needs(params: dict) -> frozenset:
    _check_scale(params)
    penalty = params.get("penalty", 0.1)
    if isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or not math.isfinite(penalty) or penalty < 0:
        raise ConfigError(f"guarded reward: penalty must be a finite number >= 0, got {penalty!r}")
    if params.get("per_tolerance", False) not in (True, False):  # 1 / 0 from a CLI's key=value text too
        raise ConfigError(f"guarded reward: per_tolerance must be true or false (1 or 0), got {params['per_tolerance']!r}")
    return frozenset()


def _composite_needs(params: dict) -> frozenset:
    _check_scale(params)
    metric = params.get("metric", "acc")
    if metric not in ("acc", "f1"):
        raise ConfigError(f"composite reward: metric must be 'acc' or 'f1', got {metric!r}")
    needs = {"f1"} if metric == "f1" else set()
    needs |= {k for k in ("flops", "latency", "memory") if params.get(f"w_{k}", 0.0)}
    return frozenset(needs)


_REGISTRY: dict[str, tuple[Callable[..., float], Callable[[dict], frozenset]]] = {
    "neon": (neon, _neon_needs),
    "neon2020": (neon2020, _neon_needs),
    "composite": (composite, _composite_needs),
    "guarded": (guarded, _guarded_needs),
}

REWARD_NAMES = tuple(sorted(_REGISTRY))


def _accepted(fn: Callable) -> list[str]:
    code = fn.__code__
    return list(code.co_varnames[1 : code.co_argcount])


def get_reward(name: str, **params) -> Reward:
    """The reward `name` with `params` bound; unknown names or parameters raise ConfigError."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown reward {name!r}, expected one of {list(REWARD_NAMES)}")
    fn, needs = _REGISTRY[name]
    unknown = sorted(set(params) - set(_accepted(fn)))
    if unknown:
        raise ConfigError(f"reward {name!r}: unknown parameter(s) {unknown}, accepted: {_accepted(fn)}")
    return Reward(name, fn, dict(params), needs(params))

