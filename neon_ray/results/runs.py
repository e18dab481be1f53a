"""Run manifests: did a run that writes results finish?

`RES/_runs/method=<m>/<run_id>.json` records a run of `pruning.batch.run_networks`: 'running'
(with the networks expected per dataset) when it starts, 'complete' after its last row was
written, 'failed' when it stopped on an error. A killed run stays 'running'. Parquet readers
ignore `_`-prefixed folders, so `pandas.read_parquet(RES)` still reads only the rows. RES may
be a URI (`s3://bucket/res`, see `runtime.files`): manifests are then written as a temporary key
moved onto their name, and read in one request each. Rows without a manifest (written by
`write_results` alone, or by older versions) belong to runs of 'unknown' completeness, not
incomplete ones (see `summary.run_status`).
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from urllib.parse import quote

from neon_ray.errors import ConfigError, DataError
from neon_ray.results.schema import check_run_id, safe_file_name
from neon_ray.runtime.files import Location, atomic_write_text, display, join, list_files, read_bytes

log = logging.getLogger(__name__)

RUNS_DIR = "_runs"
"""Folder of run manifests under a results directory (`_`-prefixed: Parquet readers skip it)."""
RUN_STATES = ("running", "complete", "failed")


def run_manifest_path(root: Location, run_id: str, method: str) -> Location:
    """RES/_runs/method=<method>/<run_id>.json (a Path, or a URI for a URI root)."""
    return join(root, RUNS_DIR, f"method={quote(str(method), safe='')}", f"{safe_file_name(str(run_id))}.json")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def start_run(root: Location, run_id: str, method: str, expected: dict[str, int], *,
              methods: list[str] | None = None, config_label: str | None = None) -> dict:
    """Record that run `run_id` of `method` starts writing rows for `expected` networks per dataset.

    `methods` are every method the run writes rows for (e.g. 'uniform' and 'uniform+dc');
    returns the manifest, to be passed to `finish_run`.
    """
    check_run_id(run_id)
    manifest = {
        "run_id": run_id, "method": method, "methods": list(methods or [method]), "config_label": config_label,
        "status": "running", "expected": {str(k): int(v) for k, v in expected.items()},
        "networks": int(sum(expected.values())), "started_at": _now(), "finished_at": None, "error": None,
    }
    atomic_write_text(run_manifest_path(root, run_id, method), json.dumps(manifest, indent=1) + "\n")
    return manifest


def finish_run(root: Location, manifest: dict, status: str = "complete", error: str | None = None) -> dict:
    """Rewrite a run's manifest as 'complete' (after its last row was written) or 'failed'."""
    if status not in RUN_STATES:
        raise ConfigError(f"run status must be one of {RUN_STATES}, got {status!r}")
    manifest = {**manifest, "status": status, "finished_at": _now(), "error": error}
    atomic_write_text(run_manifest_path(root, manifest["run_id"], manifest["method"]), json.dumps(manifest, indent=1) + "\n")
    return manifest


def read_runs(root: Location) -> list[dict]:
    """Every run manifest under `root`, a path or a URI (unreadable ones are skipped with a warning)."""
    runs = []
    for path in _manifest_files(join(root, RUNS_DIR)):
        try:
            doc = json.loads(read_bytes(path).decode())
            if not (isinstance(doc, dict) and isinstance(doc.get("run_id"), str) and isinstance(doc.get("method"), str)
                    and doc.get("status") in RUN_STATES and isinstance(doc.get("expected"), dict)):
                raise ValueError("not a run manifest (needs run_id, method, status and expected)")
            doc["expected"] = {str(k): int(v) for k, v in doc["expected"].items()}
        except (OSError, ValueError, TypeError) as exc:
            log.warning("skipped run manifest %s: %s", display(path), exc)
            continue
        doc["path"] = display(path)
        runs.append(doc)
    return runs


def _manifest_files(folder: Location) -> list[Location]:
    """RUNS/method=<m>/<run_id>.json; not the temporary `.NAME.<random>.tmp` of a write in progress."""
    try:
        found = list_files(folder)
    except OSError as exc:
        raise DataError(f"{display(folder)}: run manifests cannot be listed ({exc})") from exc
    return [path for (*folders, name), path in found
            if len(folders) == 1 and name.endswith(".json") and not name.startswith(".")]
