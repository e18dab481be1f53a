"""The zoo networks one `PruningEnv` prunes: which ones, in what order, loaded once and cached.

Selection. `EnvConfig.datasets` and `EnvConfig.networks` (a role filter or explicit IDs) pick
rows of the zoo's manifest; a selection that names something the zoo lacks, or selects
nothing, is a ConfigError.

Workers. Datasets are spread over RLlib's remote env runners (worker_index 1..num_workers):
sorted dataset k goes to worker (k mod num_workers) + 1, or, when the manifest has the figures
for it, the datasets are packed by expected cost (see `assign_datasets`); with more workers
than datasets a worker takes dataset (worker_index - 1) mod n. The local worker (index 0) or
num_workers = 0 takes every dataset. A worker with several datasets cycles through them, one
episode each, and through each dataset's networks in a seeded shuffled order.

Caching. Datasets and networks are loaded lazily on first use and kept, so an env that never
resets loads nothing and a network is read, probed and measured once per env.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from neon_ray.errors import ConfigError, DataError
from neon_ray.nets import metrics
from neon_ray.nets.spec import MLP
from neon_ray.pruning.episode_config import EnvConfig, EpisodeConfig
from neon_ray.pruning.observation import probe_rows
from neon_ray.zoo.store import open_zoo


def assign_datasets(datasets: list[str], worker_index: int, num_workers: int, costs: dict[str, float] | None = None) -> list[str]:
    """The datasets one worker cycles through (see the module docstring).

    With `costs` (expected episode cost per dataset), datasets are packed onto workers
    longest-first, each to the worker with the least cost so far: a sampling round waits for
    its slowest runner, so a runner holding only cheap datasets would otherwise sit idle.
    Without costs (or equal costs) this is the round-robin split by sorted name.
    """
    names = sorted(datasets)
    if num_workers <= 0 or worker_index <= 0 or not names:
        return names
    slot = (worker_index - 1) % num_workers
    if num_workers >= len(names):
        return [names[slot % len(names)]]
    if not costs:
        return names[slot::num_workers]
    loads, assigned = [0.0] * num_workers, [[] for _ in range(num_workers)]
    for name in sorted(names, key=lambda n: (-costs.get(n, 0.0), n)):
        target = min(range(num_workers), key=lambda w: (loads[w], w))
        loads[target] += costs.get(name, 0.0)
        assigned[target].append(name)
    return sorted(assigned[slot])


def dataset_costs(manifest, max_train_rows: int | None) -> dict[str, float]:
    """Expected relative episode cost per dataset: fine-tuning dominates a step (bench step), and
    costs about FLOPs per row x rows per epoch, over depth-many steps per loop."""
    cost = manifest["flops"].astype(float) * manifest["depth"].astype(float)
    if "train_rows" in manifest:
        rows = manifest["train_rows"].astype(float)
        cost = cost * (rows.clip(upper=max_train_rows) if max_train_rows else rows)
    return cost.groupby(manifest["dataset"]).mean().to_dict()


STEP_OVERHEAD = 2.4e9
"""A step's cost that does not grow with FLOPs x rows (pruning, observation, evaluation, Python and
per-batch overhead), in `dataset_costs` units (FLOPs per row x rows). Calibrated with `bench rollout`
on a 6-dataset zoo (NEON's sampler, rows capped at 3000, the agent's fine-tuning budget): with
equal step shares the runners' measured cost per step differed 1.5x where FLOPs x rows alone
said 2.2x; this constant makes the model say 1.5x."""


def step_shares(manifest, num_workers: int, costs: dict[str, float] | None) -> dict[int, float]:
    """Share of a train batch's steps each remote worker (1..num_workers) should sample so that all
    finish together: in inverse proportion to its expected cost per step.

    A synchronous sampling round waits for its slowest runner. Dataset packing (`assign_datasets`)
    balances the runners' costs per cycle through their datasets, but a runner holding many cheap
    datasets and one holding a few dear ones then differ in cost per step (measured: 1.5x on a
    6-dataset zoo), and equal step shares leave the cheap one idle. Cost per step of a worker =
    its datasets' expected episode costs (`costs`, from `dataset_costs`) over their mean depths
    (steps per loop), since it cycles through them one episode each, plus STEP_OVERHEAD. Equal
    shares without costs.
    """
    if num_workers <= 1 or not costs:
        return {w: 1.0 / max(num_workers, 1) for w in range(1, max(num_workers, 1) + 1)}
    depth = manifest["depth"].astype(float).groupby(manifest["dataset"]).mean().to_dict()
    speed = {}
    for w in range(1, num_workers + 1):
        mine = assign_datasets(sorted(costs), w, num_workers, costs)
        steps = sum(depth[d] for d in mine)
        speed[w] = 1.0 / (sum(costs[d] for d in mine) / steps + STEP_OVERHEAD)
    total = sum(speed.values())
    return {w: v / total for w, v in speed.items()}


def measure_costs(model: MLP, data, needs: frozenset, episode: EpisodeConfig) -> dict:
    """The optional measurements a reward needs (`Reward.needs`): FLOPs, latency, memory."""
    costs = {}
    if "flops" in needs:
        costs["flops"] = metrics.count_flops(model)
    if "latency" in needs:
        costs["latency"] = metrics.latency_ms(model, data.n_features, episode.latency_batch, episode.latency_repeats)
    if "memory" in needs:
        costs["memory"] = metrics.peak_memory_bytes(model, data.n_features, episode.memory_batch)
    return costs


@dataclass
class ZooNetwork:
    """A zoo network and what never changes about it during episodes (cached per env)."""

    network_id: str
    """Zoo ID."""
    dataset: str
    """Dataset name it was trained on."""
    model: MLP
    """The original network (never modified: every step builds a new MLP)."""
    probe: torch.Tensor
    """Fixed training rows for activation statistics and importance."""
    acc: float
    """Original val accuracy."""
    f1: float
    """Original val macro-F1."""
    params: int
    """Original parameter count."""
    costs: dict
    """Optional original measurements a reward needs: flops, latency, memory."""


class NetworkCatalogue:
    """This env's networks by dataset, their cycle, and the cache of loaded datasets and networks."""

    def __init__(self, cfg: EnvConfig, needs: frozenset):
        self.cfg, self.needs = cfg, needs
        self.zoo = open_zoo(cfg.zoo) if isinstance(cfg.zoo, (str, Path)) else cfg.zoo
        self.batch_share = 1.0
        """Share of each train batch's steps this worker samples (`step_shares`; 1.0 for the local worker)."""
        self.order = self._select()
        """Network IDs of this worker per assigned dataset, sorted (before shuffling)."""
        self.datasets: dict = {}
        """Datasets loaded so far, by name."""
        self.networks: dict[str, ZooNetwork] = {}
        """Networks loaded so far, by ID."""
        self._queues, self._cursor, self._dataset_cursor = {}, {}, 0

    def _select(self) -> dict[str, list[str]]:
        manifest, cfg = self.zoo.manifest(), self.cfg
        if len(manifest) == 0:
            raise ConfigError(f"zoo {getattr(self.zoo, 'root', cfg.zoo)} has no networks; build some with `neon-ray zoo build`")
        known = sorted(set(manifest["dataset"]))
        if cfg.datasets is not None:
            missing = [d for d in cfg.datasets if d not in known]
            if missing:
                raise ConfigError(f"env_config datasets {missing} are not in the zoo, which has {known}")
            manifest = manifest[manifest["dataset"].isin(cfg.datasets)]
        if isinstance(cfg.networks, str):
            if cfg.networks != "all":
                manifest = manifest[manifest["role"] == cfg.networks]
        else:
            ids = set(manifest["network_id"])
            unknown = [n for n in cfg.networks if n not in ids]
            if unknown:
                raise ConfigError(f"env_config networks: unknown network ID(s) {unknown[:5]} (not in the zoo or not in the chosen datasets)")
            manifest = manifest[manifest["network_id"].isin(cfg.networks)]
        if len(manifest) == 0:
            raise ConfigError(f"env_config selects no network (datasets={cfg.datasets}, networks={cfg.networks!r})")
        max_rows = cfg.episode.finetune.max_train_rows
        costs = dataset_costs(manifest, max_rows) if {"flops", "depth"} <= set(manifest) else None
        mine = assign_datasets(sorted(set(manifest["dataset"])), cfg.worker_index, cfg.num_workers, costs)
        if cfg.worker_index > 0 and cfg.num_workers > 0:
            self.batch_share = step_shares(manifest, cfg.num_workers, costs).get(cfg.worker_index, 1.0 / cfg.num_workers)
        self._dataset_of = dict(zip(manifest["network_id"], manifest["dataset"]))
        return {d: sorted(manifest.loc[manifest["dataset"] == d, "network_id"]) for d in mine}

    def restart(self, rng) -> None:
        """Shuffle each dataset's networks with the numpy Generator `rng` and start the cycle again."""
        self._queues = {d: list(rng.permutation(ids)) for d, ids in self.order.items()}
        self._cursor = {d: 0 for d in self.order}
        self._dataset_cursor = 0

    def next_network(self) -> ZooNetwork:
        """The next network of the cycle: the next dataset in turn, its next network in the shuffled order."""
        names = list(self.order)
        name = names[self._dataset_cursor % len(names)]
        self._dataset_cursor += 1
        queue = self._queues[name]
        nid = queue[self._cursor[name] % len(queue)]
        self._cursor[name] += 1
        return self.network(str(nid))

    def dataset(self, name: str):
        if name not in self.datasets:
            self.datasets[name] = self.zoo.dataset(name)
        return self.datasets[name]

    def network(self, nid: str) -> ZooNetwork:
        if nid not in self.networks:
            self.networks[nid] = self._load(nid)
        return self.networks[nid]

    def _load(self, nid: str) -> ZooNetwork:
        dataset_name = self._dataset_of[nid]
        model, _ = self.zoo.load(nid)
        data = self.dataset(dataset_name)
        spec = model.spec
        if spec.in_features != data.n_features or spec.n_classes != data.n_classes:
            raise DataError(
                f"network {nid} expects {spec.in_features} input features and {spec.n_classes} classes, "
                f"but dataset {dataset_name!r} has {data.n_features} features and {data.n_classes} classes"
            )
        model.eval()
        probe = probe_rows(data.X_train, self.cfg.episode.probe_rows, zlib.crc32(nid.encode()))
        acc, f1 = metrics.accuracy_f1(model, data.X_val, data.y_val)
        costs = measure_costs(model, data, self.needs, self.cfg.episode)
        return ZooNetwork(nid, dataset_name, model, probe, acc, f1, metrics.count_params(model), costs)
