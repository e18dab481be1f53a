"""Agent training throughput with 1 and with 2 EnvRunners on the same zoo, measured in one run.

    neon-ray bench rollout --zoo runs/zoo --out bench/rollout.json --iterations 5   (cli/bench_rollout.py)

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

import os
import time
from dataclasses import replace

from neon_ray.agent.config import mean_episode_steps
from neon_ray.agent.training import algo_config, runner_cpus
from neon_ray.runtime import ray_session as raysession
from neon_ray.zoo.store import open_zoo

TARGET_SPEEDUP = 1.8


def rollout_figures(base, runners, iterations: int, batch_episodes: int, address: str | None = None) -> dict:
    """`measure_rollout` with the machine's load averages around it and the speed-up of the most
    runners over the fewest (when they differ)."""
    load_before = os.getloadavg()
    by_runners = measure_rollout(base, runners, iterations, batch_episodes, address=address)
    figures = {"by_runners": by_runners, "load_average_before": load_before, "load_average_after": os.getloadavg()}
    lo, hi = min(runners), max(runners)
    if hi != lo:
        ratio = by_runners[hi]["steps_per_s"] / by_runners[lo]["steps_per_s"]
        figures.update({"speedup": ratio, "speedup_runners": [lo, hi], "target": TARGET_SPEEDUP})
    return figures


def measure_rollout(base, runners, iterations: int, batch_episodes: int, address: str | None = None) -> dict[int, dict]:
    """Throughput figures per EnvRunner count for the agent configuration `base`."""
    zoo = open_zoo(base.zoo)
    selection = base.select(zoo)
    batch = max(1, round(batch_episodes * mean_episode_steps(zoo.manifest(), selection.train_ids, base.episode.loops)))
    results = {}
    with raysession.ray_session(address):
        cpus = raysession.cluster_cpus()
        for n in runners:
            cfg = replace(base, num_env_runners=n, train_batch_size=batch, episodes=1).resolve(selection, zoo.manifest())
            results[n] = _measure_one(cfg, selection.train_ids, cpus, iterations)
    return results


def _measure_one(cfg, network_ids, cpus: float, iterations: int) -> dict:
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
