"""The network zoo: NEON's randomly generated base networks, trained in parallel on Ray.

Layout of a zoo directory (see docs/architecture.md):

    ZOO/zoo.json                          the resolved ZooConfig (data, seed, split, sampler, training)
    ZOO/{dataset}/manifest.parquet        one row per finished network
    ZOO/{dataset}/networks/{id}.json|.pt  spec + metadata, state_dict

Dataset folders. `dataset_slug` maps every dataset name to one safe folder name, distinct for
distinct names: a plain name (letters, digits, `_`, `-`) is its own folder, `sklearn:NAME` is
`sklearn_NAME`, and any other name (a file path, a name with dots or spaces) is a readable part
plus a short hash of the full name. Slugs never contain a dot, so the network IDs built from
them never look like a file suffix.

Limits. At most `MAX_NETWORKS` (10000) networks per dataset. Every setting is validated when
the `ZooConfig` is made, and the output location and an existing `zoo.json` are checked before
any data is loaded or anything is written. A zoo whose `zoo.json` exists but which has no
finished network yet may be rebuilt with other settings; once a network is finished, the
settings are fixed.

Ray tasks train networks and return their weights; the driver writes them (atomically, see
checkpoint.py), so the build works on a multi-node cluster without a shared filesystem, and
a re-run skips every network already written. The manifest is derived from the networks'
JSON files, so a crash can never leave it claiming a network that is not there.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from neon_ray.nets.checkpoint import load_network, network_exists, read_header, save_network
from neon_ray.data.datasets import SKLEARN_PREFIX, SKLEARN_SETS, TABLE_SUFFIXES, SplitConfig, load_dataset
from neon_ray.errors import ConfigError, NeonRayError
from neon_ray.runtime.files import atomic_write, atomic_write_text, check_output_dir, check_path_component
from neon_ray.runtime.progress import Progress
from neon_ray.nets.spec import ArchSpec, SamplerConfig, sample_spec
from neon_ray.nets.training import TrainConfig

ZOO_FILE = "zoo.json"
MANIFEST = "manifest.parquet"
MAX_NETWORKS = 10_000
"""Most networks per dataset (ZooConfig.networks, `zoo build --networks`)."""
MAX_SEED = 2**32 - 1
"""Largest ZooConfig.seed."""
MAX_CPUS_PER_TASK = 1024
"""Largest ZooConfig.cpus_per_task."""
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,79}")
_SLUG_HASH_CHARS = 10


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
    """Networks per dataset, 1 to MAX_NETWORKS (10000)."""
    test_networks: int = 6
    """How many of each dataset's networks the agent never trains on (role 'test')."""
    seed: int = 0
    """Seed of the data splits, architectures, initial weights and roles (0 to 2**32 - 1)."""
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    """Architecture distribution."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Base-network training budget."""
    split: SplitConfig = field(default_factory=SplitConfig)
    """Train/val/test fractions."""
    cpus_per_task: float = 1.0
    """Ray CPUs (and torch threads) per training task."""

    def __post_init__(self) -> None:
        if isinstance(self.out, os.PathLike):
            object.__setattr__(self, "out", os.fspath(self.out))
        if not isinstance(self.out, str):
            raise ConfigError(f"ZooConfig.out must be a directory path, got {self.out!r}")
        if isinstance(self.data_dir, os.PathLike):
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))
        if self.data_dir is not None and (not isinstance(self.data_dir, str) or not self.data_dir.strip()):
            raise ConfigError(f"ZooConfig.data_dir must be None or a directory path, got {self.data_dir!r}")
        datasets = (self.datasets,) if isinstance(self.datasets, (str, os.PathLike)) else tuple(self.datasets or ())
        datasets = tuple(dict.fromkeys(os.fspath(d) if isinstance(d, os.PathLike) else d for d in datasets))
        if not datasets:
            raise ConfigError("ZooConfig: no datasets given")
        for name in datasets:
            _check_dataset_name(name)
        _check_distinct_slugs(datasets, "ZooConfig.datasets")
        object.__setattr__(self, "datasets", datasets)
        _check_int("networks", self.networks, 1, MAX_NETWORKS)
        _check_int("test_networks", self.test_networks, 0, self.networks, hi_name="networks")
        _check_int("seed", self.seed, 0, MAX_SEED)
        cpus = self.cpus_per_task
        if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not math.isfinite(cpus) \
                or not 0 < cpus <= MAX_CPUS_PER_TASK:
            raise ConfigError(f"ZooConfig.cpus_per_task must be a finite number in (0, {MAX_CPUS_PER_TASK}], got {cpus!r}")
        for name, kind in (("sampler", SamplerConfig), ("train", TrainConfig), ("split", SplitConfig)):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(f"ZooConfig.{name} must be a {kind.__name__}, got {getattr(self, name)!r}")

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


