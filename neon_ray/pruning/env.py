"""The pruning environment (method.md §4): one episode shrinks one zoo network layer by layer.

    env = PruningEnv({"zoo": "runs/zoo", "networks": "train", "loops": 4, "tolerance": [1, 50]})
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)

Episode. A network with H hidden layers gets `loops * H` steps. Step t acts on the current
hidden layer with the action's keep-rate (or merges the layer away, see below), fine-tunes
the changed layers (skipped for keep-rate 1.0), measures val accuracy (the reward split) and
moves on to the next layer; after the last hidden layer it wraps to layer 0 and the loop
index grows. With `loops=1` every hidden layer, the last one included, is visited once, and
H = 1 works.

Remove-layer action (`remove_layer_action=True`, the last action index). The layer is merged
with the next Linear (compress.remove_layer), so the network gets shallower. The step budget
stays `loops * H` of the ORIGINAL depth, and the cycle carries on at the same index, which now
holds the layer that followed the removed one (wrapping to 0 past the end). On a network with
one hidden layer left the action cannot apply: it acts as keep-rate 1.0 (reward 0, nothing
changes) and `info["action_valid"]` is False.

Workers. Datasets are spread over RLlib's remote env runners (worker_index 1..num_workers):
sorted dataset k goes to worker (k mod num_workers) + 1; with more workers than datasets a
worker takes dataset (worker_index - 1) mod n. The local worker (index 0) or num_workers = 0
takes every dataset. A worker with several datasets cycles through them, one episode each, and
through each dataset's networks in a seeded shuffled order. Datasets and networks are loaded
lazily on first use and cached in the instance, so an env that never resets loads nothing.

Tolerance. A number fixes a (in pp); a pair [lo, hi] draws a per episode, log-uniformly by
default (the paper's tolerances 1, 5, 50 span orders of magnitude, so each decade gets equal
weight) or uniformly with tolerance_sampling="uniform".
"""
from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from neon_ray.nets import metrics
from neon_ray.pruning.structured import IMPORTANCE_METHODS, prune_layer, remove_layer
from neon_ray.errors import ConfigError, DataError, NeonRayError
from neon_ray.pruning.observation import CLIP, OBS_SIZE, EpisodeContext, Progress, observe, probe_rows
from neon_ray.pruning.finetune import MAX_SEED, FinetuneConfig, finetune
from neon_ray.pruning.rewards import StepOutcome, get_reward
from neon_ray.nets.spec import MLP

DEFAULT_KEEP_RATES = (1.0, 0.9, 0.8, 0.7, 0.6)
ROLE_FILTERS = ("train", "test", "all")
# A tolerance is an accuracy drop in percentage points: 0 to 100.
MAX_TOLERANCE = 100.0


