"""Argument helpers shared by sub-commands."""
from __future__ import annotations

import argparse

from neon_ray.errors import ConfigError


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


def tolerance_arg(text: str) -> float | tuple[float, float]:
    """`5` (one tolerance) or `1:50` (a range sampled per episode)."""
    try:
        if ":" in text:
            lo, hi = (float(x) for x in text.split(":"))
            if not 0 <= lo <= hi:
                raise ValueError
            return (lo, hi)
        value = float(text)
        if value < 0:
            raise ValueError
        return value
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"tolerance must be a number >= 0 or a range LO:HI, got {text!r}") from exc


def add_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join (e.g. ray://host:10001 or auto); default: a local Ray started in-process",
    )


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
