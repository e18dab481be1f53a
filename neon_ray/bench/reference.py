"""The reference networks of method.md §9, written as a small zoo, and the original's timings.

    A = hidden [1000, 800, 600] ReLU
    B = hidden [500, 500] ReLU with a BatchNorm1d in front of the second hidden Linear
    C = hidden [300, 100] ReLU

on phoneme and satimage. `build_reference_zoo` trains them with the zoo's default budget
(`TrainConfig()`: Adam 1e-3, batch 64, up to 100 epochs, early stopping on val) and writes a
regular zoo directory (zoo.json, per-dataset manifest.parquet, networks/), so `PruningEnv`
opens it like any zoo. Networks already present are reused: the directory is a cache.

zoo.py has no public builder for networks of a FIXED architecture (build_zoo samples them),
so this module plans them itself and then goes through zoo.py's own pieces: `train_planned`
trains a plan, `checkpoint.save_network` stores it with the manifest row as metadata (as the
zoo builder does), `write_manifest` derives the manifest and `write_zoo_file` writes zoo.json
(and refuses a cache built with other settings).
"""
from __future__ import annotations

import zlib
from pathlib import Path

import pandas as pd

from neon_ray.nets.checkpoint import network_exists, save_network
from neon_ray.data.datasets import load_dataset
from neon_ray.errors import ConfigError
from neon_ray.runtime.progress import ProgressLine
from neon_ray.nets.spec import ArchSpec, build_mlp
from neon_ray.nets.training import TrainConfig
from neon_ray.zoo.build import train_planned
from neon_ray.zoo.config import ZooConfig, dataset_slug, network_id
from neon_ray.zoo.store import write_manifest, write_zoo_file

REFERENCE_DATASETS = ("phoneme", "satimage")
REFERENCE_NETWORKS = {
    "A": {"hidden": (1000, 800, 600), "pre": ("none", "none", "none")},
    "B": {"hidden": (500, 500), "pre": ("none", "batchnorm")},
    "C": {"hidden": (300, 100), "pre": ("none", "none")},
}
"""Hidden widths and pre-layers; every activation is ReLU."""

ORIGINAL = {
    ("phoneme", "A"): {"params": 1_288_602, "finetune_s_step": 8.26, "epochs_step": 21.4, "state_s_step": 0.89, "episode_s": 110.7, "steps": 12},
    ("phoneme", "B"): {"params": 255_502, "finetune_s_step": 3.53, "epochs_step": 26.1, "state_s_step": 0.20, "episode_s": 30.0, "steps": 8},
    ("phoneme", "C"): {"params": 32_102, "finetune_s_step": 2.04, "epochs_step": 24.9, "state_s_step": 0.06, "episode_s": 16.9, "steps": 8},
    ("satimage", "A"): {"params": 1_322_006, "finetune_s_step": 11.27, "epochs_step": 25.0, "state_s_step": 0.85, "episode_s": 146.4, "steps": 12},
    ("satimage", "B"): {"params": 273_006, "finetune_s_step": 4.38, "epochs_step": 24.9, "state_s_step": 0.21, "episode_s": 37.1, "steps": 8},
    ("satimage", "C"): {"params": 41_806, "finetune_s_step": 3.17, "epochs_step": 26.5, "state_s_step": 0.09, "episode_s": 26.2, "steps": 8},
}
"""The original environment timed on this project's machines (method.md §9): one CPU thread,
batch 32, up to 100 epochs, patience 10 on mini-batch loss; 4 loops, keep-rate 0.8 every step."""

INDEX = {name: i for i, name in enumerate(REFERENCE_NETWORKS)}


def reference_spec(name: str, in_features: int, n_classes: int) -> ArchSpec:
    """The ArchSpec of reference network `name` ('A', 'B' or 'C') for a dataset's shape."""
    if name not in REFERENCE_NETWORKS:
        raise ConfigError(f"unknown reference network {name!r}, expected one of {sorted(REFERENCE_NETWORKS)}")
    net = REFERENCE_NETWORKS[name]
    return ArchSpec(in_features=in_features, n_classes=n_classes, hidden=net["hidden"],
                    activations=("relu",) * len(net["hidden"]), pre=net["pre"])


def reference_id(dataset: str, name: str, seed: int = 0) -> str:
    """Zoo ID of a reference network (the usual `{dataset}__s{seed}__n{index}` form, A=0, B=1, C=2)."""
    return network_id(dataset, seed, INDEX[name])


def init_seed(dataset: str, name: str, seed: int = 0) -> int:
    """Seed of a reference network's initial weights and training order."""
    return zlib.crc32(f"reference|{dataset}|{seed}|{name}".encode()) & 0x7FFFFFFF


def build_reference_zoo(
    root: str | Path,
    data_dir: str | Path | None,
    datasets: tuple[str, ...] = REFERENCE_DATASETS,
    networks: tuple[str, ...] = tuple(REFERENCE_NETWORKS),
    seed: int = 0,
    train: TrainConfig = TrainConfig(),
    progress: bool = True,
) -> pd.DataFrame:
    """Train the missing reference networks into the zoo directory `root`; return its manifest.

    Runs in this process with torch's current thread count. The manifest has the zoo's usual
    columns plus `reference` (A, B or C).
    """
    root = Path(root)
    cfg = ZooConfig(out=str(root), datasets=tuple(datasets), data_dir=None if data_dir is None else str(data_dir),
                    networks=len(REFERENCE_NETWORKS), test_networks=0, seed=seed, train=train)
    work = []
    for dataset in datasets:
        data = load_dataset(dataset, data_dir, seed=seed, split=cfg.split)
        for name in networks:
            nid = reference_id(dataset, name, seed)
            stem = root / dataset_slug(dataset) / "networks" / nid
            if not network_exists(stem):
                spec = reference_spec(name, data.n_features, data.n_classes)
                plan = {"network_id": nid, "dataset": dataset, "seed": seed, "index": INDEX[name], "role": "train",
                        "init_seed": init_seed(dataset, name, seed), "spec": spec.to_dict()}
                work.append((data, name, plan, stem))
    write_zoo_file(cfg)
    bar = ProgressLine(len(work), "reference networks", enabled=progress)
    for data, name, plan, stem in work:
        state, row = train_planned(plan, data, train)
        model = build_mlp(ArchSpec.from_dict(plan["spec"]))
        model.load_state_dict(state)
        save_network(model.eval(), stem, meta={**row, "reference": name, "data_dir": cfg.identity()["data_dir"]})
        bar.update(f"{plan['network_id']} ({name}) {row['arch']} test {row['test_acc']:.3f} ({row['train_seconds']:.1f}s)")
    return pd.concat([write_manifest(root, d) for d in datasets], ignore_index=True)
