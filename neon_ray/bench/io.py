"""Writing benchmark figures: JSON with the machine and versions they were measured on; option types they share."""
from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

from neon_ray.cli.common import int_list
from neon_ray.runtime.files import atomic_write_text, check_output_file

MAX_SEED = 2**32 - 1


def environment() -> dict:
    import torch

    return {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(path: str | Path, figures: dict) -> Path:
    """Write the figures (with `environment()`) atomically to `path`."""
    return atomic_write_text(path, json.dumps({"environment": environment(), **figures}, indent=1, default=float))


def check_out(path: str | Path, what: str = "--out (figures JSON)") -> Path:
    """Fail before any measuring if the figures could not be written to `path`."""
    return check_output_file(path, what)


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
