"""Timed pruning episodes: one record per step and per episode, with the seconds of each piece, and their medians.

Episodes run through `PruningEnv` in this process, taking the same keep-rate at every step. Per
step the env's `info["seconds"]` gives the pieces: `compress` (slicing the layer), `finetune`,
`eval` (val accuracy and the reward's costs) and `observe` (the next observation); `other` is
the rest of the wall-clock `env.step` time. An episode's seconds are reset + all steps (test
accuracy, which is for reporting only, is measured outside).
"""
from __future__ import annotations

import logging
import statistics
import time
from typing import Callable

from neon_ray.bench.flops import finetune_flops
from neon_ray.errors import ConfigError

logger = logging.getLogger(__name__)

PIECES = ("compress", "finetune", "eval", "observe", "other")


def keep_rate_action(env, keep_rate: float) -> int:
    """The env's action for `keep_rate` (a ConfigError if it is not one of its keep-rates)."""
    rates = [float(r) for r in env.config.episode.keep_rates]
    if keep_rate not in rates:
        raise ConfigError(f"keep-rate {keep_rate} is not one of the env's keep-rates {rates}")
    return rates.index(keep_rate)


def warm_up(env, networks: int, keep_rate: float) -> float:
    """Load every network the env will meet (`networks` resets) and take one step, outside the timings.

    The env loads datasets and networks lazily on first use, and the first fine-tuning pays
    one-off imports; none of that belongs in a per-step figure. The caller's next
    `reset(seed=...)` restarts the env's network cycle, so the timed episodes are unchanged.
    """
    t0 = time.perf_counter()
    action = keep_rate_action(env, keep_rate)
    for _ in range(max(1, networks)):
        env.reset()
    env.step(action)
    return time.perf_counter() - t0


def run_episodes(env, zoo, episodes: int, keep_rate: float, reset_seed: int | None = None,
                 log: Callable[[str], None] | None = None) -> tuple[list, list]:
    """Run `episodes` episodes of `env` (on the opened `zoo`) taking `keep_rate` at every step.

    Returns (step records, episode records); one line per episode goes to `log` (default: this
    module's logger)."""
    log = log or logger.info
    action = keep_rate_action(env, keep_rate)
    cfg = env.config.episode.finetune
    sizes: dict[str, tuple[int, int]] = {}
    steps, records = [], []
    for e in range(episodes):
        ep_steps, record = _run_episode(env, zoo, e, action, cfg, sizes, reset_seed if e == 0 else None)
        steps.extend(ep_steps)
        records.append(record)
        log(f"  episode {e + 1}/{episodes} {record['network_id']} {record['arch_orig']} -> {record['arch']}: "
            f"{record['seconds']:.2f} s, {record['steps']} steps, test acc {record['test_acc_orig']:.4f} -> {record['test_acc']:.4f}")
    return steps, records


def _split_sizes(zoo, dataset: str, sizes: dict) -> tuple[int, int]:
    """(train rows, val rows) of `dataset`, for the FLOP count (loaded once, outside the timings)."""
    if dataset not in sizes:
        data = zoo.dataset(dataset)
        sizes[dataset] = (len(data.y_train), len(data.y_val))
    return sizes[dataset]


def _run_episode(env, zoo, e: int, action: int, cfg, sizes: dict, seed: int | None) -> tuple[list, dict]:
    """One timed episode: its step records and its episode record."""
    t0, c0 = time.perf_counter(), time.process_time()
    _, info = env.reset(seed=seed)
    reset_seconds, reset_cpu = time.perf_counter() - t0, time.process_time() - c0
    nid = info["network_id"]
    n_train, n_val = _split_sizes(zoo, info["dataset"], sizes)
    widest = max(env.current_model().spec.hidden)
    test_before = env.test_accuracy(original=True)
    sums = {p: 0.0 for p in PIECES}
    sums["observe"] += info["seconds"]["observe"]
    sums["other"] += reset_seconds - info["seconds"]["observe"]
    steps, terminated = [], False
    while not terminated:
        rec, info, terminated = _timed_step(env, action, cfg, n_train, n_val)
        steps.append({"network_id": nid, "episode": e, **rec})
        for p in PIECES:
            sums[p] += rec[f"{p}_s"]
    record = {
        "network_id": nid, "episode": e, "arch_orig": info["arch_orig"], "arch": info["arch"], "widest": widest,
        "steps": len(steps), "seconds": reset_seconds + sum(s["seconds"] for s in steps),
        "cpu_s": reset_cpu + sum(s["cpu_s"] for s in steps), **{f"{p}_s": sums[p] for p in PIECES},
        "finetune_gflop": sum(s["total_gflop"] for s in steps if s["changed"]),
        "params_orig": info["params_orig"], "params": info["params"],
        "val_acc_orig": info["val_acc_orig"], "val_acc": info["val_acc"],
        "test_acc_orig": test_before, "test_acc": env.test_accuracy(),
    }
    return steps, record


