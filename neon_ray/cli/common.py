"""Argument helpers shared by sub-commands."""
from __future__ import annotations

import argparse
import math

from neon_ray.errors import ConfigError
from neon_ray.nets.checks import MAX_EPOCHS, MAX_SEED  # standard library only: keeps --help fast
from neon_ray.pruning.tolerance import Tolerance, parse_tolerance


def csv_list(text: str) -> list[str]:
    """`a,b,c` -> ['a', 'b', 'c'] (empty items dropped)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in csv_list(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc


def float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in csv_list(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc


def tolerance_arg(text: str) -> Tolerance:
    """argparse type: `5` (one tolerance, in accuracy percentage points) or `1:50` (a range sampled per episode)."""
    try:
        return parse_tolerance(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def fixed_tolerance_arg(text: str) -> float:
    """argparse type: one tolerance in accuracy percentage points, in [0, 100]."""
    try:
        return parse_tolerance(text, allow_range=False)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bounded(kind, lo, hi, text: str, lo_open: bool = False):
    try:
        value = kind(text)
    except ValueError:
        value = None
    ok = value is not None and math.isfinite(value) and (lo is None or (value > lo if lo_open else value >= lo)) \
        and (hi is None or value <= hi)
    if not ok:
        lo_txt = "" if lo is None else f"{'>' if lo_open else '>='} {lo}"
        hi_txt = "" if hi is None else f"<= {hi}"
        bounds = " and ".join(t for t in (lo_txt, hi_txt) if t)
        noun = "an integer" if kind is int else "a finite number"
        raise argparse.ArgumentTypeError(f"expected {noun}{' ' + bounds if bounds else ''}, got {text!r}")
    return value


def int_in(lo: int | None = None, hi: int | None = None):
    """argparse type: an integer in [lo, hi]."""
    def parse(text: str) -> int:
        return _bounded(int, lo, hi, text)
    parse.__name__ = "integer"
    return parse


def float_in(lo: float | None = None, hi: float | None = None, lo_open: bool = False):
    """argparse type: a finite float in [lo, hi] (or (lo, hi] with lo_open); NaN and inf are refused."""
    def parse(text: str) -> float:
        return _bounded(float, lo, hi, text, lo_open)
    parse.__name__ = "number"
    return parse


def add_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join (e.g. ray://host:10001 or auto); default: a local Ray started in-process",
    )


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def int_list_in(lo: int, hi: int | None = None):
    """argparse type: comma-separated integers, each in [lo, hi], at least one."""
    def parse(text: str) -> tuple[int, ...]:
        values = int_list(text)
        if not values or not all(v >= lo and (hi is None or v <= hi) for v in values):
            bounds = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, each {bounds}, got {text!r}")
        return values
    parse.__name__ = "integer list"
    return parse
