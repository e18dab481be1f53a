"""Prune zoo networks and report them: the one path the agent and every baseline share.

    pruner = EpisodePruner("random", "loops=4", env_config={"loops": 4}, chooser=RandomChooser(0))
    rows = run_episode(zoo, "phoneme__s0__n001", pruner)                  # one network, no Ray
    networks = zoo_networks(zoo, ["phoneme"], role="all")                 # manifest rows
    frame = run_networks(zoo, pruner, networks, run_id="random__loops4", results="res")  # on Ray

A *pruner* turns (original network, dataset) into a pruned network. `EpisodePruner` runs one
`PruningEnv` episode restricted to that single network, with an action *chooser* (obs ->
action index): the trained policy, uniformly random actions, or one fixed action. The
magnitude baseline (baselines.py) is another pruner. Everything around the pruning is shared:
the original and the pruned network are measured with `metrics.measure` on the zoo's exact
splits (test accuracy is what gets reported; val is the reward split), and the row is built by
`results.result_row`, so every method is counted the same way and matched by network ID.

Deep Compression after pruning (`RunOptions.compress`): the pruned network also goes through
`deepcomp.compress_model`, and a SECOND row is written with method `<method>+dc`, where
`bytes_after` is the real compressed file's size and `params_after` the non-zero parameters.
Two rows rather than one replaced row keep the structured result and the gain of Deep
Compression on top of it both visible, under the same network ID.

On Ray (`run_networks`) each network is one task with one CPU and one torch thread. The
driver loads each network and puts each dataset into the object store once, keeps at most a
few tasks per CPU in flight (so a large zoo never sits in memory at once), saves pruned
networks as tasks finish, and writes a dataset's rows as soon as its last network is done, so
a crash keeps every finished dataset. Tasks need no shared filesystem, except an agent's
checkpoint directory, which the agent's chooser reads in the task.
"""
from __future__ import annotations

import copy
import json
import tempfile
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import pandas as pd

from neon_ray.errors import ConfigError
from neon_ray.runtime.files import atomic_write_bytes, check_output_dir

Chooser = Callable[[np.ndarray], int]
"""Picks an action index from an observation."""

# env_config keys that run_episode sets itself: one env prunes exactly one given network
_OWNED_ENV_KEYS = ("zoo", "datasets", "networks", "worker_index", "num_workers", "vector_index")
REMOVE = "remove"
"""What `Pruned.actions` records for a remove-layer action."""


def network_seed(seed: int, network_id: str) -> int:
    """A per-network seed that does not depend on which task or worker handles the network."""
    return (int(seed) * 1_000_003 + zlib.crc32(network_id.encode())) & 0x7FFFFFFF


class ChooserFactory(Protocol):
    """Builds a network's chooser inside the process that runs the episode (picklable)."""

    def __call__(self, network_id: str, n_actions: int) -> Chooser: ...


@dataclass(frozen=True)
class RandomChooser:
    """Uniformly random actions, seeded per network: reproducible whatever the task order."""

    seed: int = 0
    """Base seed, mixed with the network ID."""

    def __call__(self, network_id: str, n_actions: int) -> Chooser:
        rng = np.random.default_rng(network_seed(self.seed, network_id))
        return lambda _obs: int(rng.integers(n_actions))


@dataclass(frozen=True)
class FixedChooser:
    """The same action at every step (uniform pruning)."""

    action: int = 0
    """Action index to take."""

    def __call__(self, network_id: str, n_actions: int) -> Chooser:
        if not 0 <= self.action < n_actions:
            raise ConfigError(f"fixed action {self.action} out of range: the env has actions 0..{n_actions - 1}")
        return lambda _obs: self.action


@dataclass
class Pruned:
    """What a pruner returns for one network."""

    model: object
    """The pruned network (an MLP)."""
    actions: list
    """Keep-rate chosen at each step ('remove' for a merged layer); empty for weight pruning."""
    seconds: float
    """Wall-clock seconds of the pruning itself, fine-tuning included, measurement excluded."""
    sparse: bool = False
    """Pruned individual weights: bytes are counted in a sparse layout."""
    info: dict = field(default_factory=dict)
    """Method-specific extras (return, fine-tuning epochs, ...)."""


