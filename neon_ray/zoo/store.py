"""A zoo on disk: its layout, the checks before a build writes into it, and read access (`Zoo`).

Layout of a zoo directory (see docs/architecture.md):

    ZOO/zoo.json                          the resolved ZooConfig (data, seed, split, sampler, training)
    ZOO/{dataset}/manifest.parquet        one row per finished network
    ZOO/{dataset}/networks/{id}.json|.pt  spec + metadata, state_dict

The output location and an existing `zoo.json` are checked before any data is loaded or
anything is written. A zoo whose `zoo.json` exists but which has no finished network yet may be
rebuilt with other settings; once a network is finished, the settings are fixed.

The manifest is derived from the networks' JSON files, so a crash can never leave it claiming a
network that is not there.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from neon_ray.data.datasets import load_dataset
from neon_ray.data.splits import SplitConfig
from neon_ray.errors import ConfigError, NeonRayError
from neon_ray.nets.checkpoint import load_network, read_header
from neon_ray.nets.spec import SamplerConfig
from neon_ray.nets.training import TrainConfig
from neon_ray.runtime.files import atomic_write, atomic_write_text, check_output_dir
from neon_ray.zoo.config import ZooConfig, check_distinct_slugs, dataset_slug

ZOO_FILE = "zoo.json"
MANIFEST = "manifest.parquet"


def network_stem(root: str | Path, nid: str, dataset: str) -> Path:
    """Where a zoo network's files live, without suffix: ZOO/{dataset folder}/networks/{id}."""
    return Path(root) / dataset_slug(dataset) / "networks" / nid


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


def with_new_defaults(identity: dict) -> dict:
    """A zoo.json identity with settings added since it was written filled in at their defaults.

    A field is only ever added with a default that keeps the earlier behaviour (e.g. TrainConfig's
    optimizer 'adam' and lr_schedule 'constant'), so an older zoo stays extendable.
    """
    defaults = {"train": asdict(TrainConfig()), "sampler": asdict(SamplerConfig()), "split": asdict(SplitConfig())}
    filled = dict(identity)
    for key, default in defaults.items():
        if isinstance(identity.get(key), dict):
            filled[key] = {**json.loads(json.dumps(default)), **identity[key]}
    return filled


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
        old_identity = with_new_defaults(existing["identity"])
        if old_identity == identity:
            datasets = list(dict.fromkeys(old_datasets + datasets))
        elif _has_finished_network(root, old_datasets):
            differ = sorted(k for k in set(identity) | set(old_identity) if identity.get(k) != old_identity.get(k))
            raise ConfigError(
                f"{path}: this zoo was built with other settings (differing: {', '.join(differ)}); "
                "use another --out, or the zoo's own settings"
            )
        # else: nothing finished yet, so the zoo starts over with the new settings.
    check_distinct_slugs(datasets, str(path))
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
        return network_stem(self.root, nid, self.row(nid)["dataset"])

    def load(self, nid: str):
        """(MLP in eval mode, metadata) of a network."""
        return load_network(self.stem(nid))

    def dataset(self, name: str):
        """The dataset with exactly the splits and preprocessing its networks were trained on."""
        return load_dataset(name, self.data_dir, seed=self.seed, split=self.split)


def open_zoo(path: str | Path) -> Zoo:
    return Zoo(path)
