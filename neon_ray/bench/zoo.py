"""Zoo-building throughput with 1 and 2 Ray workers on the same zoo, measured in one run.

    neon-ray bench zoo --data-dir ../shared/datasets --dataset phoneme --networks 30 --out bench/zoo.json

Each setting builds the same zoo (same seed, so the same 30 architectures and weights) into a
fresh directory; the figure is wall-clock seconds for the whole build and the speed-up ratio.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from neon_ray.bench.io import check_out, int_list_in, write_json
from neon_ray.cli.common import int_in

MAX_NETWORKS = 10_000
MAX_EPOCHS = 100_000
MAX_WIDTH = 16_384
MAX_WORKERS = 1024


def register(sub) -> None:
    p = sub.add_parser("zoo", help="seconds to build a zoo with 1 and with 2 Ray workers, and the ratio")
    p.add_argument("--data-dir", required=True, help="directory with MANIFEST.csv")
    p.add_argument("--dataset", default="phoneme", help="dataset (default phoneme)")
    p.add_argument("--networks", type=int_in(1, MAX_NETWORKS), default=30, help=f"networks in the zoo, 1 to {MAX_NETWORKS} (default 30)")
    p.add_argument("--workers", type=int_list_in(1, MAX_WORKERS), default=(1, 2), help="worker counts to compare, each >= 1 (default 1,2)")
    p.add_argument("--max-epochs", type=int_in(1, MAX_EPOCHS), default=100, help="training epochs at most, >= 1 (default 100)")
    p.add_argument("--widths", type=int_list_in(1, MAX_WIDTH), default=None,
                   help=f"hidden widths to draw from, each 1 to {MAX_WIDTH} (default NEON's 100..1000)")
    p.add_argument("--out", required=True, help="JSON file for the figures")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neon_ray.runtime.ray_session import ray_session
    from neon_ray.nets.spec import SamplerConfig
    from neon_ray.nets.training import TrainConfig
    from neon_ray.zoo.build import ZooConfig, build_zoo

    check_out(args.out)
    sampler = SamplerConfig(**({"widths": args.widths} if args.widths else {}))
    results = {}
    with ray_session(num_cpus=max(args.workers)), tempfile.TemporaryDirectory() as tmp:
        base = ZooConfig(out="", datasets=(args.dataset,), data_dir=args.data_dir, networks=args.networks,
                         test_networks=args.networks // 5, sampler=sampler, train=TrainConfig(max_epochs=args.max_epochs))
        for workers in args.workers:
            cfg = replace(base, out=str(Path(tmp) / f"w{workers}"))
            start = time.perf_counter()
            manifest = build_zoo(cfg, workers=workers)
            seconds = time.perf_counter() - start
            results[workers] = {"seconds": seconds, "networks": len(manifest),
                                "train_seconds_sum": float(manifest["train_seconds"].sum()),
                                "mean_test_acc": float(manifest["test_acc"].mean())}
            print(f"workers={workers}: {len(manifest)} networks in {seconds:.1f} s "
                  f"(sum of per-network training {results[workers]['train_seconds_sum']:.1f} s)")
    lo, hi = min(args.workers), max(args.workers)
    ratio = results[lo]["seconds"] / results[hi]["seconds"]
    print(f"speed-up {hi} vs {lo} workers: x{ratio:.2f}")
    write_json(args.out, {"benchmark": "zoo_build", "dataset": args.dataset, "networks": args.networks,
                          "max_epochs": args.max_epochs, "by_workers": results, "speedup": ratio})
    print(f"figures written to {args.out}")
    return 0
