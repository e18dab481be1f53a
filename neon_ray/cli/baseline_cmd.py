"""`neon-ray baseline`: random, uniform, magnitude or uniform-search pruning of zoo networks, one Parquet row per network.

Library modules are imported inside the handlers: `neon-ray --help` must not pay for torch and Ray.
"""
from __future__ import annotations

import argparse

from neon_ray.cli.common import add_address, csv_list, float_in, float_list, int_in
from neon_ray.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser(
        "baseline",
        help="prune zoo networks with a baseline (random agent, uniform keep-rate, global magnitude, "
             "tolerance-searched uniform keep-rate) on Ray",
        description=(
            "Run a baseline on the same networks, splits and counting as the agent and write one result row per "
            "network (Parquet, the common schema). Re-running the same baseline replaces its own rows."
        ),
    )
    p.add_argument("--zoo", required=True, help="zoo directory")
    p.add_argument("--method", required=True, choices=["random", "uniform", "magnitude", "uniform-search"],
                   help="which baseline; uniform-search: per network, the smallest uniform keep-rate whose val accuracy "
                        "stays within --tolerance, by bisection")
    p.add_argument("--rate", type=float_in(0, 1), default=None,
                   help="uniform: keep-rate of every layer (default 0.5); magnitude: fraction of weights removed (default 0.5)")
    p.add_argument("--max-layer-rate", type=float_in(0, 1), default=None,
                   help="magnitude: most of one layer's weights that may go (default 0.95; 1 allows emptying a layer)")
    p.add_argument("--datasets", type=csv_list, default=None, help="comma-separated datasets (default: all of the zoo)")
    p.add_argument("--role", choices=["train", "test", "all"], default="all", help="which networks (default all)")
    p.add_argument("--tolerance", type=float_in(0, 100), default=None,
                   help="tolerance (pp, in [0, 100]) recorded with the rows, for the within-tolerance share; "
                        "what --guard and uniform-search keep to on val (required by both)")
    p.add_argument("--guard", action=argparse.BooleanOptionalAction, default=False,
                   help="return the smallest network visited whose val accuracy is within --tolerance, not the last "
                        "one (default off for baselines; not for uniform-search, within tolerance by construction)")
    p.add_argument("--search-steps", type=int_in(1, 30), default=None,
                   help="uniform-search only: bisection steps over the keep-rate (default 7: within 2**-7)")
    p.add_argument("--loops", type=int_in(1, 1000), default=None, help="random only: passes over the hidden layers (default 4)")
    p.add_argument("--keep-rates", type=float_list, default=None, help="random only: the action set (default 1.0,0.9,0.8,0.7,0.6)")
    p.add_argument("--finetune-epochs", type=int_in(1, 100_000), default=None, help="fine-tuning epochs at most after each step (default: the env's)")
    p.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0, help="seed of random actions and fine-tuning (default 0)")
    p.add_argument("--no-timing", action="store_true", help="skip latency measurements (faster, reproducible rows)")
    p.add_argument("--results", required=True, help="results directory (Hive-partitioned Parquet)")
    p.add_argument("--run-id", default=None, help="run ID of the rows (default: from method, rate/loops and seed)")
    add_address(p)
    p.set_defaults(func=_baseline)


def episode_from_args(args: argparse.Namespace):
    """The EpisodeConfig the flags give; what they leave out keeps EpisodeConfig's defaults."""
    # in-function: neon-ray --help must not import torch (episode_config pulls in fine-tuning)
    from neon_ray.pruning.episode_config import EpisodeConfig
    from neon_ray.pruning.finetune import FinetuneConfig

    changes: dict = {}
    if args.keep_rates is not None:
        if args.method != "random":
            raise ConfigError(f"--keep-rates is the random agent's action set; {args.method} takes --rate")
        changes["keep_rates"] = tuple(args.keep_rates)
    if args.finetune_epochs is not None:
        changes["finetune"] = FinetuneConfig(max_epochs=args.finetune_epochs)
    return EpisodeConfig(**changes)


def _baseline(args: argparse.Namespace) -> int:
    from neon_ray.baselines.pruners import DEFAULT_MAX_LAYER_RATE, run_baseline
    from neon_ray.pruning.episodes import RunOptions
    from neon_ray.results.summary import format_summary, summarise

    if args.max_layer_rate is not None and args.method != "magnitude":
        raise ConfigError(f"--max-layer-rate is a magnitude pruning option; {args.method} does not take it")
    cap = DEFAULT_MAX_LAYER_RATE if args.max_layer_rate is None else args.max_layer_rate
    frame = run_baseline(
        args.zoo, args.method, args.rate, args.datasets, args.role, args.results,
        tolerance=args.tolerance, loops=args.loops, seed=args.seed, episode=episode_from_args(args),
        max_layer_rate=cap, guard=args.guard, search_steps=args.search_steps, run_id=args.run_id,
        options=RunOptions(timing=not args.no_timing), address=args.address,
    )
    print(format_summary(summarise(frame, by="dataset", tolerance=args.tolerance)))
    print(f"{len(frame)} rows written to {args.results} (run {frame['run_id'].iloc[0]})")
    return 0
