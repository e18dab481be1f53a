"""The network zoo: NEON's randomly generated base networks, trained in parallel on Ray.

Layout of a zoo directory (see docs/architecture.md):

    ZOO/zoo.json                          the resolved ZooConfig (data, seed, split, sampler, training)
    ZOO/{dataset}/manifest.parquet        one row per finished network
    ZOO/{dataset}/networks/{id}.json|.pt  spec + metadata, state_dict

Ray tasks train networks and return their weights; the driver writes them (atomically, see
checkpoint.py), so the build works on a multi-node cluster without a shared filesystem, and
a re-run skips every network already written. The manifest is derived from the networks'
JSON files, so a crash can never leave it claiming a network that is not there.
"""
from __future__ import annotations

import json
import re
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from neon_ray.checkpoint import load_network, network_exists, read_header, save_network
from neon_ray.data import SplitConfig, load_dataset
from neon_ray.errors import ConfigError, NeonRayError
from neon_ray.progress import Progress
from neon_ray.spec import ArchSpec, SamplerConfig, sample_spec
from neon_ray.train import TrainConfig

ZOO_FILE = "zoo.json"
MANIFEST = "manifest.parquet"


@dataclass(frozen=True)
class ZooConfig:
    """What to build: datasets, how many networks, and how they are drawn and trained."""

    out: str
    """Zoo directory (created if missing)."""
    datasets: tuple[str, ...]
    """Dataset names (MANIFEST names in data_dir, sklearn:NAME, or file paths)."""
    data_dir: str | None = None
    """Directory with MANIFEST.csv; not needed for sklearn: datasets."""
    networks: int = 30
    """Networks per dataset."""
    test_networks: int = 6
    """How many of each dataset's networks the agent never trains on (role 'test')."""
    seed: int = 0
    """Seed of the data splits, architectures, initial weights and roles."""
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    """Architecture distribution."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Base-network training budget."""
    split: SplitConfig = field(default_factory=SplitConfig)
    """Train/val/test fractions."""
    cpus_per_task: float = 1.0
    """Ray CPUs (and torch threads) per training task."""

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ConfigError("ZooConfig: no datasets given")
        if self.networks < 1 or not 0 <= self.test_networks <= self.networks:
            raise ConfigError(f"ZooConfig: need networks >= 1 and 0 <= test_networks <= networks, got {self.networks}, {self.test_networks}")

    def identity(self) -> dict:
        """The settings that must match for two builds to write into the same zoo."""
        return {
            "seed": self.seed,
            "data_dir": str(Path(self.data_dir).resolve()) if self.data_dir else None,
            "sampler": asdict(self.sampler),
            "train": asdict(self.train),
            "split": asdict(self.split),
            "networks": self.networks,
            "test_networks": self.test_networks,
        }


def dataset_slug(name: str) -> str:
    """A filesystem-safe folder name for a dataset name such as `sklearn:wine` or a path."""
    base = Path(name.split("#")[0]).name if ("/" in name or name.endswith((".csv", ".gz", ".parquet"))) else name
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", base)


def network_id(dataset: str, seed: int, index: int) -> str:
    """Stable ID of a zoo network, the key every result is matched by."""
    return f"{dataset_slug(dataset)}__s{seed}__n{index:03d}"


def _stable_seed(*parts) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode()) & 0x7FFFFFFF


def assign_roles(dataset: str, cfg: ZooConfig) -> list[str]:
    """'train' or 'test' per network index, a seeded choice independent of file order."""
    rng = np.random.default_rng(_stable_seed("roles", dataset, cfg.seed))
    test = set(rng.permutation(cfg.networks)[: cfg.test_networks].tolist())
    return ["test" if i in test else "train" for i in range(cfg.networks)]


def plan_networks(dataset: str, n_features: int, n_classes: int, cfg: ZooConfig) -> list[dict]:
    """The architectures, seeds and roles of a dataset's networks, fully determined by cfg."""
    rng = np.random.default_rng(_stable_seed("arch", dataset, cfg.seed))
    roles = assign_roles(dataset, cfg)
    plans = []
    for i in range(cfg.networks):
        spec = sample_spec(rng, n_features, n_classes, cfg.sampler)
        plans.append(
            {
                "network_id": network_id(dataset, cfg.seed, i),
                "dataset": dataset,
                "seed": cfg.seed,
                "index": i,
                "role": roles[i],
                "init_seed": _stable_seed("init", dataset, cfg.seed, i),
                "spec": spec.to_dict(),
            }
        )
    return plans