class SingleNetworkZoo:
    """A zoo holding one in-memory network and its dataset, so `PruningEnv` can prune any network.

    It offers the part of `zoo.Zoo` the env reads (manifest, load, dataset); `load` hands out
    copies, so the caller's network is never changed.
    """

    def __init__(self, network_id: str, dataset_name: str, model, dataset):
        self.root = f"<network {network_id}>"
        self._row = {"network_id": network_id, "dataset": dataset_name, "role": "test"}
        self._model, self._dataset = model, dataset

    def manifest(self, dataset: str | None = None, role: str | None = None) -> pd.DataFrame:
        return pd.DataFrame([self._row])

    def load(self, nid: str):
        if nid != self._row["network_id"]:
            raise ConfigError(f"{self.root}: no network {nid!r}")
        return copy.deepcopy(self._model).eval(), {}

    def dataset(self, name: str):
        return self._dataset


def check_env_config(env_config: dict) -> None:
    """Fail in the driver, before any task starts, on env_config keys or values PruningEnv refuses."""
    from neon_ray.pruning.env import EnvConfig

    owned = sorted(set(env_config) & set(_OWNED_ENV_KEYS))
    if owned:
        raise ConfigError(f"env_config keys {owned} are set per network by the episode runner; leave them out")
    EnvConfig.from_env_config({**env_config, "zoo": "<unused>"})


def prune_episode(model, dataset, network_id: str, env_config: dict, choose: Chooser, seed: int = 0) -> Pruned:
    """Run one PruningEnv episode on `model` alone and return the pruned network.

    `env_config` holds the env's settings (keep_rates, loops, tolerance, reward, finetune, ...);
    `seed` seeds the episode (fine-tuning row order, Dropout masks). `model` is not changed.
    """
    from neon_ray.pruning.env import PruningEnv

    start = time.perf_counter()
    zoo = SingleNetworkZoo(network_id, dataset.name, model, dataset)
    env = PruningEnv({**env_config, "zoo": zoo, "networks": (network_id,), "info_timings": False})
    obs, info = env.reset(seed=seed)
    actions, total_reward, epochs, done = [], 0.0, 0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(choose(obs))
        actions.append(REMOVE if info["removed_layer"] else float(info["keep_rate"]))
        total_reward += reward
        epochs += info["finetune_epochs"]
        done = terminated or truncated
    extras = {"return": total_reward, "finetune_epochs": epochs, "tolerance": info["tolerance"]}
    return Pruned(env.current_model(), actions, time.perf_counter() - start, info=extras)


@dataclass(frozen=True)
class EpisodePruner:
    """A method that prunes with one PruningEnv episode per network: the agent, random, uniform."""

    method: str
    """Method name written in the results (e.g. 'neon-a2c', 'random', 'uniform')."""
    label: str
    """Short configuration label written in the results (e.g. 'a=5 loops=4')."""
    env_config: dict
    """PruningEnv settings (keep_rates, loops, tolerance, reward, finetune, ...); zoo and network are set per network."""
    chooser: ChooserFactory
    """Builds the action chooser of each network inside its task."""
    tolerance: float | None = None
    """Tolerance (pp) reported with the rows; None for methods that ignore it."""
    seed: int = 0
    """Base seed of every episode (mixed with the network ID)."""
    config: dict = field(default_factory=dict)
    """Further settings to record in the rows' config (e.g. the agent's run directory)."""

    def __post_init__(self) -> None:
        check_env_config(self.env_config)

    @property
    def loops(self) -> int:
        from neon_ray.pruning.env import EnvConfig

        return int(self.env_config.get("loops", EnvConfig.loops))

    def row_config(self) -> dict:
        return {**self.env_config, **self.config, "seed": self.seed}

    def prune(self, model, dataset, network: dict) -> Pruned:
        nid = network["network_id"]
        choose = self.chooser(nid, n_actions(self.env_config))
        return prune_episode(model, dataset, nid, self.env_config, choose, network_seed(self.seed, nid))


def n_actions(env_config: dict) -> int:
    """Size of the env's action space for these settings (keep-rates, plus remove-layer if on)."""
    from neon_ray.pruning.env import DEFAULT_KEEP_RATES

    return len(env_config.get("keep_rates", DEFAULT_KEEP_RATES)) + int(bool(env_config.get("remove_layer_action")))


class Pruner(Protocol):
    """Anything `evaluate_network` can run: EpisodePruner, baselines.MagnitudePruner."""

    method: str
    label: str
    tolerance: float | None
    seed: int

    @property
    def loops(self) -> int | None: ...

    def row_config(self) -> dict: ...

    def prune(self, model, dataset, network: dict) -> Pruned: ...


