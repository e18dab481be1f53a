"""`neon-ray zoo build|list`: train a network zoo on Ray and inspect it."""
from __future__ import annotations

import argparse

from neon_ray.cli.common import add_address, csv_list, int_list


def register(sub) -> None:
    zoo = sub.add_parser("zoo", help="build and inspect network zoos")
    zsub = zoo.add_subparsers(dest="zoo_command", required=True, metavar="ACTION")

    build = zsub.add_parser(
        "build",
        help="train NEON's random networks for each dataset, in parallel on Ray (resumable)",
        description="Train --networks random networks per dataset. Re-running skips finished networks.",
    )
    build.add_argument("--data-dir", default=None, help="directory with MANIFEST.csv (not needed for sklearn:NAME datasets)")
    build.add_argument("--datasets", type=csv_list, required=True, help="comma-separated dataset names, e.g. phoneme,diabetes or sklearn:wine")
    build.add_argument("--networks", type=int, default=30, help="networks per dataset (default 30)")
    build.add_argument("--test-networks", type=int, default=None, help="networks per dataset held out from agent training (default: 1 in 5)")
    build.add_argument("--out", required=True, help="zoo directory")
    build.add_argument("--seed", type=int, default=0, help="seed of splits, architectures, weights and roles (default 0)")
    build.add_argument("--widths", type=int_list, default=None, help="hidden widths to draw from (default 100,200,...,1000)")
    build.add_argument("--max-layers", type=int, default=6, help="most hidden layers (default 6)")
    build.add_argument("--max-epochs", type=int, default=100, help="training epochs at most (default 100; early stopping on val)")
    build.add_argument("--patience", type=int, default=5, help="epochs without val improvement before stopping (default 5)")
    build.add_argument("--batch-size", type=int, default=64, help="mini-batch size (default 64)")
    build.add_argument("--workers", type=int, default=None, help="training tasks in flight (default: cluster CPUs)")
    add_address(build)
    build.set_defaults(func=_build)

    ls = zsub.add_parser("list", help="one line per network: architecture, parameters, accuracies")
    ls.add_argument("zoo", help="zoo directory")
    ls.add_argument("--dataset", default=None, help="only this dataset")
    ls.set_defaults(func=_list)


def zoo_config_from_args(args: argparse.Namespace):
    from neon_ray.spec import SamplerConfig
    from neon_ray.train import TrainConfig
    from neon_ray.zoo import ZooConfig

    sampler = SamplerConfig(max_layers=args.max_layers, **({"widths": args.widths} if args.widths else {}))
    test_networks = args.test_networks if args.test_networks is not None else args.networks // 5
    return ZooConfig(
        out=args.out,
        datasets=tuple(args.datasets),
        data_dir=args.data_dir,
        networks=args.networks,
        test_networks=test_networks,
        seed=args.seed,
        sampler=sampler,
        train=TrainConfig(max_epochs=args.max_epochs, patience=args.patience, batch_size=args.batch_size),
    )


def _build(args: argparse.Namespace) -> int:
    from neon_ray.zoo import build_zoo

    manifest = build_zoo(zoo_config_from_args(args), address=args.address, workers=args.workers)
    print(f"zoo {args.out}: {len(manifest)} networks over {manifest['dataset'].nunique()} datasets")
    return 0


def _list(args: argparse.Namespace) -> int:
    from neon_ray.zoo import open_zoo

    frame = open_zoo(args.zoo).manifest(args.dataset)
    if frame.empty:
        print(f"zoo {args.zoo}: no networks")
        return 0
    cols = ["network_id", "role", "arch", "params", "val_acc", "test_acc", "epochs"]
    print(frame[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"{len(frame)} networks")
    return 0
