"""`neon-ray zoo build|list`: train a network zoo on Ray and inspect it.

Library modules are imported inside the handlers: `neon-ray --help` must not pay for torch and Ray.
"""
from __future__ import annotations

import argparse

from neon_ray.cli.common import MAX_SEED, add_address, csv_list, int_in, int_list

# The bounds below repeat those of ZooConfig, SamplerConfig and TrainConfig (which enforce them
# too), so that --help can state them without importing torch.
MAX_NETWORKS = 10_000
MAX_LAYERS = 64
MAX_WIDTH = 16384
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 1_000_000
MAX_WORKERS = 10_000


def width_list(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated hidden widths, each an integer in [1, MAX_WIDTH]."""
    widths = int_list(text)
    if not widths or not all(1 <= w <= MAX_WIDTH for w in widths):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers in [1, {MAX_WIDTH}], got {text!r}")
    return widths


def register(sub) -> None:
    zoo = sub.add_parser("zoo", help="build and inspect network zoos")
    zsub = zoo.add_subparsers(dest="zoo_command", required=True, metavar="ACTION")

    build = zsub.add_parser(
        "build",
        help="train NEON's random networks for each dataset, in parallel on Ray (resumable)",
        description="Train --networks random networks per dataset. Re-running skips finished networks. "
        "Every setting and the --out location are checked before anything is written.",
    )
    build.add_argument("--data-dir", default=None, help="directory with MANIFEST.csv (not needed for sklearn:NAME datasets)")
    build.add_argument("--datasets", type=csv_list, required=True, help="comma-separated dataset names, e.g. phoneme,diabetes or sklearn:wine")
    build.add_argument("--networks", type=int_in(1, MAX_NETWORKS), default=30,
                       help=f"networks per dataset, 1 to {MAX_NETWORKS} (default 30)")
    build.add_argument("--test-networks", type=int_in(0, MAX_NETWORKS), default=None,
                       help="networks per dataset held out from agent training, 0 to --networks (default: 1 in 5)")
    build.add_argument("--out", required=True, help="zoo directory")
    build.add_argument("--seed", type=int_in(0, MAX_SEED), default=0,
                       help=f"seed of splits, architectures, weights and roles, 0 to {MAX_SEED} (default 0)")
    build.add_argument("--widths", type=width_list, default=None,
                       help=f"hidden widths to draw from, each 1 to {MAX_WIDTH} (default 100,200,...,1000)")
    build.add_argument("--max-layers", type=int_in(1, MAX_LAYERS), default=6, help=f"most hidden layers, 1 to {MAX_LAYERS} (default 6)")
    build.add_argument("--max-epochs", type=int_in(1, MAX_EPOCHS), default=100,
                       help=f"training epochs at most, 1 to {MAX_EPOCHS} (default 100; early stopping on val)")
    build.add_argument("--patience", type=int_in(1, MAX_EPOCHS), default=5,
                       help="epochs without val improvement before stopping, >= 1 (default 5)")
    build.add_argument("--batch-size", type=int_in(1, MAX_BATCH_SIZE), default=64,
                       help=f"mini-batch size, 1 to {MAX_BATCH_SIZE} (default 64)")
    build.add_argument("--workers", type=int_in(1, MAX_WORKERS), default=None, help="training tasks in flight, >= 1 (default: cluster CPUs)")
    add_address(build)
    build.set_defaults(func=_build)

    ls = zsub.add_parser("list", help="one line per network: architecture, parameters, accuracies")
    ls.add_argument("zoo", help="zoo directory")
    ls.add_argument("--dataset", default=None, help="only this dataset")
    ls.set_defaults(func=_list)


def zoo_config_from_args(args: argparse.Namespace):
    from neon_ray.nets.spec import SamplerConfig
    from neon_ray.nets.training import TrainConfig
    from neon_ray.zoo.config import ZooConfig

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
    from neon_ray.zoo.build import build_zoo

    manifest = build_zoo(zoo_config_from_args(args), address=args.address, workers=args.workers)
    print(f"zoo {args.out}: {len(manifest)} networks over {manifest['dataset'].nunique()} datasets")
    return 0


def _list(args: argparse.Namespace) -> int:
    from neon_ray.zoo.store import open_zoo

    zoo = open_zoo(args.zoo)
    if args.dataset is not None:
        zoo.check_dataset(args.dataset)
    frame = zoo.manifest(args.dataset)
    if frame.empty:
        print(f"zoo {args.zoo}: no networks")
        return 0
    cols = ["network_id", "role", "arch", "params", "val_acc", "test_acc", "epochs"]
    print(frame[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"{len(frame)} networks")
    return 0
