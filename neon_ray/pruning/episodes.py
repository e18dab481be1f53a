"""One network, one pruner, one measured result: the path the agent and every baseline share.

    pruner = EpisodePruner("random", "loops=4", EpisodeConfig(loops=4), chooser=RandomChooser(0))
    result = evaluate_network(pruner, network, model, dataset, run_id="random__loops4")   # rows + pruned model

A *pruner* turns (original network, dataset) into a pruned network. `EpisodePruner` runs one
`PruningEnv` episode (an `EpisodeConfig`) restricted to that single network, with an action
*chooser* (obs -> action index): the trained policy, uniformly random actions, or one fixed
action. The magnitude baseline (baselines/pruners.py) is another pruner. Everything around the
pruning is shared: the original and the pruned network are measured with `metrics.measure` on
the zoo's exact splits (test accuracy is what gets reported; val is the reward split), and the
row is built by `results.schema.result_row`, so every method is counted the same way and
matched by network ID. Running pruners over zoo networks (in process or on Ray) is
pruning/batch.py.

The guard (`guard=True`, on by default for the agent, `--guard` for every baseline): the network
returned is the smallest one visited in the episode, by parameter count, that is within the
tolerance on val, rather than the last one. Within means that the upper confidence bound of its
val accuracy drop against the original (`tolerance.drop_bound_pp`: the measured drop plus
`EpisodeConfig.confidence_z` standard errors of the paired per-row change) is at most a; the
env computes it (`info["within_tolerance"]`), and z = 0 is the plain D >= -a. Step 0 is the unpruned network, which is always within tolerance, so a guarded method
never returns a network that broke the tolerance on val. Ties go to the EARLIER step: a later
network of the same size is the same network after a no-op step (keep-rate 1.0, or a ceiling
that kept every neuron), so the earlier step is where it was first reached. The rows say
whether the guard was on and which step's network came back (`returned_step`; unguarded: the
last step); `actions` always lists the whole episode, of which the first `returned_step` made
the returned network. The guard is `SmallestWithinTolerance`, shared by every pruner.

Deep Compression after pruning (`RunOptions.compress`): the pruned network also goes through
`deepcomp.compress_model`, and a SECOND row is written with method `<method>+dc`, where
`bytes_after` is the real compressed file's size and `params_after` the non-zero parameters.
Two rows rather than one replaced row keep the structured result and the gain of Deep
Compression on top of it both visible, under the same network ID.
"""
from __future__ import annotations

import copy
import tempfile
import time
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import pandas as pd

from neon_ray.deepcomp.pipeline import DeepCompConfig, compress_model
from neon_ray.errors import ConfigError
from neon_ray.nets import metrics
from neon_ray.nets.metrics import measure
from neon_ray.pruning.env import PruningEnv
from neon_ray.pruning.episode_config import EnvConfig, EpisodeConfig
from neon_ray.pruning.tolerance import drop_bound_pp, paired_changes
from neon_ray.results.schema import result_row

Chooser = Callable[[np.ndarray], int]
"""Picks an action index from an observation."""

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
    guard: bool = False
    """The guard chose `model` (see the module docstring)."""
    returned_step: int | None = None
    """Steps that made `model` (0: the unpruned network; unguarded: every step taken)."""
    info: dict = field(default_factory=dict)
    """Method-specific extras (return, fine-tuning epochs, ...)."""


def confident_within(original, model, dataset, tolerance: float, z: float) -> bool:
    """`model` is within `tolerance` of `original` on val by the guard's bound (for pruners without an env)."""
    truth = dataset.y_val.numpy()
    before = metrics.predict(original, dataset.X_val).numpy() == truth
    after = metrics.predict(model, dataset.X_val).numpy() == truth
    return drop_bound_pp(*paired_changes(before, after), len(truth), z) <= tolerance


@dataclass(frozen=True)
class Visited:
    """One network an episode visited."""

    step: int
    """Steps taken to reach it (0: the unpruned network)."""
    model: object
    """The network."""
    params: int
    """Its parameters (non-zero ones for weight pruning)."""
    val_acc: float
    """Its val accuracy."""
    within: bool = True
    """Within the tolerance by the guard's bound (the unpruned network always is)."""


class SmallestWithinTolerance:
    """The guard: keeps the smallest visited network that is within the tolerance (module docstring).

    Built with the unpruned network (step 0, within tolerance by definition); `offer` each
    later network. Networks are kept by reference: every pruning step builds a new network and
    leaves the previous one untouched (structured.py), so no copy is needed.
    """

    def __init__(self, model, params: int, val_acc: float):
        self.best = Visited(0, model, int(params), float(val_acc))

    def offer(self, step: int, model, params: int, val_acc: float, within: bool) -> bool:
        """Keep this network if it is `within` the tolerance and strictly smaller (ties: the earlier step stays)."""
        if within and params < self.best.params:
            self.best = Visited(step, model, int(params), float(val_acc))
            return True
        return False


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