def train_planned(plan: dict, data, train_cfg: TrainConfig) -> tuple[dict, dict]:
    """Train one planned network; returns (state_dict, manifest row)."""
    from neon_ray import metrics
    from neon_ray.spec import build_mlp
    from neon_ray.train import fit

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
        "train_seconds": result.seconds,
    }
    return {k: v.clone() for k, v in model.state_dict().items()}, row


def _train_in_task(plan: dict, data, train_cfg: TrainConfig, threads: int) -> tuple[dict, dict]:
    """`train_planned` inside a Ray task, with torch using exactly the task's CPUs."""
    import torch

    torch.set_num_threads(max(1, threads))
    return train_planned(plan, data, train_cfg)


def write_zoo_file(cfg: ZooConfig) -> None:
    root = Path(cfg.out)
    path = root / ZOO_FILE
    identity = cfg.identity()
    datasets = list(cfg.datasets)
    if path.is_file():
        existing = json.loads(path.read_text())
        if existing.get("identity") != json.loads(json.dumps(identity)):
            raise ConfigError(f"{path}: this zoo was built with other settings (seed, data, sampler or training); use another --out")
        datasets = list(dict.fromkeys(existing.get("datasets", []) + datasets))
    root.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"identity": identity, "datasets": datasets}, indent=1, sort_keys=True))
    tmp.replace(path)


