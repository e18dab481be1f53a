"""`neon-ray bench zoo`: seconds to build the same zoo with 1 and with 2 Ray workers, and the ratio.

    neon-ray bench zoo --data-dir ../shared/datasets --dataset phoneme --networks 30 --out bench/zoo.json
"""
from __future__ import annotations

import argparse

from neon_ray.cli.common import MAX_EPOCHS, int_in, int_list_in

MAX_NETWORKS = 10_000
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
    # imported here, not at the top: `neon-ray --help` must stay fast (bench/ pulls in torch and Ray)
    from neon_ray.bench.io import check_out, write_json
    from neon_ray.bench.zoo import measure_zoo_build

    check_out(args.out)
    figures = measure_zoo_build(args.data_dir, args.dataset, args.networks, args.workers, args.max_epochs,
                                widths=args.widths, log=print)
    print(f"speed-up {max(args.workers)} vs {min(args.workers)} workers: x{figures['speedup']:.2f}")
    write_json(args.out, figures)
    print(f"figures written to {args.out}")
    return 0
