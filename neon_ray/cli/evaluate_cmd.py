"""`neon-ray evaluate`: the agent against the baselines on the same networks, one table per tolerance."""
from __future__ import annotations

import argparse

from neon_ray.cli.common import MAX_SEED, add_address, csv_list, float_list, int_in



def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="prune every network of some datasets with the agent and the baselines, at several tolerances, and score them",
        description=(
            "Prune every network (all roles) of --datasets with the agent (greedy; with --samples K also the best of "
            "the greedy and K sampled episodes, chosen on val) and with each baseline, at each tolerance. Writes the "
            "rows to --results, prints one table per tolerance with the score (the geometric-mean reduction, a "
            "network that drops more than the tolerance on test counting x1), and writes evaluation.json and a "
            "Pareto plot per tolerance to --out."
        ),
    )
    p.add_argument("--agent", required=True, help="training run directory of the agent")
    p.add_argument("--zoo", default=None, help="zoo directory (default: the one the agent trained on)")
    p.add_argument("--datasets", type=csv_list, required=True, help="comma-separated datasets whose networks to prune")
    p.add_argument("--tolerances", type=float_list, required=True, help="comma-separated tolerances in pp, e.g. 1,5,50")
    p.add_argument("--results", required=True, help="results directory (Hive-partitioned Parquet)")
    p.add_argument("--baselines", type=csv_list, default=None,
                   help="comma-separated baselines (default random,random-guard,uniform-search,magnitude): "
                        "random, uniform, magnitude, uniform-search, and '<name>-guard' for random, uniform or "
                        "magnitude with the guard. Unguarded ones do not depend on the tolerance: they run once and are scored at every tolerance")
    p.add_argument("--samples", type=int_in(0, 1000), default=0,
                   help="also the best of the greedy and K sampled episodes per network: the smallest network within "
                        "the tolerance on val, else the greedy one (default 0: greedy only)")
    p.add_argument("--guard", action=argparse.BooleanOptionalAction, default=True,
                   help="the agent returns the smallest network visited within the tolerance on val (default on)")
    p.add_argument("--seed", type=int_in(0, MAX_SEED - 1000), default=0, help="seed of baselines and fine-tuning (default 0)")
    p.add_argument("--out", default=None, help="folder for evaluation.json and pareto_a<A>.png (default RES/_evaluation)")
    p.add_argument("--no-timing", action="store_true", help="skip latency measurements (faster, reproducible rows)")
    add_address(p)
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    # imported here: they load torch and Ray, and `neon-ray --help` must stay fast
    from neon_ray.agent.evaluate import EvaluateConfig, evaluate
    from neon_ray.pruning.episodes import RunOptions

    more = {} if args.baselines is None else {"baselines": tuple(args.baselines)}
    cfg = EvaluateConfig(agent=args.agent, zoo=args.zoo, datasets=tuple(args.datasets),
                         tolerances=tuple(args.tolerances), results=args.results, samples=args.samples,
                         guard=args.guard, seed=args.seed, out=args.out, options=RunOptions(timing=not args.no_timing),
                         address=args.address, **more)
    ev = evaluate(cfg)
    print_tables(ev.tables)
    print(f"\nrows written to {args.results}; evaluation.json and plots in {ev.out}")
    return 0


def print_tables(tables: dict) -> None:
    """One summary table per tolerance, as `evaluate` returns them (also `neon-ray demo` and `pipeline`)."""
    from neon_ray.results.summary import format_summary  # here: it loads pandas, and `--help` must stay fast

    for tol, table in tables.items():
        print(f"\n== tolerance {tol:g} pp: {int(table['networks'].max())} networks per method ==")
        print(format_summary(table))
