"""`neon-ray bench ...`: benchmarks that print figures and write them to a JSON file.

Each benchmark's options and printing live in cli/bench_<name>.py (`register`, `run`); what it
measures in neon_ray/bench/, imported only when the benchmark runs so that `--help` stays fast.
"""
from __future__ import annotations

from neon_ray.cli import bench_rollout, bench_step, bench_zoo


def register(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks (print figures and write JSON)")
    bsub = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK")
    for module in (bench_zoo, bench_step, bench_rollout):
        module.register(bsub)