@dataclass(frozen=True)
class RunOptions:
    """How networks are measured, stored and post-processed, whatever the method."""

    timing: bool = True
    """Measure latency (and memory) before and after; off makes rows reproducible and faster."""
    compress: bool = False
    """Also apply Deep Compression to each pruned network and write a '<method>+dc' row."""
    deepcomp: object | None = None
    """deepcomp.DeepCompConfig for `compress`; None takes its defaults."""
    save_dir: str | None = None
    """Directory to save pruned networks in (DIR/{dataset}/{network_id}.json|.pt, plus .nrdc with compress)."""


@dataclass
class NetworkResult:
    """One network's rows and what the driver may save."""

    rows: list[dict]
    """Result rows (one, or two with Deep Compression)."""
    model: object
    """The pruned network."""
    compressed: bytes | None = None
    """The Deep Compression file's content, when `RunOptions.compress`."""


def evaluate_network(pruner: Pruner, network: dict, model, dataset, run_id: str, options: RunOptions = RunOptions()) -> NetworkResult:
    """Measure `model`, prune it with `pruner`, measure the result and build its row(s)."""
    from neon_ray.nets.metrics import measure
    from neon_ray.results.store import result_row

    before = measure(model, dataset, timing=options.timing)
    pruned = pruner.prune(model, dataset, network)
    after = measure(pruned.model, dataset, timing=options.timing, sparse=pruned.sparse)
    common = dict(run_id=run_id, network=network, before=before, tolerance=pruner.tolerance, loops=pruner.loops, actions=pruned.actions)
    config = pruner.row_config()
    rows = [result_row(method=pruner.method, config=config, config_label=pruner.label, after=after,
                       arch_after=pruned.model.spec.describe(), seconds=pruned.seconds, **common)]
    blob = None
    if options.compress:
        dc_model, dc_after, blob, dc_config, dc_seconds = _deep_compress(pruned.model, dataset, options)
        rows.append(result_row(method=f"{pruner.method}+dc", config={**config, "deepcomp": dc_config},
                               config_label=pruner.label, after=dc_after, arch_after=dc_model.spec.describe(),
                               seconds=pruned.seconds + dc_seconds, **common))
    return NetworkResult(rows, pruned.model, blob)


def _deep_compress(model, dataset, options: RunOptions):
    """(decoded model, its metrics with the real file size as bytes, file content, config dict, seconds)."""
    from neon_ray.deepcomp import DeepCompConfig, compress_model
    from neon_ray.nets.metrics import measure

    cfg = options.deepcomp or DeepCompConfig()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "network.nrdc"
        decoded, _stages = compress_model(model, dataset, cfg, path)
        blob = path.read_bytes()
    seconds = time.perf_counter() - start
    after = replace(measure(decoded, dataset, timing=options.timing, sparse=True), bytes=len(blob))
    return decoded, after, blob, cfg.to_dict(), seconds


def _open(zoo):
    from neon_ray.zoo.build import Zoo, open_zoo

    return zoo if isinstance(zoo, Zoo) else open_zoo(zoo)


def run_episode(zoo, network_id: str, pruner: Pruner, run_id: str = "local", options: RunOptions = RunOptions()) -> list[dict]:
    """Prune one zoo network in this process (no Ray) and return its result row(s); saves when asked."""
    zoo = _open(zoo)
    network = zoo.row(network_id)
    model, _ = zoo.load(network_id)
    result = evaluate_network(pruner, network, model, zoo.dataset(network["dataset"]), run_id, options)
    if options.save_dir:
        save_pruned(options.save_dir, zoo, network, result, pruner, run_id)
    return result.rows


def save_pruned(save_dir: str | Path, zoo, network: dict, result: NetworkResult, pruner: Pruner, run_id: str) -> Path:
    """Write DIR/{dataset}/{network_id}.json|.pt (and .nrdc with Deep Compression); returns the stem.

    The metadata names the source network, dataset, split seed and data directory, so
    `neon-ray compress --network STEM` and `load_dataset` find the exact splits again.
    """
    from neon_ray.nets.checkpoint import network_file, save_network
    from neon_ray.zoo.build import dataset_slug

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


# --------------------------------------------------------------------------------------------
# Many networks on Ray


