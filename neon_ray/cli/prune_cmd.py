"""`neon-ray prune`: apply a trained agent to zoo networks in parallel on Ray, one Parquet row per network."""
from __future__ import annotations

import argparse

from neon_ray.cli.common import MAX_SEED, add_address, csv_list, fixed_tolerance_arg, int_in



def register(sub) -> None:
    p = sub.add_parser(
        "prune",
        help="prune zoo networks with a trained agent (greedy policy by default), on Ray",
        description=(
            "Apply the agent of a training run to networks it has not trained on and write one result row per "
            "network. Default networks: protocol B (the run held datasets out) every network of the held-out "
            "datasets; protocol A the test networks of the run's datasets. Prints the summary table at the end."
        ),
    )
    p.add_argument("--agent", required=True,
                   help="training run directory (RUN with config.json and checkpoints/), or its upload at a URI "
                        "(s3://..., see `neon-ray agent upload`); only the best or latest checkpoint's policy.json + "
                        "policy.pt are read, never RLlib's pickles")
    p.add_argument("--zoo", default=None, help="zoo directory (default: the one the agent trained on)")
    p.add_argument("--datasets", type=csv_list, default=None, help="comma-separated datasets (default: see above)")
    p.add_argument("--role", choices=["test", "all"], default=None, help="which networks of those datasets (default: see above)")
    p.add_argument("--tolerance", type=fixed_tolerance_arg, default=None,
                   help="allowed accuracy drop in pp to prune for (required when the agent trained on a range)")
    p.add_argument("--guard", action=argparse.BooleanOptionalAction, default=True,
                   help="return the smallest network visited in the episode whose val accuracy is within the tolerance "
                        "of the original, not the last one (default on)")
    p.add_argument("--sample", action="store_true", help="sample actions from the policy instead of taking the most likely one")
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help="seed of sampled actions and fine-tuning (default 0)")
    p.add_argument("--results", required=True, help="results directory (Hive-partitioned Parquet)")
    p.add_argument("--save-networks", default=None, metavar="DIR", help="save pruned networks as DIR/{dataset}/{network_id}.json|.pt")
    p.add_argument("--compress", action="store_true",
                   help="also apply Deep Compression to each pruned network (an extra '<method>+dc' row; .nrdc files with --save-networks)")
    p.add_argument("--no-timing", action="store_true", help="skip latency measurements (faster, reproducible rows)")
    p.add_argument("--run-id", default=None, help="run ID of the rows (default: from method, run name and tolerance)")
    add_address(p)
    p.set_defaults(func=_prune)


def _prune(args: argparse.Namespace) -> int:
    # imported here: they load torch and Ray, and `neon-ray --help` must stay fast
    from pathlib import Path

    from neon_ray.agent.apply import apply_agent
    from neon_ray.pruning.episodes import RunOptions
    from neon_ray.runtime.files import check_output_dir, resolved
    from neon_ray.results.summary import format_summary, summarise

    check_output_dir(args.results, "results directory (--results)")
    if args.save_networks:
        check_output_dir(args.save_networks, "pruned networks directory (--save-networks)")
    options = RunOptions(timing=not args.no_timing, compress=args.compress, save_dir=args.save_networks)
    # relative paths work from any working directory; a URI is read as given by every Ray task
    agent = resolved(args.agent)
    zoo = str(Path(args.zoo).expanduser().resolve()) if args.zoo else None
    frame = apply_agent(
        agent, zoo=zoo, datasets=args.datasets, role=args.role, tolerance=args.tolerance,
        greedy=not args.sample, guard=args.guard, seed=args.seed, results=args.results, run_id=args.run_id,
        options=options, address=args.address,
    )
    print(format_summary(summarise(frame)))
    print(f"{len(frame)} rows written to {args.results} (run {frame['run_id'].iloc[0]})")
    if args.save_networks:
        print(f"pruned networks saved under {args.save_networks}")
    return 0
