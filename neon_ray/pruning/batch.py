"""Pruning zoo networks and keeping what comes out: one network in this process, or many on Ray.

    rows = run_episode(zoo, "phoneme__s0__n001", pruner)                  # one network, no Ray
    networks = zoo_networks(zoo, ["phoneme"], role="all")                 # manifest rows
    frame = run_networks(zoo, pruner, networks, run_id="random__loops4", results="res")  # on Ray

On Ray (`run_networks`) each network is one task with one CPU and one torch thread
(`runtime.fanout`). The driver loads each network and puts each dataset into the object store
once, keeps at most a few tasks per CPU in flight (so a large zoo never sits in memory at
once), saves pruned networks as tasks finish, and writes a dataset's rows as soon as its last
network is done, so a crash keeps every finished dataset. Tasks need no shared filesystem: an
agent's chooser reads the agent's checkpoint in the task, from a URI (`s3://...`) as well as a
path. `results` may be a URI too (rows and run manifests are written by the driver); pruned
networks (`options.save_dir`) are saved to a path only.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pandas as pd
import torch

from neon_ray.errors import ConfigError
from neon_ray.nets.checkpoint import network_file, save_network
from neon_ray.pruning.episodes import NetworkResult, Pruner, RunOptions, evaluate_network
from neon_ray.results.runs import finish_run, start_run
from neon_ray.results.schema import check_run_id
from neon_ray.results.store import write_results
from neon_ray.runtime.fanout import fan_out
from neon_ray.runtime.files import Location, atomic_write_bytes, check_output_dir, display, is_uri
from neon_ray.runtime.progress import ProgressLine
from neon_ray.runtime.ray_session import cluster_cpus, ray_session
from neon_ray.zoo.config import dataset_slug
from neon_ray.zoo.store import Zoo, open_zoo


def slug(text: str) -> str:
    """A run-ID-safe version of a label ('a=5 loops=4' -> 'a5_loops4')."""
    out = "".join(c if c.isalnum() or c in ".-" else "_" for c in text.replace("=", ""))
    return "_".join(part for part in out.split("_") if part)


def _open(zoo) -> Zoo:
    return zoo if isinstance(zoo, Zoo) else open_zoo(zoo)


def run_episode(zoo, network_id: str, pruner: Pruner, run_id: str = "local", options: RunOptions = RunOptions()) -> list[dict]:
    """Prune one zoo network in this process (no Ray) and return its result row(s); saves when asked."""
    _check_save_dir(options)
    zoo = _open(zoo)
    network = zoo.row(network_id)
    model, _ = zoo.load(network_id)
    result = evaluate_network(pruner, network, model, zoo.dataset(network["dataset"]), run_id, options)
    if options.save_dir:
        save_pruned(options.save_dir, zoo, network, result, pruner, run_id)
    return result.rows


def _check_save_dir(options: RunOptions) -> None:
    if not options.save_dir:
        return
    if is_uri(options.save_dir):
        # networks are saved by nets.checkpoint, which writes files on a path
        raise ConfigError(f"directory for pruned networks (save_dir) {display(options.save_dir)}: networks are saved "
                          "to a local or shared-filesystem path, not a URI; results may go to a URI")
    check_output_dir(options.save_dir, "directory for pruned networks (save_dir)")


def save_pruned(save_dir: str | Path, zoo: Zoo, network: dict, result: NetworkResult, pruner: Pruner, run_id: str) -> Path:
    """Write DIR/{dataset}/{network_id}.json|.pt (and .nrdc with Deep Compression); returns the stem.

    The metadata names the source network, dataset, split seed and data directory, so
    `neon-ray compress --network STEM` and `load_dataset` find the exact splits again.
    """
    stem = Path(save_dir) / dataset_slug(network["dataset"]) / network["network_id"]
    row = result.rows[0]
    meta = {
        "network_id": network["network_id"], "source_network_id": network["network_id"], "dataset": network["dataset"],
        "seed": int(network.get("seed", zoo.seed)), "data_dir": zoo.data_dir, "split": dict(zoo.identity.get("split", {})),
        "zoo": str(zoo.root), "method": pruner.method, "config_label": pruner.label, "run_id": run_id,
        "arch_before": row["arch_before"], "arch_after": row["arch_after"], "actions": json.loads(row["actions"]),
        "params_before": row["params_before"], "params_after": row["params_after"],
        "test_acc_before": row["test_acc_before"], "test_acc_after": row["test_acc_after"],
    }
    save_network(result.model, stem, meta)
    if result.compressed is not None:
        atomic_write_bytes(network_file(stem, ".nrdc"), result.compressed)
    return stem


def zoo_networks(zoo, datasets: list[str] | None, role: str) -> pd.DataFrame:
    """Manifest rows of `datasets` (None: all) with `role` ('train', 'test' or 'all'), dataset by dataset."""
    zoo = _open(zoo)
    if role not in ("train", "test", "all"):
        raise ConfigError(f"role must be 'train', 'test' or 'all', got {role!r}")
    known = list(zoo.datasets)
    chosen = list(datasets) if datasets else known
    missing = [d for d in chosen if d not in known]
    if missing:
        raise ConfigError(f"datasets {missing} are not in the zoo {zoo.root}, which has {known}")
    frames = [zoo.manifest(d, role) for d in chosen]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frame.empty:
        raise ConfigError(f"zoo {zoo.root}: no network with role {role!r} in datasets {chosen}")
    return frame


def run_networks(
    zoo,
    pruner: Pruner,
    networks: pd.DataFrame,
    *,
    run_id: str,
    results: Location | None = None,
    options: RunOptions = RunOptions(),
    address: str | None = None,
    progress: bool = True,
    max_in_flight: int | None = None,
) -> pd.DataFrame:
    """Prune every network of `networks` (manifest rows, e.g. from `zoo_networks`) in parallel on Ray.

    Rows are written to `results` one dataset at a time, as soon as that dataset's last
    network is done; pruned networks are saved as they finish. Returns every row.
    `max_in_flight` caps the tasks submitted at once (default: twice the cluster's CPUs).

    Output locations (`results`, `options.save_dir`) are checked before any work. With
    `results`, the run's manifest (`results.runs.start_run`) says 'running' with the networks
    expected per dataset until the last row is written, then 'complete' ('failed' on an error;
    a killed run stays 'running'), so readers can tell a half-finished run.
    """
    check_run_id(run_id)
    if results is not None:
        check_output_dir(results, "results directory")
    _check_save_dir(options)
    zoo = _open(zoo)
    batch = _Batch(zoo, pruner, networks, run_id, results, options)
    manifest = None
    if results is not None:
        methods = [pruner.method] + ([f"{pruner.method}+dc"] if options.compress else [])
        manifest = start_run(results, run_id, pruner.method, dict(batch.left), methods=methods, config_label=pruner.label)
    try:
        batch.run(address, progress, max_in_flight)
    except BaseException as exc:
        if manifest is not None:
            try:
                finish_run(results, manifest, "failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0])
            except OSError:
                pass  # the original error matters more; the manifest then still says 'running'
        raise
    if manifest is not None:
        finish_run(results, manifest, "complete")
    return pd.DataFrame([row for rows in batch.rows.values() for row in rows])


def _network_task(pruner: Pruner, network: dict, model, dataset, run_id: str, options: RunOptions) -> NetworkResult:
    """One Ray task: one network, one CPU, one torch thread."""
    torch.set_num_threads(1)
    return evaluate_network(pruner, network, model, dataset, run_id, options)


def _describe(row: dict) -> str:
    return (f"{row['network_id']} {row['method']}: {row['arch_before']} -> {row['arch_after']} "
            f"x{row['reduction']:.2f}, test acc {row['delta_acc_pp']:+.2f} pp ({row['seconds']:.1f}s)")


class _Batch:
    """The driver's side of `run_networks`: submits networks, keeps finished rows, writes each dataset once complete."""

    def __init__(self, zoo: Zoo, pruner: Pruner, networks: pd.DataFrame, run_id: str, results, options: RunOptions):
        self.zoo, self.pruner, self.run_id, self.results, self.options = zoo, pruner, run_id, results, options
        self.networks = networks
        self.left: dict[str, int] = defaultdict(int)
        """Networks not finished yet, per dataset."""
        for name in networks["dataset"] if len(networks) else ():
            self.left[name] += 1
        self.rows: dict[str, list[dict]] = defaultdict(list)
        self._data_refs: dict[str, object] = {}

    def run(self, address: str | None, progress: bool, max_in_flight: int | None) -> None:
        bar = ProgressLine(len(self.networks), f"{self.pruner.method} {self.pruner.label}", enabled=progress)
        with ray_session(address) as ray:
            task = ray.remote(_network_task).options(num_cpus=1)
            pruner_ref = ray.put(self.pruner)

            def submit(network: dict):
                name = network["dataset"]
                if name not in self._data_refs:  # one copy per dataset in the object store, shared by its tasks
                    self._data_refs[name] = ray.put(self.zoo.dataset(name))
                model, _ = self.zoo.load(network["network_id"])
                return task.remote(pruner_ref, network, model, self._data_refs[name], self.run_id, self.options)

            networks = (row.to_dict() for _, row in self.networks.iterrows())
            fan_out(networks, submit, self._finished, limit=max_in_flight or max(1, 2 * int(cluster_cpus())), progress=bar)

    def _finished(self, network: dict, result: NetworkResult) -> str:
        """Save the pruned network, keep its rows, and write its dataset's rows if it was the last one."""
        if self.options.save_dir:
            save_pruned(self.options.save_dir, self.zoo, network, result, self.pruner, self.run_id)
        name = network["dataset"]
        self.rows[name] += result.rows
        self.left[name] -= 1
        if self.left[name] == 0:
            self._data_refs.pop(name, None)
            if self.results is not None:
                write_results(self.rows[name], self.results)
        return _describe(result.rows[0])
