"""Zoo-building throughput with 1 and 2 Ray workers on the same zoo, measured in one run.

Each setting builds the same zoo (same seed, so the same architectures and weights) into a
fresh directory; the figure is wall-clock seconds for the whole build and the speed-up ratio.
"""
from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from neon_ray.nets.spec import SamplerConfig
from neon_ray.runtime import ray_session as raysession
from neon_ray.zoo.build import build_zoo
from neon_ray.zoo.config import ZooConfig, zoo_train_config

logger = logging.getLogger(__name__)


def measure_zoo_build(data_dir: str, dataset: str, networks: int, workers: tuple[int, ...], max_epochs: int,
                      widths: tuple[int, ...] | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Build the same `networks`-network zoo of `dataset` once per worker count; return the figures.

    One line per worker count goes to `log` (default: this module's logger)."""
    log = log or logger.info
    sampler = SamplerConfig(**({"widths": widths} if widths else {}))
    results = {}
    with raysession.ray_session(num_cpus=max(workers)), tempfile.TemporaryDirectory() as tmp:
        base = ZooConfig(out="", datasets=(dataset,), data_dir=data_dir, networks=networks,
                         test_networks=networks // 5, sampler=sampler, train=zoo_train_config(max_epochs=max_epochs))
        for n in workers:
            cfg = replace(base, out=str(Path(tmp) / f"w{n}"))
            start = time.perf_counter()
            manifest = build_zoo(cfg, workers=n)
            seconds = time.perf_counter() - start
            results[n] = {"seconds": seconds, "networks": len(manifest),
                          "train_seconds_sum": float(manifest["train_seconds"].sum()),
                          "mean_test_acc": float(manifest["test_acc"].mean())}
            log(f"workers={n}: {len(manifest)} networks in {seconds:.1f} s "
                f"(sum of per-network training {results[n]['train_seconds_sum']:.1f} s)")
    ratio = results[min(workers)]["seconds"] / results[max(workers)]["seconds"]
    return {"benchmark": "zoo_build", "dataset": dataset, "networks": networks, "max_epochs": max_epochs,
            "by_workers": results, "speedup": ratio}