def _check_int(name: str, value, lo: int, hi: int, hi_name: str | None = None) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        bound = f"{hi_name} = {hi}" if hi_name else str(hi)
        raise ConfigError(f"ZooConfig.{name} must be an integer in [{lo}, {bound}], got {value!r}")


def _check_dataset_name(name) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"ZooConfig.datasets: every dataset name must be a non-empty string, got {name!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ConfigError(f"ZooConfig.datasets: dataset name {name!r} contains a control character")
    if name.strip() in (".", ".."):
        raise ConfigError(f"ZooConfig.datasets: {name!r} is not a dataset name (expected a MANIFEST name, sklearn:NAME or a file path)")


def _check_distinct_slugs(names, where: str) -> None:
    seen: dict[str, str] = {}
    for name in names:
        slug = dataset_slug(name)
        if seen.setdefault(slug, name) != name:
            raise ConfigError(f"{where}: datasets {seen[slug]!r} and {name!r} would share the zoo folder {slug!r}; rename one")


def dataset_slug(name: str) -> str:
    """The zoo folder name of a dataset: one safe path component, distinct for distinct names, never with a dot.

    A plain name (a letter or digit, then letters, digits, `_` or `-`, 80 characters at most;
    every benchmark MANIFEST name) is its own folder, and `sklearn:NAME` of a bundled set is
    `sklearn_NAME`. Any other name (a file path, `path#target`, a name with dots, spaces or
    other characters) becomes a readable part (the file name without its table suffix, other
    characters replaced by `_`, at most 40 characters) plus `-` and the first 10 hex digits of
    the SHA-256 of the full name: `a/x.csv` and `b/x.csv` get different folders.
    """
    name = str(name)
    if _PLAIN_NAME.fullmatch(name):
        slug = name
    elif name.startswith(SKLEARN_PREFIX) and name[len(SKLEARN_PREFIX):] in SKLEARN_SETS:
        slug = "sklearn_" + name[len(SKLEARN_PREFIX):]
    else:
        path_part = name.rpartition("#")[0] if "#" in name else name
        base = re.split(r"[\\/]", path_part)[-1]
        suffix = next((s for s in sorted(TABLE_SUFFIXES, key=len, reverse=True) if base.lower().endswith(s)), "")
        base = base[: len(base) - len(suffix)]
        readable = re.sub(r"[^A-Za-z0-9_-]+", "_", base).strip("_-")[:40] or "dataset"
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_SLUG_HASH_CHARS]
        slug = f"{readable}-{digest}"
    return check_path_component(slug, "dataset folder")


def network_id(dataset: str, seed: int, index: int) -> str:
    """Stable ID of a zoo network, the key every result is matched by: `{slug}__s{seed}__n{index:03d}`."""
    return f"{dataset_slug(dataset)}__s{int(seed)}__n{int(index):03d}"


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
    from neon_ray.nets import metrics
    from neon_ray.nets.spec import build_mlp
    from neon_ray.nets.training import fit

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


