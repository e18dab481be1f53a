"""`neon-ray bench ...`: benchmarks that print figures and write them to a JSON file."""
from __future__ import annotations

import importlib

BENCHMARKS = ("zoo", "step", "rollout")


def register(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks (print figures and write JSON)")
    bsub = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK")
    for name in BENCHMARKS:
        importlib.import_module(f"neon_ray.bench.{name}").register(bsub)
