"""`neon-ray datasets list|show`: what data is available and how one dataset looks after loading.

Library modules are imported inside the handlers: `neon-ray --help` must not pay for torch and pandas.
"""
from __future__ import annotations

import argparse

from neon_ray.cli.common import MAX_SEED, int_in

DATA_DIR_HELP = "directory with MANIFEST.csv (without it: the scikit-learn bundled sets)"
MAX_NAMES_SHOWN = 12


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("datasets", help="list the available datasets or show one after loading")
    sub = parser.add_subparsers(dest="datasets_command", required=True, metavar="ACTION")

    listing = sub.add_parser("list", help="table of datasets: name, rows, features, classes")
    listing.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    listing.set_defaults(func=run_list)

    show = sub.add_parser("show", help="load one dataset and print its splits, features and classes")
    show.add_argument(
        "name",
        help="MANIFEST name, sklearn:NAME, or a .csv/.csv.gz/.parquet path[#target]; a file's integer-coded "
        'nominal columns are declared in FILE.columns.json next to it: {"categorical": ["col", ...]}',
    )
    show.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    show.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help=f"seed of the train/val/test split, 0 to {MAX_SEED} (default 0)")
    show.set_defaults(func=run_show)


def run_list(args: argparse.Namespace) -> int:
    from neon_ray.data.sources import list_datasets

    table = list_datasets(args.data_dir)
    print(table[["name", "rows", "features", "classes"]].to_string(index=False))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from neon_ray.data.datasets import load_dataset

    ds = load_dataset(args.name, args.data_dir, seed=args.seed)
    print(f"dataset   {ds.name}")
    print(f"source    {ds.source}")
    print(f"rows      {ds.n_rows}")
    print(f"splits    train {len(ds.y_train)}, val {len(ds.y_val)}, test {len(ds.y_test)} (seed {ds.seed})")
    print(f"features  {ds.n_features} after encoding: {_preview(ds.feature_names)}")
    print(f"classes   {ds.n_classes}:")
    for index, name in enumerate(ds.class_names):
        counts = ", ".join(f"{which} {int((ds.split(which)[1] == index).sum())}" for which in ("train", "val", "test"))
        print(f"  {index:>3}  {name}  ({counts})")
    return 0


def _preview(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES_SHOWN])
    return shown + (f", ... ({len(names) - MAX_NAMES_SHOWN} more)" if len(names) > MAX_NAMES_SHOWN else "")