def write_manifest(root: Path, dataset: str) -> pd.DataFrame:
    """Rebuild a dataset's manifest from the network files present (atomic replace)."""
    folder = root / dataset_slug(dataset)
    rows = [read_header(p.with_suffix(""))["meta"] for p in sorted((folder / "networks").glob("*.json"))]
    frame = pd.DataFrame(rows).sort_values("index").reset_index(drop=True) if rows else pd.DataFrame()
    tmp = folder / (MANIFEST + ".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(folder / MANIFEST)
    return frame


def build_zoo(
    cfg: ZooConfig, address: str | None = None, workers: int | None = None, progress: bool = True, in_process: bool = False
) -> pd.DataFrame:
    """Train every missing network of the zoo on Ray and return the full manifest.

    Datasets are loaded (and so validated) before anything is written, and Ray is started
    only when some network is missing. `workers` caps the training tasks in flight (default:
    as many as the cluster's CPUs allow). `in_process=True` trains one network after another
    in this process without Ray (small zoos in tests and benchmarks).
    """
    root = Path(cfg.out)
    work = []
    for name in cfg.datasets:
        data = load_dataset(name, cfg.data_dir, seed=cfg.seed, split=cfg.split)
        plans = plan_networks(name, data.n_features, data.n_classes, cfg)
        missing = [p for p in plans if not network_exists(_stem(root, p["network_id"], name))]
        if missing:
            work.append((data, missing))
    write_zoo_file(cfg)
    if work and in_process:
        _train_here(cfg, work, progress)
    elif work:
        _train_missing(cfg, work, address, workers, progress)
    return pd.concat([write_manifest(root, name) for name in cfg.datasets], ignore_index=True)


def _train_here(cfg: ZooConfig, work: list, progress: bool) -> None:
    bar = Progress(sum(len(missing) for _, missing in work), "zoo build", enabled=progress)
    for data, missing in work:
        for plan in missing:
            _save_trained(Path(cfg.out), cfg, plan, *train_planned(plan, data, cfg.train), bar)


def _save_trained(root: Path, cfg: ZooConfig, plan: dict, state: dict, row: dict, bar: Progress) -> None:
    model = _model_from_state(plan, state)
    save_network(model, _stem(root, plan["network_id"], plan["dataset"]), meta={**row, "data_dir": cfg.identity()["data_dir"]})
    bar.update(f"{row['network_id']} {row['arch']} val {row['val_acc']:.3f} test {row['test_acc']:.3f} ({row['train_seconds']:.1f}s)")


def _train_missing(cfg: ZooConfig, work: list, address: str | None, workers: int | None, progress: bool) -> None:
    from neon_ray.raysession import cluster_cpus, ray_session

    with ray_session(address) as ray:
        remote = ray.remote(_train_in_task).options(num_cpus=cfg.cpus_per_task)
        limit = workers or max(1, int(cluster_cpus() // cfg.cpus_per_task))
        todo = []
        for data, missing in work:
            data_ref = ray.put(data)  # one copy per dataset in the object store, shared by its tasks
            todo += [(plan, data_ref) for plan in missing]
        _run_tasks(ray, remote, todo, cfg, Path(cfg.out), limit, progress)


def _stem(root: Path, nid: str, dataset: str) -> Path:
    return root / dataset_slug(dataset) / "networks" / nid


def _run_tasks(ray, remote, todo, cfg: ZooConfig, root: Path, limit: int, progress: bool) -> None:
    bar = Progress(len(todo), "zoo build", enabled=progress)
    threads = max(1, int(cfg.cpus_per_task))
    pending, queue = {}, list(todo)
    while queue or pending:
        while queue and len(pending) < limit:
            plan, data_ref = queue.pop(0)
            pending[remote.remote(plan, data_ref, cfg.train, threads)] = plan
        done, _ = ray.wait(list(pending), num_returns=1)
        plan = pending.pop(done[0])
        _save_trained(root, cfg, plan, *ray.get(done[0]), bar)


def _model_from_state(plan: dict, state: dict):
    from neon_ray.spec import build_mlp

    model = build_mlp(ArchSpec.from_dict(plan["spec"]))
    model.load_state_dict(state)
    return model.eval()


class Zoo:
    """Read access to a built zoo: manifest, networks, and the datasets with their exact splits."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        path = self.root / ZOO_FILE
        if not path.is_file():
            raise NeonRayError(f"{self.root}: not a neon-ray zoo (no {ZOO_FILE}); build one with `neon-ray zoo build`")
        doc = json.loads(path.read_text())
        self.identity = doc["identity"]
        self.seed = int(self.identity["seed"])
        self.data_dir = self.identity["data_dir"]
        self.split = SplitConfig(**self.identity["split"])
        self._manifest: pd.DataFrame | None = None
        self.datasets = [d for d in doc.get("datasets", []) if (self.root / dataset_slug(d) / MANIFEST).is_file()]

    def manifest(self, dataset: str | None = None, role: str | None = None) -> pd.DataFrame:
        """One row per network (network_id, dataset, role, spec, arch, params, val_acc, test_acc, ...)."""
        if self._manifest is None:
            frames = [pd.read_parquet(self.root / dataset_slug(d) / MANIFEST) for d in self.datasets]
            frames = [f for f in frames if len(f)]
            self._manifest = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["network_id", "dataset", "role"])
        frame = self._manifest
        if dataset is not None:
            frame = frame[frame["dataset"] == dataset]
        if role is not None and role != "all":
            frame = frame[frame["role"] == role]
        return frame.reset_index(drop=True)

    def network_ids(self, dataset: str | None = None, role: str | None = None) -> list[str]:
        return self.manifest(dataset, role)["network_id"].tolist()

    def row(self, nid: str) -> dict:
        frame = self.manifest()
        hit = frame[frame["network_id"] == nid]
        if hit.empty:
            raise NeonRayError(f"{self.root}: no network {nid!r} in this zoo (it has {len(frame)} networks)")
        return hit.iloc[0].to_dict()

    def stem(self, nid: str) -> Path:
        return _stem(self.root, nid, self.row(nid)["dataset"])

    def load(self, nid: str):
        """(MLP in eval mode, metadata) of a network."""
        return load_network(self.stem(nid))

    def dataset(self, name: str):
        """The dataset with exactly the splits and preprocessing its networks were trained on."""
        return load_dataset(name, self.data_dir, seed=self.seed, split=self.split)


def open_zoo(path: str | Path) -> Zoo:
    return Zoo(path)
