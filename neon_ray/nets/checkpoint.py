"""Saving and loading networks as an architecture spec (JSON) plus a state_dict (.pt).

A network `stem` is two files: `stem.pt` (tensors only, read with `weights_only=True`) and
`stem.json` (format tag, spec, free-form metadata). Both are written to temporary names and
renamed (`runtime.files.atomic_write`, so both get the project's one file mode, 0666 less the umask);
the JSON is renamed last, so a network counts as present only once it is complete.
"""
from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import torch

from neon_ray.errors import CheckpointError
from neon_ray.runtime.files import atomic_write, atomic_write_text
from neon_ray.nets.spec import ArchSpec, MLP, build_mlp

NETWORK_FORMAT = "neon-ray-network/1"


def network_file(stem: str | Path, suffix: str) -> Path:
    """`stem` + suffix, appended: a stem may contain dots (`Path.with_suffix` would cut it there)."""
    stem = Path(stem)
    return stem.with_name(stem.name + suffix)


def save_network(model: MLP, stem: str | Path, meta: dict | None = None) -> Path:
    """Write `stem.pt` and `stem.json`; returns the JSON path."""
    stem = Path(stem)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    atomic_write(network_file(stem, ".pt"), lambda fh: torch.save(state, fh))
    doc = {"format": NETWORK_FORMAT, "spec": model.spec.to_dict(), "meta": meta or {}}
    atomic_write_text(network_file(stem, ".json"), json.dumps(doc, indent=1, sort_keys=True))
    return network_file(stem, ".json")


def network_exists(stem: str | Path) -> bool:
    stem = Path(stem)
    return network_file(stem, ".json").is_file() and network_file(stem, ".pt").is_file()


def read_header(stem: str | Path) -> dict:
    """The JSON document of a saved network (spec and metadata) without loading tensors."""
    path = network_file(stem, ".json")
    if not path.is_file():
        raise CheckpointError(f"{path}: network description not found")
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != NETWORK_FORMAT:
        raise CheckpointError(f"{path}: not a neon-ray network (expected format {NETWORK_FORMAT!r})")
    return doc


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a tensors-only state_dict; refuses anything that would need unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: corrupted or not a tensors-only state_dict ({first})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (a state_dict)")
    return state


def load_network(stem: str | Path) -> tuple[MLP, dict]:
    """Load a saved network in eval mode; returns (model, meta)."""
    stem = Path(stem)
    if stem.suffix in (".json", ".pt"):
        stem = stem.with_name(stem.stem)
    doc = read_header(stem)
    spec = ArchSpec.from_dict(doc["spec"])
    state = load_state_dict(network_file(stem, ".pt"))
    model = build_mlp(spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{stem}.pt: weights do not match the spec {spec.describe()} ({str(exc).splitlines()[0]})") from exc
    model.eval()
    return model, doc.get("meta", {})
