"""Writing benchmark figures: JSON with the machine and versions they were measured on."""
from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

from neon_ray.runtime.files import atomic_write_text, check_output_file


def environment() -> dict:
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
