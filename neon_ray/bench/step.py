"""Seconds per pruning step and per episode, where they go, and the FLOP rate of fine-tuning.

`measure_step` times episodes on the networks of one dataset of a zoo; `measure_reference`
times method.md §9's reference networks (bench/reference.py) and compares them with the
original environment. Both run with ONE torch thread (as inside an RLlib EnvRunner), taking
the same keep-rate (default 0.8) at every step (bench/timed_episodes.py), and return the
figures as a dict; the caller prints and writes them.

The FLOP rate of fine-tuning (FLOPs / info["seconds"]["finetune"], FLOPs as bench/flops.py
counts them) is compared with a plain single-thread `torch.mm` of [batch x w] @ [w x w]
(batch = the fine-tuning batch size, w = the network's widest hidden layer, and w = 512 as a
fixed yardstick), measured at the start and the end of the same run; the better of the two is
the reference. Target: fine-tuning at >= 70% of it for networks whose widest layer is >= 500
(judged on CPU-time rates); with `--reference`, every episode >= 25x faster than the original's.
"""
from __future__ import annotations

import contextlib
import cProfile
import io
import json
import logging
import os
import pstats
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from neon_ray.bench.timed_episodes import median, run_episodes, summarise_episodes, summarise_steps, warm_up
from neon_ray.bench.flops import matmul_reference
from neon_ray.bench.reference import ORIGINAL, REFERENCE_DATASETS, REFERENCE_NETWORKS, build_reference_zoo, reference_id
from neon_ray.errors import ConfigError
from neon_ray.pruning.env import PruningEnv
from neon_ray.pruning.finetune import FinetuneConfig
from neon_ray.zoo.store import open_zoo

logger = logging.getLogger(__name__)

OBS_EVAL_TARGET = 0.10
MATMUL_SHARE_TARGET = 0.70
"""Fine-tuning's FLOP rate as a share of the matmul yardstick's, on networks at least WIDE wide."""
WIDE = 500
SPEEDUP_TARGET = 25
ZOO_EPISODES = 5
REFERENCE_EPISODES = 3


@dataclass(frozen=True)
class StepBenchConfig:
    """How the episodes of `bench step` are run."""

    keep_rate: float = 0.8
    loops: int = 4
    seed: int = 0
    finetune: dict = field(default_factory=dict)
    """FinetuneConfig overrides."""
    profile: str | None = None
    """cProfile stats file for the timed episodes (None: no profiling)."""

    def make_env(self, zoo, datasets, networks) -> PruningEnv:
        return PruningEnv({"zoo": zoo, "datasets": datasets, "networks": networks, "loops": self.loops,
                           "seed": self.seed, "finetune": self.finetune})


@contextlib.contextmanager
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _profiled(profile_path: str | None, fn, log: Callable[[str], None]):
    """fn() under cProfile when a stats file is given: the stats go there, the top functions to `log`."""
    if not profile_path:
        return fn()
    prof = cProfile.Profile()
    result = prof.runcall(fn)
    Path(profile_path).parent.mkdir(parents=True, exist_ok=True)
    prof.dump_stats(profile_path)
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(25)
        text = buf.getvalue()
        log(f"--- cProfile, top 25 by {key} ---")
        log(text[text.find("   ncalls"):].rstrip())
    log(f"profile written to {profile_path}")
    return result


def _per_network(steps: list, records: list, matmul: dict) -> list[dict]:
    """Per-network figures; `matmul` = {"wall": {width: GFLOP/s}, "cpu": {width: GFLOP/s}}.

    The matmul target is judged on CPU-time rates (the fine-tuning's and the matmul's), which
    do not count time spent waiting for a core on a shared machine; the wall-clock ratio is
    reported next to it.
    """
    rows = []
    for nid in dict.fromkeys(r["network_id"] for r in records):
        eps = [r for r in records if r["network_id"] == nid]
        summary = summarise_steps([s for s in steps if s["network_id"] == nid])
        widest = eps[0]["widest"]
        wall, cpu = summary["finetune_gflops"], summary["finetune_gflops_cpu"]
        ratio = matmul["wall"][widest] / wall if wall else None
        ratio_cpu = matmul["cpu"][widest] / cpu if cpu else None
        rows.append({
            "network_id": nid, "arch_orig": eps[0]["arch_orig"], "arch": eps[-1]["arch"], "widest": widest,
            "params_orig": eps[0]["params_orig"], "params": eps[-1]["params"], "episodes": len(eps),
            **summary, **summarise_episodes(eps),
            "matmul_gflops": matmul["wall"][widest], "matmul_gflops_cpu": matmul["cpu"][widest],
            "matmul_gflops_512": matmul["wall"][512], "matmul_gflops_512_cpu": matmul["cpu"][512],
            "matmul_over_finetune": ratio, "matmul_over_finetune_cpu": ratio_cpu,
            "matmul_512_over_finetune_cpu": matmul["cpu"][512] / cpu if cpu else None,
            **_matmul_share(cpu, matmul["cpu"][widest], widest),
            "test_acc_orig": eps[0]["test_acc_orig"], "test_acc": median(r["test_acc"] for r in eps),
        })
    return rows


