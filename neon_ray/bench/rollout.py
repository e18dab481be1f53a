"""Agent training throughput with 1 and with 2 EnvRunners on the same zoo, measured in one run.

    neon-ray bench rollout --zoo runs/zoo --out bench/rollout.json --iterations 5

For each runner count the same agent configuration is built, one `train()` iteration is run
untimed (process start, dataset loading, first network loads), and then `--iterations` timed
iterations give pruning steps per second and episodes per minute. The ratio of the two step
rates is the speed-up (target >= 1.8 on 2 cores).

CPU budget: EnvRunners run torch single-threaded, and the driver (main process + learner)
reserves 0.5 logical CPU and sits idle while the runners sample, so on a 2-CPU machine two
runners (0.75 CPU each) really run side by side. Every runner count gets the same batch
(`--batch-episodes` episodes' worth of steps per update), so both do the same work per iteration.
Each sampling round waits for its slowest runner (A2C samples synchronously, one episode per
runner per round), and the environment pins datasets to runners, so episodes of different
lengths or datasets of different cost leave a runner idle; the figures include that, as training
does. `--datasets` restricts the zoo, e.g. to one dataset, to measure balanced runners.

Alongside wall-clock rates the JSON records each runner's CPU share (CPU seconds per wall second)
and the steps per runner CPU second: on a machine shared with other work the shares show how
much CPU the runners really got, and the per-CPU-second rate stays comparable between runner
counts (it drops only through parallel overhead, not through waiting).
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

from neon_ray.bench.io import MAX_SEED, check_out, int_list_in, write_json
from neon_ray.cli.common import add_address, csv_list, int_in

TARGET_SPEEDUP = 1.8


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
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help=f"seed, 0 to {MAX_SEED} (default 0)")
    add_address(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neon_ray.agent.training import AgentTrainConfig, default_finetune
    from neon_ray.errors import ConfigError

    check_out(args.out)
    if args.iterations < 1 or args.batch_episodes < 1 or not args.runners or min(args.runners) < 1:
        raise ConfigError("bench rollout: --iterations, --batch-episodes and every --runners value must be >= 1")
    base = AgentTrainConfig(zoo=args.zoo, datasets=tuple(args.datasets) if args.datasets else None, loops=args.loops,
                            warmup_episodes=0, seed=args.seed,
                            finetune=replace(default_finetune(), max_epochs=args.finetune_epochs))
    load_before = os.getloadavg()
    by_runners = measure_rollout(base, args.runners, args.iterations, args.batch_episodes, address=args.address)
    for n, fig in by_runners.items():
        print(f"runners={n}: {fig['env_steps']} steps, {fig['episodes']} episodes in {fig['seconds']:.1f} s -> "
              f"{fig['steps_per_s']:.2f} steps/s, {fig['episodes_per_min']:.1f} episodes/min "
              f"(start-up iteration {fig['startup_s']:.1f} s, build {fig['build_s']:.1f} s; "
              f"runner CPU share {fig['runner_cpu_share']}, driver {fig['driver_cpu_share']}; "
              f"{fig['steps_per_runner_cpu_s']:.1f} steps per runner CPU second)")
    figures = {"benchmark": "rollout", "zoo": args.zoo, "datasets": args.datasets, "iterations": args.iterations,
               "batch_episodes": args.batch_episodes, "loops": args.loops, "finetune_epochs": args.finetune_epochs,
               "by_runners": by_runners, "load_average_before": load_before, "load_average_after": os.getloadavg()}
    lo, hi = min(args.runners), max(args.runners)
    if hi != lo:
        ratio = by_runners[hi]["steps_per_s"] / by_runners[lo]["steps_per_s"]
        figures.update({"speedup": ratio, "speedup_runners": [lo, hi], "target": TARGET_SPEEDUP})
        verdict = "meets" if ratio >= TARGET_SPEEDUP else "misses"
        print(f"speed-up {hi} vs {lo} runners: x{ratio:.2f} ({verdict} the x{TARGET_SPEEDUP} target)")
    write_json(args.out, figures)
    print(f"figures written to {args.out}")
    return 0


def measure_rollout(base, runners, iterations: int, batch_episodes: int, address: str | None = None) -> dict[int, dict]:
    """Throughput figures per EnvRunner count for the agent configuration `base`."""
    from neon_ray.agent.protocols import select_networks
    from neon_ray.agent.training import mean_episode_steps
    from neon_ray.runtime.ray_session import cluster_cpus, ray_session
    from neon_ray.zoo.build import open_zoo

    zoo = open_zoo(base.zoo)
    selection = select_networks(zoo, base.datasets, base.holdout)
    batch = max(1, round(batch_episodes * mean_episode_steps(zoo.manifest(), selection.train_ids, base.loops)))
    results = {}
    with ray_session(address):
        cpus = cluster_cpus()
        for n in runners:
            cfg = replace(base, num_env_runners=n, train_batch_size=batch, episodes=1).resolve(selection, zoo.manifest())
            results[n] = _measure_one(cfg, selection.train_ids, cpus, iterations)
    return results


def _measure_one(cfg, network_ids, cpus: float, iterations: int) -> dict:
    from neon_ray.agent.training import algo_config, runner_cpus

    t0 = time.perf_counter()
    algo = algo_config(cfg, network_ids, cpu_budget=cpus,
                       num_cpus_per_env_runner=runner_cpus(cpus, cfg.num_env_runners)).build_algo()
    build_s = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        algo.train()
        startup_s = time.perf_counter() - t0
        steps = episodes = 0
        cpu0, driver0 = _runner_cpu_seconds(algo), time.process_time()
        t0 = time.perf_counter()
        for _ in range(iterations):
            result = algo.train()
            steps += int(result["env_runners"].get("num_env_steps_sampled", 0))
            episodes += int(result["neon"]["episodes"])
        seconds = time.perf_counter() - t0
        cpu1, driver1 = _runner_cpu_seconds(algo), time.process_time()
    finally:
        algo.stop()
    return {"env_steps": steps, "episodes": episodes, "seconds": seconds, "steps_per_s": steps / seconds,
            "episodes_per_min": 60.0 * episodes / seconds, "train_batch_size": cfg.train_batch_size,
            "build_s": build_s, "startup_s": startup_s,
            # CPU seconds per wall second of each runner and of the driver: well below 1 for a runner
            # means it waited (for the other runner at the sampling barrier, or for a busy machine)
            "runner_cpu_share": [round((b - a) / seconds, 3) for a, b in zip(cpu0, cpu1)],
            "driver_cpu_share": round((driver1 - driver0) / seconds, 3),
            # steps per CPU second the runners actually got: comparable across runner counts even on a busy machine
            "steps_per_runner_cpu_s": steps / max(sum(b - a for a, b in zip(cpu0, cpu1)), 1e-9)}


def _runner_cpu_seconds(algo) -> list[float]:
    """CPU seconds used so far by each remote EnvRunner process, by worker index."""
    pairs = algo.env_runner_group.foreach_env_runner(lambda r: (r.worker_index, time.process_time()),
                                                     local_env_runner=False)
    return [cpu for _, cpu in sorted(pairs)]