def _network_task(pruner: Pruner, network: dict, model, dataset, run_id: str, options: RunOptions) -> NetworkResult:
    """One Ray task: one network, one CPU, one torch thread."""
    import torch

    torch.set_num_threads(1)
    return evaluate_network(pruner, network, model, dataset, run_id, options)


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


def _describe(row: dict) -> str:
    return (f"{row['network_id']} {row['method']}: {row['arch_before']} -> {row['arch_after']} "
            f"x{row['reduction']:.2f}, test acc {row['delta_acc_pp']:+.2f} pp ({row['seconds']:.1f}s)")


def run_networks(
    zoo,
    pruner: Pruner,
    networks: pd.DataFrame,
    *,
    run_id: str,
    results: str | Path | None = None,
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
    `results`, the run's manifest (`results.start_run`) says 'running' with the networks
    expected per dataset until the last row is written, then 'complete' ('failed' on an error;
    a killed run stays 'running'), so readers can tell a half-finished run.
    """
    from neon_ray.results.store import check_run_id, finish_run, start_run

    check_run_id(run_id)
    if results is not None:
        check_output_dir(results, "results directory")
    if options.save_dir:
        check_output_dir(options.save_dir, "directory for pruned networks (save_dir)")
    zoo = _open(zoo)
    queue = [row for _, row in networks.iterrows()]
    left = defaultdict(int)
    for row in queue:
        left[row["dataset"]] += 1
    manifest = None
    if results is not None:
        methods = [pruner.method] + ([f"{pruner.method}+dc"] if options.compress else [])
        manifest = start_run(results, run_id, pruner.method, dict(left), methods=methods, config_label=pruner.label)
    try:
        done_rows = _run_queue(zoo, pruner, queue, left, run_id, results, options, address, progress, max_in_flight)
    except BaseException as exc:
        if manifest is not None:
            try:
                finish_run(results, manifest, "failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0])
            except OSError:
                pass  # the original error matters more; the manifest then still says 'running'
        raise
    if manifest is not None:
        finish_run(results, manifest, "complete")
    return pd.DataFrame([row for rows in done_rows.values() for row in rows])


def _run_queue(zoo, pruner: Pruner, queue: list, left: dict, run_id: str, results, options: RunOptions,
               address: str | None, progress: bool, max_in_flight: int | None) -> dict[str, list[dict]]:
    from neon_ray.runtime.progress import Progress
    from neon_ray.runtime.ray_session import cluster_cpus, ray_session
    from neon_ray.results.store import write_results

    done_rows: dict[str, list[dict]] = defaultdict(list)
    bar = Progress(len(queue), f"{pruner.method} {pruner.label}", enabled=progress)
    with ray_session(address) as ray:
        task = ray.remote(_network_task).options(num_cpus=1)
        limit = max_in_flight or max(1, 2 * int(cluster_cpus()))
        pruner_ref, data_refs, pending = ray.put(pruner), {}, {}
        while queue or pending:
            while queue and len(pending) < limit:
                network = queue.pop(0).to_dict()
                name = network["dataset"]
                if name not in data_refs:  # one copy per dataset in the object store, shared by its tasks
                    data_refs[name] = ray.put(zoo.dataset(name))
                model, _ = zoo.load(network["network_id"])
                pending[task.remote(pruner_ref, network, model, data_refs[name], run_id, options)] = network
            ready, _ = ray.wait(list(pending), num_returns=1)
            network = pending.pop(ready[0])
            result: NetworkResult = ray.get(ready[0])
            if options.save_dir:
                save_pruned(options.save_dir, zoo, network, result, pruner, run_id)
            name = network["dataset"]
            done_rows[name] += result.rows
            left[name] -= 1
            bar.update(_describe(result.rows[0]))
            if left[name] == 0:
                data_refs.pop(name, None)
                if results is not None:
                    write_results(done_rows[name], results)
    return done_rows


def slug(text: str) -> str:
    """A run-ID-safe version of a label ('a=5 loops=4' -> 'a5_loops4')."""
    out = "".join(c if c.isalnum() or c in ".-" else "_" for c in text.replace("=", ""))
    return "_".join(part for part in out.split("_") if part)


def format_rate(value: float) -> str:
    """A rate for labels without float noise (0.5 -> '0.5', 0.30000000000000004 -> '0.3')."""
    return f"{value:.6g}"