def _matmul_share(finetune_gflops_cpu, matmul_gflops_cpu: float, widest: int) -> dict:
    """Fine-tuning's CPU-time FLOP rate as a share of the matmul yardstick's, and whether it meets the target."""
    share = finetune_gflops_cpu / matmul_gflops_cpu if finetune_gflops_cpu else None
    return {"finetune_share_of_matmul": share, "wide": widest >= WIDE,
            "meets_matmul_target": (share >= MATMUL_SHARE_TARGET) if share and widest >= WIDE else None}


def _best_rates(start: dict, end: dict) -> dict:
    """{"wall": {width: GFLOP/s}, "cpu": {...}}: the better of the yardstick's two measurements per width."""
    return {kind: {w: max(start[w][k], end[w][k]) for w in start} for k, kind in enumerate(("wall", "cpu"))}


def _spec_of(text) -> dict:
    return json.loads(text) if isinstance(text, str) else dict(text)


def measure_step(zoo_dir: str | Path, dataset: str | None = None, episodes: int | None = None,
                 cfg: StepBenchConfig = StepBenchConfig(), log: Callable[[str], None] | None = None) -> dict:
    """Time `episodes` (default 5) episodes on `dataset` (default phoneme if present, else the
    zoo's first) of the zoo at `zoo_dir`; return the figures. Progress lines go to `log`."""
    log = log or logger.info
    zoo = open_zoo(zoo_dir)
    if not zoo.datasets:
        raise ConfigError(f"zoo {zoo_dir} has no datasets")
    dataset = dataset or ("phoneme" if "phoneme" in zoo.datasets else zoo.datasets[0])
    episodes = episodes or ZOO_EPISODES
    with _one_torch_thread():
        env = cfg.make_env(zoo, (dataset,), "all")
        ft = FinetuneConfig.from_dict(cfg.finetune)
        widths = [max(spec["hidden"]) for spec in map(_spec_of, zoo.manifest(dataset)["spec"])]
        load_start = _load()
        log(f"bench step: zoo {zoo_dir}, dataset {dataset}, {episodes} episodes, keep-rate {cfg.keep_rate}, "
            f"{cfg.loops} loops, 1 torch thread, load {load_start}")
        warm_up(env, len(widths), cfg.keep_rate)
        matmul_start = matmul_reference(ft.batch_size, widths)
        steps, records = _profiled(cfg.profile, lambda: run_episodes(env, zoo, episodes, cfg.keep_rate,
                                                                     reset_seed=cfg.seed, log=log), log)
        matmul_end = matmul_reference(ft.batch_size, widths)
    matmul = _best_rates(matmul_start, matmul_end)
    step_summary = summarise_steps(steps)
    return {
        "benchmark": "step", "zoo": str(zoo_dir), "dataset": dataset, "keep_rate": cfg.keep_rate, "loops": cfg.loops,
        "finetune_config": vars(ft), "torch_threads_used": 1, "load_avg_start": load_start, "load_avg_end": _load(),
        "matmul_gflops": {"batch": ft.batch_size, "by_width": matmul["wall"], "by_width_cpu": matmul["cpu"],
                          "start": {w: list(v) for w, v in matmul_start.items()},
                          "end": {w: list(v) for w, v in matmul_end.items()}},
        "targets": {"obs_eval_share_below": OBS_EVAL_TARGET, "finetune_share_of_matmul_at_least": MATMUL_SHARE_TARGET,
                    "wide_from_width": WIDE},
        "step": step_summary, "episode": summarise_episodes(records),
        "obs_eval_share_meets_target": step_summary["obs_eval_share"] is not None
        and step_summary["obs_eval_share"] < OBS_EVAL_TARGET,
        "networks": _per_network(steps, records, matmul), "episodes": records, "steps": steps,
    }