def _read_zoo_file(path: Path) -> dict | None:
    """The parsed zoo.json, None if there is none; ConfigError if it is not a zoo description."""
    if not path.exists():
        return None
    if not path.is_file():
        raise ConfigError(f"{path} exists and is not a file; expected the zoo description {ZOO_FILE}")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable zoo description ({type(exc).__name__}: {exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("identity"), dict) or not isinstance(doc.get("datasets", []), list):
        raise ConfigError(f"{path}: not a neon-ray zoo description (expected keys 'identity' and 'datasets')")
    return doc


def _has_finished_network(root: Path, datasets: list[str]) -> bool:
    for name in datasets:
        try:
            folder = root / dataset_slug(name) / "networks"
        except ConfigError:
            continue
        if folder.is_dir() and next(folder.glob("*.json"), None) is not None:
            return True
    return False


def check_zoo_file(cfg: ZooConfig) -> dict:
    """Check, before any work, that `cfg` may build into `cfg.out`; returns the zoo.json document to write.

    Refuses an output path that cannot be a directory, an unreadable zoo.json, other settings
    than the zoo's once it has a finished network, and dataset names whose folders would clash.
    Writes nothing.
    """
    if not str(cfg.out).strip():
        raise ConfigError("zoo directory (--out) is empty; give a directory path")
    root = check_output_dir(cfg.out, "zoo directory")
    path = root / ZOO_FILE
    identity = json.loads(json.dumps(cfg.identity()))
    datasets = list(cfg.datasets)
    existing = _read_zoo_file(path)
    if existing is not None:
        old_datasets = [d for d in existing.get("datasets", []) if isinstance(d, str)]
        old_identity = existing["identity"]
        if old_identity == identity:
            datasets = list(dict.fromkeys(old_datasets + datasets))
        elif _has_finished_network(root, old_datasets):
            differ = sorted(k for k in set(identity) | set(old_identity) if identity.get(k) != old_identity.get(k))
            raise ConfigError(
                f"{path}: this zoo was built with other settings (differing: {', '.join(differ)}); "
                "use another --out, or the zoo's own settings"
            )
        # else: nothing finished yet, so the zoo starts over with the new settings.
    _check_distinct_slugs(datasets, str(path))
    for name in datasets:
        check_output_dir(root / dataset_slug(name) / "networks", f"network folder of dataset {name!r}")
    return {"identity": identity, "datasets": datasets}


def write_zoo_file(cfg: ZooConfig, doc: dict | None = None) -> None:
    """Write ZOO/zoo.json (atomically), after `check_zoo_file` unless its document is given."""
    doc = check_zoo_file(cfg) if doc is None else doc
    atomic_write_text(Path(cfg.out) / ZOO_FILE, json.dumps(doc, indent=1, sort_keys=True))


def write_manifest(root: Path, dataset: str) -> pd.DataFrame:
    """Rebuild a dataset's manifest from the network files present (atomic replace)."""
    folder = Path(root) / dataset_slug(dataset)
    stems = [p.parent / p.name[: -len(".json")] for p in sorted((folder / "networks").glob("*.json"))]
    rows = [read_header(stem)["meta"] for stem in stems]
    frame = pd.DataFrame(rows).sort_values("index").reset_index(drop=True) if rows else pd.DataFrame()
    atomic_write(folder / MANIFEST, lambda fh: frame.to_parquet(fh, index=False))
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
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers must be None or an integer >= 1, got {workers!r}")
    doc = check_zoo_file(cfg)  # output location and settings, before any data is read
    root = Path(cfg.out)
    work = []
    for name in cfg.datasets:
        data = load_dataset(name, cfg.data_dir, seed=cfg.seed, split=cfg.split)
        plans = iter_plans(name, data.n_features, data.n_classes, cfg)
        missing = [p for p in plans if not network_exists(_stem(root, p["network_id"], name))]
        if missing:
            work.append((data, missing))
    write_zoo_file(cfg, doc)
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
    from neon_ray.runtime.ray_session import cluster_cpus, ray_session

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
    pending, queue = {}, deque(todo)
    while queue or pending:
        while queue and len(pending) < limit:
            plan, data_ref = queue.popleft()
            pending[remote.remote(plan, data_ref, cfg.train, threads)] = plan
        done, _ = ray.wait(list(pending), num_returns=1)
        plan = pending.pop(done[0])
        _save_trained(root, cfg, plan, *ray.get(done[0]), bar)


def _model_from_state(plan: dict, state: dict):
    from neon_ray.nets.spec import build_mlp

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
        doc = _read_zoo_file(path)
        self.identity = doc["identity"]
        try:
            self.seed = int(self.identity["seed"])
            self.data_dir = self.identity["data_dir"]
            self.split = SplitConfig(**self.identity["split"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: incomplete zoo description ({type(exc).__name__}: {exc})") from exc
        self._manifest: pd.DataFrame | None = None
        self.listed = [d for d in doc.get("datasets", []) if isinstance(d, str)]
        """Every dataset zoo.json names, with or without finished networks."""
        self.datasets = [d for d in self.listed if (self.root / dataset_slug(d) / MANIFEST).is_file()]
        """The datasets with a manifest."""

    def check_dataset(self, name: str) -> str:
        """`name` if this zoo has that dataset; ConfigError naming the known datasets otherwise."""
        if name not in self.listed:
            known = ", ".join(self.listed) or "none"
            raise ConfigError(f"{self.root}: no dataset {name!r} in this zoo (known datasets: {known})")
        return name

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
