"""Which zoo networks an agent trains on and which it is reported on (method.md §8).

- Protocol A, per dataset (no holdout): the agent trains on the 'train'-role networks of the
  chosen datasets and is reported on their 'test'-role networks.
- Protocol B, unseen datasets (a holdout): the held-out datasets are excluded from training;
  the agent trains on the 'train'-role networks of every other chosen dataset and is reported
  on ALL networks of the held-out datasets, which it never saw.

Everything here works on a zoo manifest (a DataFrame with `network_id`, `dataset`, `role`) or
on anything with a `.manifest()` method (a `neon_ray.zoo.store.Zoo`), so it needs neither Ray nor
torch. Network ID lists are in a stable order: by dataset name, then network ID.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import pandas as pd

from neon_ray.errors import ConfigError

PROTOCOLS = ("A", "B")
_COLUMNS = ("network_id", "dataset", "role")


@dataclass(frozen=True)
class Selection:
    """The networks of one protocol: what the agent trains on and what it is reported on."""

    protocol: str
    """'A' (per dataset) or 'B' (held-out datasets)."""
    train_datasets: tuple[str, ...]
    """Datasets whose train-role networks the agent trains on (sorted)."""
    eval_datasets: tuple[str, ...]
    """Datasets the agent is reported on (sorted)."""
    train_ids: tuple[str, ...]
    """Training network IDs, by dataset then ID."""
    eval_ids: tuple[str, ...]
    """Reporting network IDs, by dataset then ID."""


def select_networks(zoo_or_manifest, datasets: Sequence[str] | None = None, holdout: Sequence[str] = ()) -> Selection:
    """Protocol A when `holdout` is empty, protocol B otherwise.

    Args:
        zoo_or_manifest: a `Zoo` or its manifest DataFrame.
        datasets: datasets to use (None: every dataset of the zoo). In protocol B the training
            datasets are these minus the holdout.
        holdout: datasets never trained on (protocol B); each must be in the zoo, and may be
            given whether or not it is also listed in `datasets`.
    """
    manifest = _manifest(zoo_or_manifest)
    known = sorted(set(manifest["dataset"]))
    chosen = _check_datasets("datasets", datasets, known) if datasets is not None else known
    held = _check_datasets("holdout", holdout, known)
    if not chosen:
        raise ConfigError("datasets: the list is empty; give at least one dataset or None for all")
    train_datasets = sorted(set(chosen) - set(held))
    if not train_datasets:
        raise ConfigError(
            f"holdout {held} covers every chosen dataset {chosen}: nothing is left to train on; "
            "hold out fewer datasets"
        )
    train_ids = _ids(manifest, train_datasets, role="train")
    if not train_ids:
        raise ConfigError(
            f"no training networks: datasets {train_datasets} have no 'train'-role networks in the zoo "
            "(was it built with test_networks == networks?)"
        )
    if held:
        return Selection("B", tuple(train_datasets), tuple(held), tuple(train_ids), tuple(_ids(manifest, held, role=None)))
    return Selection("A", tuple(train_datasets), tuple(train_datasets), tuple(train_ids),
                     tuple(_ids(manifest, train_datasets, role="test")))


def train_network_ids(zoo_or_manifest, datasets: Sequence[str] | None = None, holdout: Sequence[str] = ()) -> list[str]:
    """Network IDs the agent trains on (see `select_networks`)."""
    return list(select_networks(zoo_or_manifest, datasets, holdout).train_ids)


def eval_network_ids(zoo_or_manifest, datasets: Sequence[str] | None = None, holdout: Sequence[str] = ()) -> list[str]:
    """Network IDs the agent is reported on (see `select_networks`)."""
    return list(select_networks(zoo_or_manifest, datasets, holdout).eval_ids)


def _manifest(zoo_or_manifest) -> pd.DataFrame:
    frame = zoo_or_manifest.manifest() if hasattr(zoo_or_manifest, "manifest") else zoo_or_manifest
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(f"expected a zoo or its manifest DataFrame, got {type(zoo_or_manifest).__name__}")
    missing = [c for c in _COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"zoo manifest lacks column(s) {missing}; expected {list(_COLUMNS)}")
    if frame.empty:
        raise ConfigError("the zoo has no networks; build some with `neon-ray zoo build`")
    return frame


def _check_datasets(what: str, names: Iterable[str], known: list[str]) -> list[str]:
    if isinstance(names, str):
        raise ConfigError(f"{what} must be a list of dataset names, got the string {names!r}")
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"{what}: {unknown} not in the zoo, which has datasets {known}")
    return sorted(names)


def _ids(manifest: pd.DataFrame, datasets: list[str], role: str | None) -> list[str]:
    rows = manifest[manifest["dataset"].isin(datasets)]
    if role is not None:
        rows = rows[rows["role"] == role]
    return rows.sort_values(["dataset", "network_id"])["network_id"].astype(str).tolist()