@dataclass(frozen=True)
class EnvConfig:
    """Everything a `PruningEnv` is built from (the keys of its `env_config` dict)."""

    zoo: Any
    """Zoo directory (read with neon_ray.zoo.build.open_zoo), or an already opened Zoo."""
    datasets: tuple[str, ...] | None = None
    """Datasets to draw networks from; None: every dataset of the zoo."""
    networks: str | tuple[str, ...] = "train"
    """Role filter 'train' | 'test' | 'all', or an explicit list of network IDs."""
    keep_rates: tuple[float, ...] = DEFAULT_KEEP_RATES
    """Keep-rate of each action (action i keeps ceil(keep_rates[i] * width) neurons)."""
    remove_layer_action: bool = False
    """Add one last action that merges the current hidden layer away."""
    loops: int = 4
    """Passes over the hidden layers; an episode has loops * (original depth) steps."""
    tolerance: float | tuple[float, float] = 1.0
    """Allowed accuracy reduction a in pp, or [lo, hi] to draw one per episode."""
    tolerance_sampling: str = "log-uniform"
    """How a [lo, hi] tolerance is drawn: 'log-uniform' (needs lo > 0) or 'uniform'."""
    reward: str = "neon"
    """Reward name (see neon_ray.pruning.rewards)."""
    reward_params: dict = field(default_factory=dict)
    """Keyword parameters of the reward (e.g. {"scale": 64000})."""
    finetune: dict = field(default_factory=dict)
    """FinetuneConfig fields (scope, max_epochs, batch_size, lr, patience, max_train_rows, ...)."""
    importance: str = "l2"
    """Neuron importance for pruning: 'l2', 'l1' or 'activation'."""
    reinit: bool = False
    """Original NEON behaviour: restart the two Linears around a pruned layer from random weights."""
    probe_rows: int = 512
    """Training rows (fixed per network) for activation statistics and activation importance."""
    seed: int = 0
    """Seed of network order, tolerance draws and fine-tuning."""
    worker_index: int = 0
    """RLlib worker index (0 local, 1..num_workers remote); taken from an EnvContext when given."""
    num_workers: int = 0
    """Remote RLlib workers sharing the datasets; 0: this env takes all of them."""
    vector_index: int = 0
    """Index of the env inside its worker (from an EnvContext); mixed into the seed."""
    latency_batch: int = 1
    """Rows per forward pass when a reward needs latency."""
    latency_repeats: int = 10
    """Timed forward passes per latency measurement."""
    memory_batch: int = 1024
    """Rows per forward pass when a reward needs peak memory."""
    info_timings: bool = True
    """Put wall-clock seconds per step piece in info["seconds"] (not reproducible: off for determinism checks)."""

    def __post_init__(self) -> None:
        if isinstance(self.networks, str) and self.networks not in ROLE_FILTERS:
            raise ConfigError(f"env_config networks must be one of {ROLE_FILTERS} or a list of network IDs, got {self.networks!r}")
        if not self.keep_rates or any(isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= 1
                                      for r in self.keep_rates):
            raise ConfigError(f"env_config keep_rates must be a non-empty list of numbers in (0, 1], got {list(self.keep_rates)}")
        _check_int("loops", self.loops, 1)
        if self.importance not in IMPORTANCE_METHODS:
            raise ConfigError(f"env_config importance must be one of {IMPORTANCE_METHODS}, got {self.importance!r}")
        _check_int("probe_rows", self.probe_rows, 2)
        _check_int("seed", self.seed, 0, MAX_SEED)
        for name in ("worker_index", "num_workers", "vector_index"):
            _check_int(name, getattr(self, name), 0)
        for name in ("latency_batch", "latency_repeats", "memory_batch"):
            _check_int(name, getattr(self, name), 1)
        self.tolerance_range()  # validates

    def tolerance_range(self) -> tuple[float, float]:
        """(lo, hi) in pp; lo == hi for a fixed tolerance."""
        tol = self.tolerance
        if isinstance(tol, (int, float)):
            lo = hi = tol
        elif isinstance(tol, (tuple, list)) and len(tol) == 2:
            lo, hi = tol
        else:
            lo = hi = None
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (lo, hi)) \
                or not 0 <= lo <= hi <= MAX_TOLERANCE:
            raise ConfigError(f"env_config tolerance must be a number >= 0 or a pair [lo, hi] with 0 <= lo <= hi, "
                              f"finite and at most {MAX_TOLERANCE:g} (accuracy pp), got {tol!r}")
        if self.tolerance_sampling not in ("log-uniform", "uniform"):
            raise ConfigError(f"env_config tolerance_sampling must be 'log-uniform' or 'uniform', got {self.tolerance_sampling!r}")
        if lo < hi and self.tolerance_sampling == "log-uniform" and lo == 0:
            raise ConfigError(f"env_config tolerance {list(tol)}: log-uniform sampling needs lo > 0 (or use tolerance_sampling='uniform')")
        return float(lo), float(hi)

    @classmethod
    def from_env_config(cls, env_config: dict | None) -> "EnvConfig":
        """Parse a plain dict or an RLlib EnvContext (a dict with .worker_index / .num_workers)."""
        d = dict(env_config or {})
        for attr in ("worker_index", "num_workers", "vector_index"):
            if hasattr(env_config, attr) and attr not in d:
                d[attr] = int(getattr(env_config, attr))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"env_config: unknown key(s) {unknown}, accepted: {sorted(known)}")
        if "zoo" not in d:
            raise ConfigError("env_config needs 'zoo': the path of a zoo directory")
        for key in ("keep_rates", "datasets"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        if isinstance(d.get("networks"), (list, tuple)):
            d["networks"] = tuple(d["networks"])
        if isinstance(d.get("tolerance"), list):
            d["tolerance"] = tuple(d["tolerance"])
        return cls(**d)


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ConfigError(f"env_config {name} must be an integer {bound}, got {value!r}")


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


@dataclass
class _Network:
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


@dataclass
class _Episode:
    """The state of the running episode."""

    net: _Network
    """The network being pruned."""
    model: MLP
    """The network as pruned so far."""
    tolerance: float
    """This episode's a, in pp."""
    seed: int
    """Base seed of this episode's fine-tuning (plus the step number)."""
    total_steps: int
    """loops * original depth."""
    layer: int = 0
    """Hidden layer the next step acts on."""
    loop: int = 0
    """Wraps from the last hidden layer to the first so far."""
    step: int = 0
    """Steps taken."""
    acc: float = 0.0
    """Current val accuracy."""
    f1: float = 0.0
    """Current val macro-F1."""
    params: int = 0
    """Current parameter count."""
    costs: dict = field(default_factory=dict)
    """Current optional measurements (as _Network.costs)."""
    orig_widths: list = field(default_factory=list)
    """Original width of each current hidden layer (entries leave with removed layers)."""
    actions: list = field(default_factory=list)
    """Actions taken so far."""


class PruningEnv(gym.Env):
    """NEON's pruning environment on a zoo; see the module docstring and `EnvConfig`."""

    metadata = {"render_modes": []}

    def __init__(self, env_config: dict | None = None):
        super().__init__()
        self.config = EnvConfig.from_env_config(env_config)
        self._zoo = self._open_zoo(self.config.zoo)
        self._reward = get_reward(self.config.reward, **self.config.reward_params)
        self._ft_cfg = FinetuneConfig.from_dict(self.config.finetune)
        self._tol_range = self.config.tolerance_range()
        self._order = self._network_order()
        self.observation_space = gym.spaces.Box(-CLIP, CLIP, shape=(OBS_SIZE,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(self.config.keep_rates) + int(self.config.remove_layer_action))
        self._datasets: dict = {}
        self._networks: dict[str, _Network] = {}
        self._episode: _Episode | None = None
        self._reseed(self.config.seed)

    # ----------------------------------------------------------------------------------------
    # Zoo, assignment, caches

    @staticmethod
    def _open_zoo(zoo):
        if isinstance(zoo, (str, Path)):
            from neon_ray.zoo.build import open_zoo

            return open_zoo(zoo)
        return zoo

    def _network_order(self) -> dict[str, list[str]]:
        """Network IDs of this worker, per assigned dataset (before shuffling)."""
        manifest = self._zoo.manifest()
        if len(manifest) == 0:
            raise ConfigError(f"zoo {getattr(self._zoo, 'root', self.config.zoo)} has no networks; build some with `neon-ray zoo build`")
        known = sorted(set(manifest["dataset"]))
        if self.config.datasets is not None:
            missing = [d for d in self.config.datasets if d not in known]
            if missing:
                raise ConfigError(f"env_config datasets {missing} are not in the zoo, which has {known}")
            manifest = manifest[manifest["dataset"].isin(self.config.datasets)]
        if isinstance(self.config.networks, str):
            if self.config.networks != "all":
                manifest = manifest[manifest["role"] == self.config.networks]
        else:
            ids = set(manifest["network_id"])
            unknown = [n for n in self.config.networks if n not in ids]
            if unknown:
                raise ConfigError(f"env_config networks: unknown network ID(s) {unknown[:5]} (not in the zoo or not in the chosen datasets)")
            manifest = manifest[manifest["network_id"].isin(self.config.networks)]
        if len(manifest) == 0:
            raise ConfigError(f"env_config selects no network (datasets={self.config.datasets}, networks={self.config.networks!r})")
        costs = dataset_costs(manifest, self._ft_cfg.max_train_rows) if {"flops", "depth"} <= set(manifest) else None
        mine = assign_datasets(sorted(set(manifest["dataset"])), self.config.worker_index, self.config.num_workers, costs)
        self._dataset_of = dict(zip(manifest["network_id"], manifest["dataset"]))
        return {d: sorted(manifest.loc[manifest["dataset"] == d, "network_id"]) for d in mine}

    def _reseed(self, seed: int) -> None:
        """Seed every random choice of the env and restart the network cycle."""
        self._rng = np.random.default_rng([int(seed), self.config.worker_index, self.config.vector_index])
        self._queues = {d: list(self._rng.permutation(ids)) for d, ids in self._order.items()}
        self._cursor = {d: 0 for d in self._order}
        self._dataset_cursor = 0

    def _next_network_id(self) -> str:
        names = list(self._order)
        name = names[self._dataset_cursor % len(names)]
        self._dataset_cursor += 1
        queue = self._queues[name]
        nid = queue[self._cursor[name] % len(queue)]
        self._cursor[name] += 1
        return str(nid)

    def _dataset(self, name: str):
        if name not in self._datasets:
            self._datasets[name] = self._zoo.dataset(name)
        return self._datasets[name]

    def _network(self, nid: str) -> _Network:
        if nid not in self._networks:
            self._networks[nid] = self._load_network(nid)
        return self._networks[nid]

    def _load_network(self, nid: str) -> _Network:
        dataset_name = self._dataset_of[nid]
        model, _ = self._zoo.load(nid)
        data = self._dataset(dataset_name)
        spec = model.spec
        if spec.in_features != data.n_features or spec.n_classes != data.n_classes:
            raise DataError(
                f"network {nid} expects {spec.in_features} input features and {spec.n_classes} classes, "
                f"but dataset {dataset_name!r} has {data.n_features} features and {data.n_classes} classes"
            )
        model.eval()
        probe = probe_rows(data.X_train, self.config.probe_rows, zlib.crc32(nid.encode()))
        acc, f1 = metrics.accuracy_f1(model, data.X_val, data.y_val)
        return _Network(nid, dataset_name, model, probe, acc, f1, metrics.count_params(model), self._costs(model, data))

    def _costs(self, model: MLP, data) -> dict:
        """The optional measurements the reward needs (FLOPs, latency, memory)."""
        needs, costs = self._reward.needs, {}
        if "flops" in needs:
            costs["flops"] = metrics.count_flops(model)
        if "latency" in needs:
            costs["latency"] = metrics.latency_ms(model, data.n_features, self.config.latency_batch, self.config.latency_repeats)
        if "memory" in needs:
            costs["memory"] = metrics.peak_memory_bytes(model, data.n_features, self.config.memory_batch)
        return costs

    # ----------------------------------------------------------------------------------------
    # Gymnasium API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._reseed(seed)
        net = self._network(self._next_network_id())
        lo, hi = self._tol_range
        if lo == hi:
            tolerance = lo
        elif self.config.tolerance_sampling == "uniform":
            tolerance = float(self._rng.uniform(lo, hi))
        else:
            tolerance = float(math.exp(self._rng.uniform(math.log(lo), math.log(hi))))
        depth = net.model.spec.depth
        self._episode = _Episode(
            net=net, model=net.model, tolerance=tolerance, seed=int(self._rng.integers(2**31 - 1)),
            total_steps=self.config.loops * depth, acc=net.acc, f1=net.f1, params=net.params,
            costs=dict(net.costs), orig_widths=list(net.model.spec.hidden),
        )
        t0 = time.perf_counter()
        obs = self._observe()
        info = {**self._summary(), "tolerance": tolerance}
        if self.config.info_timings:
            info["seconds"] = {"observe": time.perf_counter() - t0}
        return obs, info

    def step(self, action):
        ep = self._require_episode()
        action = self._check_action(action)
        if ep.step >= ep.total_steps:
            raise NeonRayError(f"episode of {ep.net.network_id} is over ({ep.total_steps} steps); call reset()")
        seconds = {}
        layer, before = ep.layer, self._snapshot()
        remove = self.config.remove_layer_action and action == len(self.config.keep_rates)
        valid = not (remove and ep.model.spec.depth == 1)
        keep_rate = 1.0 if remove or not valid else float(self.config.keep_rates[action])

        t0 = time.perf_counter()
        model = self._compress(ep, layer, remove and valid, keep_rate)
        seconds["compress"] = time.perf_counter() - t0
        changed = model is not ep.model
        epochs = 0
        if changed:
            epochs, seconds["finetune"], seconds["eval"] = self._finetune_and_measure(ep, model, layer, remove)
        else:
            seconds["finetune"] = seconds["eval"] = 0.0
        ep.actions.append(int(action))
        ep.step += 1
        # a keep-rate whose ceiling keeps every neuron changed nothing: it is paid as a no-op
        outcome = self._outcome(ep, before, keep_rate if changed else 1.0, remove and valid)
        reward = self._reward(outcome)
        self._advance(ep, removed=remove and valid)

        t0 = time.perf_counter()
        obs = self._observe()
        seconds["observe"] = time.perf_counter() - t0
        terminated = ep.step >= ep.total_steps
        info = {
            **self._summary(), "step": ep.step, "layer": layer, "keep_rate": keep_rate,
            "removed_layer": bool(remove and valid), "action_valid": valid, "changed": changed, "finetune_epochs": epochs,
            "tolerance": ep.tolerance, "loop": ep.loop,
        }
        if self.config.info_timings:
            info["seconds"] = seconds
        return obs, float(reward), terminated, False, info

    # ----------------------------------------------------------------------------------------
    # Step pieces

    def _require_episode(self) -> _Episode:
        if self._episode is None:
            raise NeonRayError("PruningEnv: call reset() before step()")
        return self._episode

    def _check_action(self, action) -> int:
        n = self.action_space.n
        try:
            value = int(action)
        except (TypeError, ValueError):
            raise ConfigError(f"action {action!r} is not an integer; expected 0..{n - 1}") from None
        if value != action or not 0 <= value < n:
            raise ConfigError(f"action {action!r} out of range: expected an integer in 0..{n - 1} (keep-rates {list(self.config.keep_rates)}"
                              f"{', then remove-layer' if self.config.remove_layer_action else ''})")
        return value

    def _compress(self, ep: _Episode, layer: int, remove: bool, keep_rate: float) -> MLP:
        if remove:
            return remove_layer(ep.model, layer)
        return prune_layer(ep.model, layer, keep_rate, importance=self.config.importance, probe=ep.net.probe,
                           reinit=self.config.reinit, seed=ep.seed + ep.step)

    def _finetune_and_measure(self, ep: _Episode, model: MLP, layer: int, removed: bool) -> tuple[int, float, float]:
        data = self._dataset(ep.net.dataset)
        # after a removal the merged Linear is blocks[layer] (or the head when the last layer went)
        ft_layer = min(layer, model.spec.depth - 1) if removed else layer
        t0 = time.perf_counter()
        result = finetune(model, ft_layer, data, self._ft_cfg, seed=ep.seed + ep.step)
        finetune_seconds = time.perf_counter() - t0  # includes caching the frozen prefix
        t0 = time.perf_counter()
        ep.model = model
        ep.acc, ep.f1 = metrics.accuracy_f1(model, data.X_val, data.y_val)
        ep.params = metrics.count_params(model)
        ep.costs = self._costs(model, data)
        return result.epochs, finetune_seconds, time.perf_counter() - t0

    def _snapshot(self) -> dict:
        ep = self._episode
        return {"acc": ep.acc, "f1": ep.f1, "params": ep.params, **ep.costs}

    def _outcome(self, ep: _Episode, before: dict, keep_rate: float, removed: bool) -> StepOutcome:
        net, extra = ep.net, {}
        for key in ("flops", "latency", "memory"):
            if key in net.costs:
                extra.update({f"{key}_orig": net.costs[key], f"{key}_before": before[key], f"{key}_after": ep.costs[key]})
        return StepOutcome(
            keep_rate=keep_rate, acc_orig=net.acc, acc_before=before["acc"], acc_now=ep.acc,
            params_orig=net.params, params_before=before["params"], params_after=ep.params,
            tolerance=ep.tolerance, removed_layer=removed,
            f1_orig=net.f1, f1_before=before["f1"], f1_now=ep.f1, **extra,
        )

    @staticmethod
    def _advance(ep: _Episode, removed: bool) -> None:
        """Move to the next hidden layer; after a removal the same index holds the next layer."""
        if removed:
            del ep.orig_widths[ep.layer]
        else:
            ep.layer += 1
        if ep.layer >= ep.model.spec.depth:
            ep.layer = 0
            ep.loop += 1

    def _observe(self) -> np.ndarray:
        ep = self._episode
        data = self._dataset(ep.net.dataset)
        desc = data.descriptors()
        ctx = EpisodeContext(
            probe=ep.net.probe, params_orig=ep.net.params, depth_orig=ep.net.model.spec.depth,
            rows=desc["rows"], features=desc["features"], classes=desc["classes"],
            tolerance=ep.tolerance, loops=self.config.loops, total_steps=ep.total_steps,
        )
        progress = Progress(step=ep.step, loop=ep.loop, acc_change=ep.acc - ep.net.acc, width_orig=ep.orig_widths[ep.layer])
        return observe(ep.model, ep.layer, ctx, progress)

    def _summary(self) -> dict:
        ep = self._episode
        return {
            "network_id": ep.net.network_id, "dataset": ep.net.dataset,
            "val_acc": ep.acc, "val_acc_orig": ep.net.acc, "params": ep.params, "params_orig": ep.net.params,
            "arch": ep.model.spec.describe(), "arch_orig": ep.net.model.spec.describe(), "actions": list(ep.actions),
        }

    # ----------------------------------------------------------------------------------------
    # Reporting

    def current_model(self) -> MLP:
        """The network as pruned so far in this episode (the original right after reset)."""
        return self._require_episode().model

    def test_accuracy(self, original: bool = False) -> float:
        """Test-split accuracy of the current network (or the original one); for reporting only."""
        ep = self._require_episode()
        data = self._dataset(ep.net.dataset)
        model = ep.net.model if original else ep.model
        return metrics.accuracy_f1(model, data.X_test, data.y_test)[0]
