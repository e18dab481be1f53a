"""Building a zoo: plan NEON's random base networks, then train the missing ones in parallel on Ray.

Every network is fully determined by the `ZooConfig` (`iter_plans`: architecture, seeds, role).
Ray tasks train networks and return their weights; the driver writes them (atomically, see
nets/checkpoint.py), so the build works on a multi-node cluster without a shared filesystem,
and a re-run skips every network already written. Settings, output location and datasets are
all checked before anything is written (zoo/store.py).
"""
from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neon_ray.data.datasets import load_dataset
from neon_ray.errors import ConfigError
from neon_ray.nets import metrics
from neon_ray.nets.checkpoint import network_exists, save_network
from neon_ray.nets.spec import ArchSpec, build_mlp, sample_spec
from neon_ray.nets.training import TrainConfig, fit
from neon_ray.runtime.fanout import fan_out
from neon_ray.runtime.progress import ProgressLine
from neon_ray.runtime.ray_session import cluster_cpus, ray_session
from neon_ray.zoo.config import ZooConfig, network_id
from neon_ray.zoo.store import check_zoo_file, network_stem, write_manifest, write_zoo_file


def _stable_seed(*parts) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode()) & 0x7FFFFFFF


def assign_roles(dataset: str, cfg: ZooConfig) -> list[str]:
    """'train' or 'test' per network index, a seeded choice independent of file order."""
    rng = np.random.default_rng(_stable_seed("roles", dataset, cfg.seed))
    test = set(rng.permutation(cfg.networks)[: cfg.test_networks].tolist())
    return ["test" if i in test else "train" for i in range(cfg.networks)]


def iter_plans(dataset: str, n_features: int, n_classes: int, cfg: ZooConfig) -> Iterator[dict]:
    """The architectures, seeds and roles of a dataset's networks, one at a time, fully determined by cfg."""
    rng = np.random.default_rng(_stable_seed("arch", dataset, cfg.seed))
    roles = assign_roles(dataset, cfg)
    for i in range(cfg.networks):
        spec = sample_spec(rng, n_features, n_classes, cfg.sampler)
        yield {
            "network_id": network_id(dataset, cfg.seed, i),
            "dataset": dataset,
            "seed": cfg.seed,
            "index": i,
            "role": roles[i],
            "init_seed": _stable_seed("init", dataset, cfg.seed, i),
            "spec": spec.to_dict(),
        }


def plan_networks(dataset: str, n_features: int, n_classes: int, cfg: ZooConfig) -> list[dict]:
    """All of `iter_plans` as a list."""
    return list(iter_plans(dataset, n_features, n_classes, cfg))


def train_planned(plan: dict, data, train_cfg: TrainConfig) -> tuple[dict, dict]:
    """Train one planned network; returns (state_dict, manifest row)."""
    spec = ArchSpec.from_dict(plan["spec"])
    model = build_mlp(spec, seed=plan["init_seed"])
    result = fit(model, (data.X_train, data.y_train), (data.X_val, data.y_val), train_cfg, seed=plan["init_seed"])
    val_acc, val_f1 = metrics.accuracy_f1(model, data.X_val, data.y_val)
    test_acc, test_f1 = metrics.accuracy_f1(model, data.X_test, data.y_test)
    row = {
        **{k: plan[k] for k in ("network_id", "dataset", "seed", "index", "role")},
        "spec": json.dumps(plan["spec"], sort_keys=True),
        "arch": spec.describe(),
        "depth": spec.depth,
        "params": metrics.count_params(model),
        "flops": metrics.count_flops(model),
        "val_acc": val_acc,
        "val_f1": val_f1,
        "test_acc": test_acc,
        "test_f1": test_f1,
        "train_rows": len(data.X_train),
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "stop_reason": result.stop_reason,
        "settle_epochs": result.settle_epochs,
        "settle_best_epoch": result.settle_best_epoch,
        "train_seconds": result.seconds,
    }
    return {k: v.clone() for k, v in model.state_dict().items()}, row


def _train_in_task(plan: dict, data, train_cfg: TrainConfig, threads: int) -> tuple[dict, dict]:
    """`train_planned` inside a Ray task, with torch using exactly the task's CPUs."""
    torch.set_num_threads(max(1, threads))
    return train_planned(plan, data, train_cfg)


def build_zoo(
    cfg: ZooConfig, address: str | None = None, workers: int | None = None, progress: bool = True, in_process: bool = False
) -> pd.DataFrame:
    """Train every missing network of the zoo on Ray and return the full manifest.

    Datasets are loaded (and so validated) before anything is written, and Ray is started
    only when some network is missing. `workers` caps the training tasks in flight (default:
    as many as the cluster's CPUs allow). `in_process=True` trains one network after another
    in this process without Ray (small zoos in tests and benchmarks).
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers must be None or an integer >= 1, got {workers!r}")
    doc = check_zoo_file(cfg)  # output location and settings, before any data is read
    root = Path(cfg.out)
    work = []
    for name in cfg.datasets:
        data = load_dataset(name, cfg.data_dir, seed=cfg.seed, split=cfg.split)
        plans = iter_plans(name, data.n_features, data.n_classes, cfg)
        missing = [p for p in plans if not network_exists(network_stem(root, p["network_id"], name))]
        if missing:
            work.append((data, missing))
    write_zoo_file(cfg, doc)
    bar = ProgressLine(sum(len(missing) for _, missing in work), "zoo build", enabled=progress)
    if work and in_process:
        _train_here(cfg, work, bar)
    elif work:
        _train_on_ray(cfg, work, bar, address, workers)
    return pd.concat([write_manifest(root, name) for name in cfg.datasets], ignore_index=True)


def _train_here(cfg: ZooConfig, work: list, bar: ProgressLine) -> None:
    for data, missing in work:
        for plan in missing:
            bar.update(_save_trained(cfg, plan, train_planned(plan, data, cfg.train)))


def _train_on_ray(cfg: ZooConfig, work: list, bar: ProgressLine, address: str | None, workers: int | None) -> None:
    threads = max(1, int(cfg.cpus_per_task))
    with ray_session(address) as ray:
        task = ray.remote(_train_in_task).options(num_cpus=cfg.cpus_per_task)
        todo = []
        for data, missing in work:
            data_ref = ray.put(data)  # one copy per dataset in the object store, shared by its tasks
            todo += [(plan, data_ref) for plan in missing]
        fan_out(
            todo,
            lambda item: task.remote(item[0], item[1], cfg.train, threads),
            lambda item, trained: _save_trained(cfg, item[0], trained),
            limit=workers or max(1, int(cluster_cpus() // cfg.cpus_per_task)),
            progress=bar,
        )


def _save_trained(cfg: ZooConfig, plan: dict, trained: tuple[dict, dict]) -> str:
    """Write a trained network into the zoo; returns its progress line."""
    state, row = trained
    model = build_mlp(ArchSpec.from_dict(plan["spec"]))
    model.load_state_dict(state)
    stem = network_stem(cfg.out, plan["network_id"], plan["dataset"])
    save_network(model.eval(), stem, meta={**row, "data_dir": cfg.identity()["data_dir"]})
    return f"{row['network_id']} {row['arch']} val {row['val_acc']:.3f} test {row['test_acc']:.3f} ({row['train_seconds']:.1f}s)"