def _timed_step(env, action: int, cfg, n_train: int, n_val: int) -> tuple[dict, dict, bool]:
    """One `env.step` with its pieces' seconds and, if it fine-tuned, the fine-tuning's FLOPs and rate."""
    t0, c0 = time.perf_counter(), time.process_time()
    _, _, terminated, _, info = env.step(action)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    sec = dict(info["seconds"])
    sec["other"] = max(0.0, wall - sum(sec.get(p, 0.0) for p in PIECES[:-1]))
    rec = {"step": info["step"], "layer": info["layer"], "changed": info["changed"], "seconds": wall, "cpu_s": cpu,
           **{f"{p}_s": sec.get(p, 0.0) for p in PIECES}}
    if info["changed"]:
        model = env.current_model()
        fl = finetune_flops(model, info["layer"], cfg, n_train, n_val, info["finetune_epochs"])
        rec.update(fl, width=model.spec.hidden[info["layer"]], arch=model.spec.describe())
        rec["finetune_gflops"] = fl["total_gflop"] / sec["finetune"] if sec["finetune"] > 0 else None
        # CPU seconds of the fine-tuning, estimated as its wall-clock share of the step's CPU time
        rec["finetune_cpu_s"] = cpu * sec["finetune"] / wall if wall > 0 else 0.0
        rec["finetune_gflops_cpu"] = fl["total_gflop"] / rec["finetune_cpu_s"] if rec["finetune_cpu_s"] > 0 else None
    return rec, info, terminated


def median(values) -> float | None:
    """Median of the values that are not None (None if there are none)."""
    values = [v for v in values if v is not None]
    return float(statistics.median(values)) if values else None


def summarise_steps(steps: list) -> dict:
    """Medians per step (all steps, and steps that fine-tuned) and the obs+eval share of step time."""
    ft = [s for s in steps if s["changed"]]
    total = sum(s["seconds"] for s in steps)
    obs_eval = sum(s["observe_s"] + s["eval_s"] for s in steps)
    ft_seconds = sum(s["finetune_s"] for s in ft)
    ft_cpu = sum(s["finetune_cpu_s"] for s in ft)
    ft_gflop = sum(s["total_gflop"] for s in ft)
    return {
        "steps": len(steps),
        "finetuned_steps": len(ft),
        "median_step_s": median(s["seconds"] for s in steps),
        **{f"median_step_{p}_s": median(s[f"{p}_s"] for s in steps) for p in PIECES},
        "median_finetune_epochs": median(s["epochs"] for s in ft),
        "obs_eval_share": obs_eval / total if total else None,
        "obs_eval_share_median": median((s["observe_s"] + s["eval_s"]) / s["seconds"] for s in steps if s["seconds"] > 0),
        "finetune_share": sum(s["finetune_s"] for s in steps) / total if total else None,
        "finetune_gflops": ft_gflop / ft_seconds if ft and ft_seconds > 0 else None,
        "median_step_finetune_gflops": median(s["finetune_gflops"] for s in ft),
        "finetune_gflops_cpu": ft_gflop / ft_cpu if ft and ft_cpu > 0 else None,
        "cpu_over_wall": sum(s["cpu_s"] for s in steps) / total if total else None,
    }


def summarise_episodes(records: list) -> dict:
    """Medians per episode: seconds, CPU seconds and each piece's seconds."""
    return {
        "episodes": len(records),
        "median_episode_s": median(r["seconds"] for r in records),
        "median_episode_cpu_s": median(r["cpu_s"] for r in records),
        **{f"median_episode_{p}_s": median(r[f"{p}_s"] for r in records) for p in PIECES},
    }
