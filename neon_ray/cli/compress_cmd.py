"""`neon-ray compress`: Deep Compression (prune, share, Huffman) of a saved network into one file."""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace

from neon_ray.cli.common import MAX_EPOCHS, MAX_SEED, int_in
from neon_ray.errors import ConfigError

MAX_Q = 10.0  # neon_ray.deepcomp.prune.MAX_Q (not imported: `--help` must not import torch)
MAX_BITS = 12  # neon_ray.deepcomp.share.MAX_BITS (a test keeps them equal)


def q_list(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated q values, each a finite number in [0, MAX_Q]."""
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(q) and 0 <= q <= MAX_Q for q in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated finite numbers in [0, {MAX_Q:g}] (|w| < q*std is pruned), got {text!r}")
    return values


def register(sub) -> None:
    p = sub.add_parser(
        "compress",
        help="Deep Compression of a saved network: magnitude pruning, weight sharing, Huffman coding",
        description=(
            "Prune weights below q*std per layer (retraining after each q), share weights by k-means, "
            "Huffman-code indices and positions, write the compressed file and print one row per stage."
        ),
    )
    p.add_argument("--network", required=True, help="saved network (stem, .json or .pt written by neon-ray)")
    p.add_argument("--dataset", default=None, help="dataset to retrain and test on (default: the network's metadata)")
    p.add_argument("--data-dir", default=None, help="directory with MANIFEST.csv")
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=None,
                   help=f"split and training seed, 0 to {MAX_SEED} (default: the network's metadata, else 0)")
    p.add_argument("--q", type=q_list, default=None,
                   help=f"pruning schedule, comma-separated q values in [0, {MAX_Q:g}] (default 0.5,1.0,1.4,1.7,2.0,2.3)")
    p.add_argument("--bits", type=int_in(1, MAX_BITS), default=None,
                   help=f"cluster-index bits of fully-connected layers, 1 to {MAX_BITS} (default 6)")
    p.add_argument("--init", choices=["linear", "density", "forgy"], default="linear", help="k-means initialisation (default linear)")
    p.add_argument("--prune-epochs", type=int_in(0, MAX_EPOCHS), default=None,
                   help="retraining epochs after each pruning step, >= 0 (default 6)")
    p.add_argument("--share-epochs", type=int_in(0, MAX_EPOCHS), default=None,
                   help="centroid fine-tuning epochs, >= 0 (default 3)")
    p.add_argument("--out", required=True, help="compressed file to write (e.g. net.nrdc)")
    p.add_argument("--table", default=None, help="also write the per-stage rows as JSON here")
    p.set_defaults(func=_compress)


def config_from_args(args: argparse.Namespace, seed: int):
    """The DeepCompConfig the flags ask for (defaults where a flag is absent)."""
    from neon_ray.deepcomp.pipeline import DeepCompConfig  # here, not at the top: torch, and `--help` must stay fast

    cfg = DeepCompConfig(seed=seed, init=args.init)
    if args.q is not None:
        cfg = replace(cfg, q_schedule=tuple(args.q))
    if args.bits is not None:
        cfg = replace(cfg, fc_bits=args.bits)
    if args.prune_epochs is not None:
        cfg = replace(cfg, prune_retrain=replace(cfg.prune_retrain, max_epochs=args.prune_epochs) if args.prune_epochs else None)
    if args.share_epochs is not None:
        cfg = replace(cfg, share_retrain=replace(cfg.share_retrain, max_epochs=args.share_epochs) if args.share_epochs else None)
    return cfg


def _compress(args: argparse.Namespace) -> int:
    # imported here, not at the top: they pull in torch, and `neon-ray --help` must stay fast
    from neon_ray.data.datasets import load_dataset
    from neon_ray.deepcomp.pipeline import compress_model, format_stage_table
    from neon_ray.nets.checkpoint import load_network
    from neon_ray.runtime.files import atomic_write_text, check_output_file

    # Output locations first: a refused --out must not cost the whole compression.
    out = check_output_file(args.out, "--out (compressed network)")
    table = check_output_file(args.table, "--table (per-stage rows)") if args.table else None
    if table is not None and table == out:
        raise ConfigError(f"--table and --out are the same file {out}; give two different paths")
    model, meta = load_network(args.network)
    name = args.dataset or meta.get("dataset")
    if not name:
        raise ConfigError(f"{args.network}: its metadata names no dataset; pass --dataset NAME")
    seed = args.seed if args.seed is not None else int(meta.get("seed", 0))
    cfg = config_from_args(args, seed)
    dataset = load_dataset(name, args.data_dir, seed=seed)
    if dataset.X_train.shape[1] != model.spec.in_features:
        raise ConfigError(
            f"dataset {name!r} has {dataset.X_train.shape[1]} features but {args.network} expects {model.spec.in_features}"
        )
    print(f"compressing {model.spec.describe()} on {name} (seed {seed}): q {cfg.q_schedule}, {cfg.fc_bits} bits, {cfg.init} init")
    _, rows = compress_model(model, dataset, cfg, out, log=print)
    print(format_stage_table(rows))
    print(f"compressed network written to {args.out} ({rows[-1]['bytes']:,} bytes)")
    if table is not None:
        atomic_write_text(table, json.dumps({"config": cfg.to_dict(), "rows": rows}, indent=1))
    return 0
