"""Writing benchmark figures: JSON with the machine and versions they were measured on."""
from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"environment": environment(), **figures}, indent=1, default=float))
    return path
