"""`neon-ray bench rollout`: agent training throughput with 1 and with 2 EnvRunners, and the ratio.

    neon-ray bench rollout --zoo runs/zoo --out bench/rollout.json --iterations 5

What is measured and how: neon_ray/bench/rollout.py.
"""
from __future__ import annotations

import argparse
from dataclasses import replace

from neon_ray.cli.common import MAX_SEED, add_address, csv_list, int_in, int_list_in
from neon_ray.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser(
        "rollout",
        help="agent training throughput (pruning steps/s, episodes/min) with 1 and with 2 EnvRunners, and the ratio",
        description="Train the same agent with each EnvRunner count for a few iterations (after one untimed "
                    "start-up iteration) and report pruning steps per second, episodes per minute and the speed-up.",
    )
    p.add_argument("--zoo", required=True, help="zoo directory (see `neon-ray zoo build`)")
    p.add_argument("--out", required=True, help="JSON file for the figures")
    p.add_argument("--datasets", type=csv_list, default=None,
                   help="comma-separated datasets whose train networks to use (default: all in the zoo)")
    p.add_argument("--iterations", type=int_in(1), default=5, help="timed training iterations per runner count, >= 1 (default 5)")
    p.add_argument("--runners", type=int_list_in(1, 1024), default=(1, 2), help="EnvRunner counts to compare, each >= 1 (default 1,2)")
    p.add_argument("--batch-episodes", type=int_in(1), default=8, help="episodes' worth of steps per iteration, >= 1 (default 8)")
    p.add_argument("--loops", type=int_in(1), default=4, help="passes over the hidden layers per episode, >= 1 (default 4)")
    p.add_argument("--finetune-epochs", type=int_in(1), default=3,
                   help="fine-tuning epochs at most per pruning step, >= 1 (default 3)")
    p.add_argument("--balance-runners", choices=("measured", "model"), default="measured",
                   help="each runner's share of a batch from its measured seconds per step (default) or from the "
                        "zoo's figures ('model', as `neon-ray train --balance-runners model`)")
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help=f"seed, 0 to {MAX_SEED} (default 0)")
    add_address(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: `neon-ray --help` must stay fast (bench/ pulls in torch and Ray)
    from neon_ray.agent.config import AgentTrainConfig, default_agent_episode, default_finetune
    from neon_ray.bench.io import check_out, write_json
    from neon_ray.bench.rollout import rollout_figures

    check_out(args.out)
    if args.iterations < 1 or args.batch_episodes < 1 or not args.runners or min(args.runners) < 1:
        raise ConfigError("bench rollout: --iterations, --batch-episodes and every --runners value must be >= 1")
    episode = default_agent_episode(loops=args.loops, finetune=replace(default_finetune(), max_epochs=args.finetune_epochs))
    base = AgentTrainConfig(zoo=args.zoo, datasets=tuple(args.datasets) if args.datasets else None, episode=episode,
                            warmup_episodes=0, seed=args.seed, balance_runners=args.balance_runners)
    measured = rollout_figures(base, args.runners, args.iterations, args.batch_episodes, address=args.address)
    for line in _runner_lines(measured["by_runners"]):
        print(line)
    figures = {"benchmark": "rollout", "zoo": args.zoo, "datasets": args.datasets, "iterations": args.iterations,
               "batch_episodes": args.batch_episodes, "loops": args.loops, "finetune_epochs": args.finetune_epochs,
               "balance_runners": args.balance_runners, **measured}
    if "speedup" in figures:
        lo, hi = figures["speedup_runners"]
        verdict = "meets" if figures["speedup"] >= figures["target"] else "misses"
        print(f"speed-up {hi} vs {lo} runners: x{figures['speedup']:.2f} ({verdict} the x{figures['target']} target)")
    write_json(args.out, figures)
    print(f"figures written to {args.out}")
    return 0


def _runner_lines(by_runners: dict) -> list[str]:
    return [f"runners={n}: {fig['env_steps']} steps, {fig['episodes']} episodes in {fig['seconds']:.1f} s -> "
            f"{fig['steps_per_s']:.2f} steps/s, {fig['episodes_per_min']:.1f} episodes/min "
            f"(start-up iteration {fig['startup_s']:.1f} s, build {fig['build_s']:.1f} s; "
            f"runner CPU share {fig['runner_cpu_share']}, driver {fig['driver_cpu_share']}; "
            f"{fig['steps_per_runner_cpu_s']:.1f} steps per runner CPU second)"
            for n, fig in by_runners.items()]
