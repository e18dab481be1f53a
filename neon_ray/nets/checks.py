"""Range checks of config fields: a ConfigError naming the field, the value and the allowed range.

Every numeric knob is checked where it is defined (`__post_init__`), so a NaN, an infinity, a bool
or a float where an integer belongs is refused before any work, from the CLI, a job or a library call.
Used by the training, fine-tuning, agent and Deep Compression configs.
"""
from __future__ import annotations

import math
from numbers import Integral

from neon_ray.errors import ConfigError

MAX_SEED = 2**32 - 1
"""Largest seed any config accepts (numpy and torch seeds are 32-bit)."""
MAX_EPOCHS = 100_000
"""Most epochs any training budget accepts."""


def _num(value) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _range(lo, hi, lo_open: bool = False) -> str:
    left = "(-inf" if lo is None else f"{'(' if lo_open else '['}{_num(lo)}"
    right = "inf)" if hi is None else f"{_num(hi)}]"
    return f"{left}, {right}"


def check_int(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
    """`value` if it is an integer (Python or numpy, not a bool) in [lo, hi], else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, Integral) or (lo is not None and value < lo) \
            or (hi is not None and value > hi):
        raise ConfigError(f"{name} must be an integer in {_range(lo, hi)}, got {value!r}")
    return value


def check_number(name: str, value, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> float:
    """`value` as a float if it is a finite real number in [lo, hi] ((lo, hi] with lo_open), else ConfigError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (lo is None or (value > lo if lo_open else value >= lo)) and (hi is None or value <= hi)
    if not ok:
        raise ConfigError(f"{name} must be a finite number in {_range(lo, hi, lo_open)}, got {value!r}")
    return float(value)
