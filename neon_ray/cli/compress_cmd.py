"""`neon-ray compress`: Deep Compression (prune, share, Huffman) of a saved network into one file."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from neon_ray.cli.common import float_list


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
    p.add_argument("--seed", type=int, default=None, help="split and training seed (default: the network's metadata, else 0)")
    p.add_argument("--q", type=float_list, default=None, help="pruning schedule, comma-separated q values (default 0.5,1.0,1.4,1.7,2.0,2.3)")
    p.add_argument("--bits", type=int, default=None, help="cluster-index bits of fully-connected layers (default 6)")
    p.add_argument("--init", choices=["linear", "density", "forgy"], default="linear", help="k-means initialisation (default linear)")
    p.add_argument("--prune-epochs", type=int, default=None, help="retraining epochs after each pruning step (default 6)")
    p.add_argument("--share-epochs", type=int, default=None, help="centroid fine-tuning epochs (default 3)")
    p.add_argument("--out", required=True, help="compressed file to write (e.g. net.nrdc)")
    p.add_argument("--table", default=None, help="also write the per-stage rows as JSON here")
    p.set_defaults(func=_compress)


def config_from_args(args: argparse.Namespace, seed: int):
    """The DeepCompConfig the flags ask for (defaults where a flag is absent)."""
    from dataclasses import replace

    from neon_ray.deepcomp import DeepCompConfig

    cfg = DeepCompConfig(seed=seed, init=args.init)
    if args.q is not None:
        cfg = replace(cfg, q_schedule=tuple(args.q))
    if args.bits is not None:
        cfg = replace(cfg, fc_bits=args.bits)
    if args.prune_epochs is not None:
        cfg = replace(cfg, prune_retrain=replace(cfg.prune_retrain, epochs=args.prune_epochs))
    if args.share_epochs is not None:
        cfg = replace(cfg, share_retrain=replace(cfg.share_retrain, epochs=args.share_epochs))
    return cfg


def _compress(args: argparse.Namespace) -> int:
    from neon_ray.checkpoint import load_network
    from neon_ray.data import load_dataset
    from neon_ray.deepcomp import compress_model, format_table
    from neon_ray.errors import ConfigError

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
    _, rows = compress_model(model, dataset, cfg, args.out, log=print)
    print(format_table(rows))
    print(f"compressed network written to {args.out} ({rows[-1]['bytes']:,} bytes)")
    if args.table:
        Path(args.table).parent.mkdir(parents=True, exist_ok=True)
        Path(args.table).write_text(json.dumps({"config": cfg.to_dict(), "rows": rows}, indent=1))
    return 0
