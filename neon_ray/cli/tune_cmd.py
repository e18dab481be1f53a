"""`neon-ray tune`: sweep the reward trade-off (tolerance x reward) with Ray Tune."""
from __future__ import annotations

import argparse

from neon_ray.cli.common import add_address, float_in, int_in
from neon_ray.cli.train_cmd import add_agent_arguments, agent_config_from_args
from neon_ray.pruning.tolerance import parse_tolerance

EPILOG = """\
examples:
  # 3 tolerances x 3 rewards (the defaults), 50 iterations per trial, two trials at a time on 2 CPUs
  neon-ray tune --zoo runs/zoo --out runs/sweeps --iterations 50
  # protocol B over the 28-dataset zoo, custom grid
  neon-ray tune --zoo runs/zoo28 --holdout nursery,kr-vs-k --out runs/sweeps --name b-rewards \\
      --tolerances 5,1:50 --grid-reward neon --grid-reward composite:w_params=2,penalty=1

After the sweep OUT/NAME/summary.parquet holds one row per trial (mean return, parameter
reduction and accuracy change over its last iterations), also printed as a table (best mean
return first), and
`tensorboard --logdir OUT/NAME` shows every trial's curves.
"""


def register(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="sweep tolerance x reward with Ray Tune; writes a summary table and TensorBoard logs",
        description="Train one agent per grid point (every --tolerances value with every --grid-reward), "
                    "several trials at once, and summarise them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--zoo", required=True, help="zoo directory (see `neon-ray zoo build`)")
    p.add_argument("--out", required=True, help="Tune storage directory; the sweep goes to OUT/NAME")
    p.add_argument("--name", default="sweep", help="experiment name, the folder under OUT (default sweep)")
    p.add_argument("--tolerances", default=None,
                   help="comma-separated tolerances to sweep, each A or LO:HI (default 1,5,50)")
    p.add_argument("--grid-reward", action="append", default=None, metavar="REWARD",
                   help="a reward variant to sweep, NAME or NAME:key=value,...; repeat for several "
                        "(default: neon, composite:w_params=1, composite:w_params=3)")
    p.add_argument("--iterations", type=int_in(1), default=None,
                   help="training iterations per trial, >= 1 (default: until --episodes episodes)")
    p.add_argument("--episodes", type=int_in(1), default=None,
                   help="episodes per trial when --iterations is not given (default: 10 x training networks + warm-up)")
    p.add_argument("--cpus-per-trial", type=float_in(0, None, lo_open=True), default=1.0,
                   help="logical CPUs each trial reserves, > 0 (default 1)")
    p.add_argument("--concurrent", type=int_in(1), default=None, help="trials at once, >= 1 (default: as many as the CPUs fit)")
    add_agent_arguments(p, sweep=True)
    add_address(p)
    p.set_defaults(func=_tune)


def _tolerances(text: str) -> tuple:
    return tuple(parse_tolerance(item.strip(), "--tolerances: tolerance") for item in text.split(",") if item.strip())


def _tune(args: argparse.Namespace) -> int:
    # imported here: they load torch and Ray, and `neon-ray --help` must stay fast
    from neon_ray.runtime.files import check_output_dir
    from neon_ray.tune.sweep import (
        DEFAULT_REWARDS, DEFAULT_TOLERANCES, RewardVariant, SweepConfig, format_trials, run_sweep,
    )

    check_output_dir(args.out, "--out (sweep storage directory)")
    base = agent_config_from_args(args)
    rewards = tuple(RewardVariant.parse(r) for r in args.grid_reward) if args.grid_reward else DEFAULT_REWARDS
    cfg = SweepConfig(
        base=base,
        out=args.out,
        name=args.name,
        tolerances=_tolerances(args.tolerances) if args.tolerances else DEFAULT_TOLERANCES,
        rewards=rewards,
        iterations=args.iterations,
        cpus_per_trial=args.cpus_per_trial,
        concurrent=args.concurrent,
    )
    result = run_sweep(cfg, address=args.address)
    print(format_trials(result.table))
    failed = int((result.table["status"] != "ok").sum())
    if failed:
        print(f"{failed} trial(s) failed; see the error column of {result.summary_path}")
    return 1 if failed else 0
