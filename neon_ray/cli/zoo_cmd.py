"""`neon-ray zoo build|list|check`: train a network zoo on Ray, inspect it, check it converged.

Library modules are imported inside the handlers: `neon-ray --help` must not pay for torch and Ray.
"""
from __future__ import annotations

import argparse

from neon_ray.cli.common import MAX_EPOCHS, MAX_SEED, add_address, csv_list, int_in, int_list

# The bounds below repeat those of ZooConfig, SamplerConfig and TrainConfig (which enforce them
# too), so that --help can state them without importing torch.
MAX_NETWORKS = 10_000
MAX_LAYERS = 64
MAX_WIDTH = 16384
MAX_BATCH_SIZE = 1_000_000
MAX_WORKERS = 10_000
MIN_CAPPED_ROWS = 100  # data.splits.MIN_CAPPED_ROWS


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
    build.add_argument("--max-epochs", type=int_in(1, MAX_EPOCHS), default=None,
                       help=f"training epochs at most, 1 to {MAX_EPOCHS} (default 400; early stopping on val); then a settle phase "
                       "of up to min(100, max-epochs) epochs in eval mode (BatchNorm statistics fixed, Dropout off)")
    build.add_argument("--patience", type=int_in(1, MAX_EPOCHS), default=None,
                       help="epochs without a better val loss before the rate is halved or, after 3 cuts, training stops, "
                       ">= 1 (default 10)")
    build.add_argument("--lr-schedule", choices=("plateau", "constant"), default=None,
                       help="'plateau' (default: halve the rate at each val plateau, stop at the fourth) or 'constant' "
                       "(stop at the first plateau)")
    build.add_argument("--max-rows", type=int_in(MIN_CAPPED_ROWS, None), default=None,
                       help=f"cap each dataset at a stratified sample of this many rows before splitting, >= {MIN_CAPPED_ROWS} "
                       "(default: all rows); for reduced-scale runs")
    build.add_argument("--batch-size", type=int_in(1, MAX_BATCH_SIZE), default=64,
                       help=f"mini-batch size, 1 to {MAX_BATCH_SIZE} (default 64)")
    build.add_argument("--workers", type=int_in(1, MAX_WORKERS), default=None, help="training tasks in flight, >= 1 (default: cluster CPUs)")
    add_address(build)
    build.set_defaults(func=_build)

    ls = zsub.add_parser("list", help="one line per network: architecture, parameters, accuracies")
    ls.add_argument("zoo", help="zoo directory")
    ls.add_argument("--dataset", default=None, help="only this dataset")
    ls.set_defaults(func=_list)

    check = zsub.add_parser(
        "check", help="is the zoo converged? accuracy vs its dataset's best and a reference learner, and the no-op gain",
        description="Per network: test accuracy, the best of its dataset, HistGradientBoosting's accuracy on the same "
        "split, and the no-op gain: the accuracy change when an episode's fine-tuning runs on the unpruned network "
        "(one step per hidden layer). A converged zoo has a no-op gain near 0.",
    )
    check.add_argument("zoo", help="zoo directory")
    check.add_argument("--datasets", type=csv_list, default=None, help="only these datasets (comma-separated)")
    check.add_argument("--budget", choices=("episode", "agent"), default="episode",
                       help="fine-tuning budget: EpisodeConfig's default (10 epochs, 8192 rows) or the agent's "
                       "(3 epochs, 2048 rows) (default episode)")
    check.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help="seed of the fine-tuning and the reference learner")
    check.add_argument("--no-reference", action="store_true", help="skip the reference learner")
    check.add_argument("--in-process", action="store_true", help="fine-tune here, one network after another, without Ray")
    check.add_argument("--workers", type=int_in(1, MAX_WORKERS), default=None, help="networks in flight on Ray (default: cluster CPUs)")
    check.add_argument("--json", action="store_true", help="print the report as JSON (summary keys and per-network rows)")
    add_address(check)
    check.set_defaults(func=_check)


def zoo_config_from_args(args: argparse.Namespace):
    from neon_ray.nets.spec import SamplerConfig
    from neon_ray.data.splits import SplitConfig
    from neon_ray.zoo.config import ZooConfig, zoo_train_config

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
        split=SplitConfig(max_rows=args.max_rows),
        train=zoo_train_config(batch_size=args.batch_size, **{k: v for k in ("max_epochs", "patience", "lr_schedule")
                                                             if (v := getattr(args, k)) is not None}),
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


def _check(args: argparse.Namespace) -> int:
    import json
    from dataclasses import replace
    from functools import partial

    from neon_ray.agent.config import default_finetune
    from neon_ray.pruning.episode_config import EpisodeConfig
    from neon_ray.pruning.finetune import finetune
    from neon_ray.zoo.check import check_zoo, format_check
    from neon_ray.zoo.store import open_zoo

    # labels, even for the agent's distilling budget: the check asks whether training on the labels
    # would still raise accuracy (an under-trained base network); fitting its own predictions cannot
    budget = EpisodeConfig().finetune if args.budget == "episode" else replace(default_finetune(), targets="labels")
    report = check_zoo(open_zoo(args.zoo), partial(finetune, cfg=budget), datasets=tuple(args.datasets or ()) or None,
                       seed=args.seed, reference=not args.no_reference, in_process=args.in_process,
                       address=args.address, workers=args.workers, progress=not args.json)
    print(json.dumps(report, indent=1) if args.json else format_check(report))
    return 0