def measure_reference(cache: str | Path, data_dir: str | Path, datasets: tuple[str, ...] | None = None,
                      episodes: int | None = None, cfg: StepBenchConfig = StepBenchConfig(),
                      log: Callable[[str], None] | None = None) -> dict:
    """Build (or reuse, from `cache`) the reference networks on `datasets` (default phoneme and
    satimage), time `episodes` (default 3) episodes on each; return the figures next to the original's."""
    log = log or logger.info
    episodes = episodes or REFERENCE_EPISODES
    datasets = tuple(datasets or REFERENCE_DATASETS)
    with _one_torch_thread():
        load_start = _load()
        log(f"bench step --reference: networks cached in {cache}, {episodes} episode(s) per network, keep-rate "
            f"{cfg.keep_rate}, {cfg.loops} loops, 1 torch thread, load {load_start}")
        t0 = time.perf_counter()
        build_reference_zoo(cache, data_dir, datasets=datasets, seed=cfg.seed)
        build_seconds = time.perf_counter() - t0
        zoo = open_zoo(cache)
        batch, widths = FinetuneConfig.from_dict(cfg.finetune).batch_size, _reference_widths()
        matmul_start = matmul_reference(batch, widths)
        runs = _profiled(cfg.profile, lambda: _reference_runs(zoo, datasets, episodes, cfg, log), log)
        matmul = _best_rates(matmul_start, matmul_reference(batch, widths))
    all_steps = [s for *_, steps, _ in runs for s in steps]
    all_records = [r for *_, records in runs for r in records]
    return {
        "benchmark": "step_reference", "data_dir": str(data_dir), "cache_dir": str(cache), "keep_rate": cfg.keep_rate,
        "loops": cfg.loops, "episodes_per_network": episodes, "torch_threads_used": 1,
        "finetune_config": vars(FinetuneConfig.from_dict(cfg.finetune)),
        "build_seconds": build_seconds, "load_avg_start": load_start, "load_avg_end": _load(),
        "targets": {"speedup_at_least": SPEEDUP_TARGET, "finetune_share_of_matmul_at_least": MATMUL_SHARE_TARGET,
                    "wide_from_width": WIDE,
                    "test_acc": "no worse than the unpruned network (the original's fine-tuned figure is not available)"},
        "matmul_gflops": {"batch": batch, "by_width": matmul["wall"], "by_width_cpu": matmul["cpu"]},
        "step": summarise_steps(all_steps), "networks": [_reference_row(*run, matmul) for run in runs],
        "episodes": all_records, "steps": all_steps,
    }


def _reference_runs(zoo, datasets, episodes: int, cfg: StepBenchConfig, log) -> list[tuple]:
    """(dataset, name, network id, step records, episode records) per reference network."""
    runs = []
    for dataset in datasets:
        for name in REFERENCE_NETWORKS:
            nid = reference_id(dataset, name, cfg.seed)
            env = cfg.make_env(zoo, (dataset,), (nid,))
            warm_up(env, 1, cfg.keep_rate)
            steps, records = run_episodes(env, zoo, episodes, cfg.keep_rate, reset_seed=cfg.seed, log=log)
            for r in records + steps:
                r["reference"] = name
            runs.append((dataset, name, nid, steps, records))
    return runs


def _reference_widths() -> list[int]:
    return sorted({max(net["hidden"]) for net in REFERENCE_NETWORKS.values()})


def _reference_row(dataset: str, name: str, nid: str, steps: list, records: list, matmul: dict) -> dict:
    """One reference network's figures, with the original's and the speed-up over it where known."""
    s, e = summarise_steps(steps), summarise_episodes(records)
    widest = max(REFERENCE_NETWORKS[name]["hidden"])
    ft = [x for x in steps if x["changed"]]
    ours = {
        "dataset": dataset, "reference": name, "network_id": nid, "arch_orig": records[0]["arch_orig"],
        "arch": records[-1]["arch"], "params_orig": records[0]["params_orig"], "params": records[-1]["params"],
        "steps": records[0]["steps"], "episode_s": e["median_episode_s"],
        "finetune_s_step": statistics.mean(x["finetune_s"] for x in steps),
        "epochs_step": statistics.mean(x["epochs"] for x in ft) if ft else 0.0,
        "state_s_step": statistics.mean(x["observe_s"] for x in steps),
        "eval_s_step": statistics.mean(x["eval_s"] for x in steps),
        "episode_cpu_s": e["median_episode_cpu_s"], "cpu_over_wall": s["cpu_over_wall"],
        "obs_eval_share": s["obs_eval_share"], "finetune_gflops": s["finetune_gflops"],
        "finetune_gflops_cpu": s["finetune_gflops_cpu"], "widest": widest,
        "matmul_gflops": matmul["wall"][widest], "matmul_gflops_cpu": matmul["cpu"][widest],
        **_matmul_share(s["finetune_gflops_cpu"], matmul["cpu"][widest], widest),
        "test_acc_orig": records[0]["test_acc_orig"], "test_acc": median(r["test_acc"] for r in records),
        "test_acc_episodes": [r["test_acc"] for r in records],
        "val_acc_orig": records[0]["val_acc_orig"], "val_acc": median(r["val_acc"] for r in records),
        "episode_s_all": [r["seconds"] for r in records],
    }
    orig = ORIGINAL.get((dataset, name))
    if orig:
        ours["original"] = orig
        ours["speedup"] = orig["episode_s"] / ours["episode_s"]
        # the original was timed with a core to itself; on shared cores our CPU seconds are the fair match
        ours["speedup_cpu"] = orig["episode_s"] / ours["episode_cpu_s"]
        ours["meets_speedup_target"] = ours["speedup"] >= SPEEDUP_TARGET
        ours["meets_speedup_target_cpu"] = ours["speedup_cpu"] >= SPEEDUP_TARGET
    ours["test_acc_delta_pp"] = 100 * (ours["test_acc"] - ours["test_acc_orig"])
    ours["no_worse_than_unpruned"] = ours["test_acc"] >= ours["test_acc_orig"]
    return ours