def prune_episode(model, dataset, network_id: str, episode: EpisodeConfig, choose: Chooser, seed: int = 0,
                  guard: bool = False) -> Pruned:
    """Run one PruningEnv episode on `model` alone and return the pruned network.

    `episode` says what the episode does (keep-rates, loops, tolerance, reward, fine-tuning, ...);
    `seed` seeds the episode (fine-tuning row order, Dropout masks). With `guard`, the network
    returned is the smallest visited one within the episode's tolerance on val (module docstring)
    instead of the last. `model` is not changed. `info` holds the return, fine-tuning epochs,
    tolerance, the returned network's val accuracy and the original's, and `trace`: (params,
    val accuracy) after every step.
    """
    start = time.perf_counter()
    zoo = SingleNetworkZoo(network_id, dataset.name, model, dataset)
    # step timings are not reproducible and rows do not report them
    env = PruningEnv(EnvConfig(zoo=zoo, networks=(network_id,), episode=replace(episode, info_timings=False)))
    obs, info = env.reset(seed=seed)
    kept = SmallestWithinTolerance(env.current_model(), info["params_orig"], info["val_acc_orig"])
    actions, trace, total_reward, epochs, done = [], [], 0.0, 0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(choose(obs))
        actions.append(REMOVE if info["removed_layer"] else float(info["keep_rate"]))
        trace.append((int(info["params"]), float(info["val_acc"])))
        kept.offer(len(actions), env.current_model(), info["params"], info["val_acc"], info["within_tolerance"])
        total_reward += reward
        epochs += info["finetune_epochs"]
        done = terminated or truncated
    returned = kept.best if guard else Visited(len(actions), env.current_model(), info["params"], info["val_acc"],
                                               info["within_tolerance"])
    extras = {"return": total_reward, "finetune_epochs": epochs, "tolerance": info["tolerance"], "trace": trace,
              "val_acc": returned.val_acc, "val_acc_orig": info["val_acc_orig"], "within_tolerance": returned.within}
    return Pruned(returned.model, actions, time.perf_counter() - start, guard=guard, returned_step=returned.step,
                  info=extras)


@dataclass(frozen=True)
class EpisodePruner:
    """A method that prunes with one PruningEnv episode per network: the agent, random, uniform."""

    method: str
    """Method name written in the results (e.g. 'neon-a2c', 'random', 'uniform')."""
    label: str
    """Short configuration label written in the results (e.g. 'a=5 loops=4')."""
    episode: EpisodeConfig
    """What each network's episode does; the zoo and the network are set per network."""
    chooser: ChooserFactory
    """Builds the action chooser of each network inside its task."""
    tolerance: float | None = None
    """Tolerance (pp) reported with the rows; None for methods that ignore it."""
    seed: int = 0
    """Base seed of every episode (mixed with the network ID)."""
    config: dict = field(default_factory=dict)
    """Further settings to record in the rows' config (e.g. the agent's run directory)."""
    guard: bool = False
    """Return the smallest visited network within the episode's tolerance instead of the last."""

    def __post_init__(self) -> None:
        if not isinstance(self.guard, bool):
            raise ConfigError(f"EpisodePruner.guard must be True or False, got {self.guard!r}")
        if not isinstance(self.episode, EpisodeConfig):
            raise ConfigError(f"EpisodePruner.episode must be an EpisodeConfig, got {type(self.episode).__name__}")

    @property
    def loops(self) -> int:
        return self.episode.loops

    def row_config(self) -> dict:
        return {**self.episode.to_dict(), **self.config, "seed": self.seed}

    def prune(self, model, dataset, network: dict) -> Pruned:
        nid = network["network_id"]
        choose = self.chooser(nid, self.episode.n_actions)
        return prune_episode(model, dataset, nid, self.episode, choose, network_seed(self.seed, nid), guard=self.guard)


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
    before = measure(model, dataset, timing=options.timing)
    pruned = pruner.prune(model, dataset, network)
    after = measure(pruned.model, dataset, timing=options.timing, sparse=pruned.sparse)
    common = dict(run_id=run_id, network=network, before=before, tolerance=pruner.tolerance, loops=pruner.loops,
                  actions=pruned.actions, guard=pruned.guard, returned_step=pruned.returned_step)
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
    cfg = options.deepcomp or DeepCompConfig()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "network.nrdc"
        decoded, _stages = compress_model(model, dataset, cfg, path)
        blob = path.read_bytes()
    seconds = time.perf_counter() - start
    after = replace(measure(decoded, dataset, timing=options.timing, sparse=True), bytes=len(blob))
    return decoded, after, blob, cfg.to_dict(), seconds


def format_rate(value: float) -> str:
    """A rate for labels without float noise (0.5 -> '0.5', 0.30000000000000004 -> '0.3')."""
    return f"{value:.6g}"
