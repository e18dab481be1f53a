"""Tolerances: the one parser and check of an episode's allowed accuracy drop, and its per-episode draw.

A tolerance a is a number of accuracy percentage points in [0, 100], or a range (lo, hi) with
lo <= hi from which every episode draws its own a: log-uniformly by default (the paper's
tolerances 1, 5, 50 span orders of magnitude, so each decade gets equal weight) or uniformly.

    parse_tolerance("5") == parse_tolerance(5) == 5.0
    parse_tolerance("1:50") == parse_tolerance([1, 50]) == (1.0, 50.0)

The CLI's argument types, the episode config, the sweep grid and the pipeline spec all parse
with `parse_tolerance`. Only the standard library is imported: the CLI uses this module while
it builds its parser, which must stay fast.
"""
from __future__ import annotations

import math
import numbers
from typing import Union

from neon_ray.errors import ConfigError

# A tolerance is an accuracy drop in percentage points: 0 to 100.
MAX_TOLERANCE = 100.0
SAMPLINGS = ("log-uniform", "uniform")

Tolerance = Union[float, tuple[float, float]]
"""A fixed tolerance in pp, or a (lo, hi) range drawn per episode."""


def parse_tolerance(value, what: str = "tolerance", *, allow_range: bool = True) -> Tolerance:
    """A float, or a (lo, hi) pair of floats, from a number, a pair, or the text `A` / `LO:HI`.

    Raises ConfigError naming `what` unless every value is finite, 0 <= lo <= hi <= 100, and a
    range is allowed when one is given.
    """
    parts = _parts(value)
    ok = parts is not None and (allow_range or len(parts) == 1) \
        and all(math.isfinite(x) and 0 <= x <= MAX_TOLERANCE for x in parts) and parts == sorted(parts)
    if not ok:
        if not allow_range:
            raise ConfigError(f"{what} must be a finite number in [0, {MAX_TOLERANCE:g}], got {value!r}")
        raise ConfigError(f"{what} must be a number >= 0 and <= {MAX_TOLERANCE:g} (accuracy pp, finite) or a pair "
                          f"[lo, hi] of them with lo <= hi (LO:HI), got {value!r}")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def _parts(value) -> list[float] | None:
    """The one or two numbers of `value`, or None when it is not a tolerance's shape."""
    if isinstance(value, str):
        items = value.split(":")
        try:
            return [float(x) for x in items] if len(items) <= 2 else None
        except ValueError:
            return None
    items = list(value) if isinstance(value, (tuple, list)) else [value]
    if len(items) not in (1, 2) or any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in items):
        return None
    return [float(v) for v in items]


def check_sampling(tolerance: Tolerance, sampling: str) -> None:
    """ConfigError unless `sampling` is known and can draw from `tolerance` (log-uniform needs lo > 0)."""
    if sampling not in SAMPLINGS:
        raise ConfigError(f"tolerance_sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if isinstance(tolerance, tuple) and tolerance[0] < tolerance[1] and sampling == "log-uniform" and tolerance[0] == 0:
        raise ConfigError(f"tolerance {list(tolerance)}: log-uniform sampling needs lo > 0 "
                          "(or use tolerance_sampling='uniform')")


def draw_tolerance(tolerance: Tolerance, sampling: str, rng) -> float:
    """This episode's a: the fixed tolerance, or a draw from the range with the numpy Generator `rng`."""
    if not isinstance(tolerance, tuple):
        return tolerance
    lo, hi = tolerance
    if lo == hi:
        return lo
    if sampling == "uniform":
        return float(rng.uniform(lo, hi))
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


# One-sided 95%: the guard's default confidence that a returned network is within the tolerance.
CONFIDENCE_Z = 1.645
# pp are compared with a tolerance at this precision (as rewards.change_pp).
_BOUND_DECIMALS = 9


def paired_changes(correct_orig, correct_now) -> tuple[int, int]:
    """(lost, gained): rows the original got right and the network now gets wrong, and the reverse (bool arrays)."""
    return int((correct_orig & ~correct_now).sum()), int((~correct_orig & correct_now).sum())


def drop_bound_pp(lost: int, gained: int, rows: int, z: float = CONFIDENCE_Z) -> float:
    """Upper confidence bound, in pp, of the accuracy drop of a pruned network against its original.

    Both are measured on the same `rows` val rows, so the drop is a mean of paired per-row
    changes (+1 lost, -1 gained, 0 same): its standard error is sd / sqrt(rows). The bound is the
    measured drop plus z standard errors, with half a disagreement added each way to the
    spread, so that a val split without disagreements still says how little it can prove: on 49
    rows even identical predictions only bound the drop by z * 2 pp. Why a bound at all: the guard
    returns the smallest network whose val drop passes, the one val was luckiest on, and a plain
    `drop <= a` test then fails on the test split far more often than it passes on val. With
    z = 0 the bound is the measured drop exactly.
    """
    if rows <= 0:
        raise ConfigError(f"drop_bound_pp needs at least one row, got {rows}")
    drop = (lost - gained) / rows
    if z == 0:
        return round(100.0 * drop, _BOUND_DECIMALS)
    b, c = lost + 0.5, gained + 0.5
    variance = max((b + c) / rows - ((b - c) / rows) ** 2, 0.0)
    return round(100.0 * (drop + z * math.sqrt(variance / rows)), _BOUND_DECIMALS)


def check_confidence_z(value, what: str = "confidence_z") -> float:
    """z of the guard's bound: a finite number in [0, 10] (0: the plain measured drop)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not 0 <= value <= 10:
        raise ConfigError(f"{what} must be a finite number in [0, 10] (standard errors; 0: no margin), got {value!r}")
    return float(value)
