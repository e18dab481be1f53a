"""The baselines of method.md §11, on the same networks, splits and counting as the agent.

    run_baseline("runs/zoo", "uniform", rate=0.5, role="all", results="runs/results")

- `random`: the agent's episode (same env, keep-rates, loops, fine-tuning) with uniformly random
  keep-rates, seeded per network.
- `uniform`: one keep-rate `rate` for every hidden layer: one loop, the same action at every
  step, the same fine-tuning after each step.
- `magnitude`: global magnitude pruning of individual weights (Han et al.): the fraction `rate`
  of all Linear weights (head included, biases and BatchNorm excluded) with the smallest |w|
  across the whole network is set to zero, except that no layer loses more than
  `max_layer_rate` (0.95) of its own weights, since a pure global threshold can empty a whole
  layer; then the network is fine-tuned with that mask fixed (deepcomp's masked retraining,
  with the env's fine-tuning budget). Parameters are counted as non-zeros and bytes as a
  sparse (CSR) layout would store them.

- `uniform-search`: what a practitioner would run (method.md §11): per network, the smallest
  uniform keep-rate whose fine-tuned val accuracy stays within the tolerance, found by
  bisection (baselines/search.py).

The guard (`guard=True`, CLI `--guard`; pruning/episodes.py) is available to random, uniform
and magnitude alike: the network returned is the smallest visited one within `tolerance` on
val, so a guard needs a tolerance. Guarded runs carry ' guard a=<tolerance>' in their label
and so their own run ID. For magnitude the visited networks are the original (step 0) and
the pruned, fine-tuned one (step 1).

`rate` means the fraction KEPT per layer for `uniform` (a keep-rate, like the agent's actions)
and the fraction REMOVED for `magnitude` (as in the pruning literature); labels spell it out
('keep=0.5', 'remove=0.8') so results never mix the two up.

Each call writes one row per network under the run ID `{method}__{label}__s{seed}` (unless
given), so running the same baseline again replaces its own rows instead of adding copies.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field, replace

import pandas as pd
import torch

from neon_ray.baselines.search import DEFAULT_SEARCH_STEPS, UniformSearchPruner
from neon_ray.deepcomp.prune import apply_masks, prunable_weights, retrain_masked
from neon_ray.errors import ConfigError
from neon_ray.nets.metrics import accuracy_f1, count_flops, count_nonzero, count_params
from neon_ray.pruning.batch import run_networks, slug, zoo_networks
from neon_ray.pruning.episodes import (
    EpisodePruner, FixedChooser, Pruned, RandomChooser, RunOptions, SmallestWithinTolerance, confident_within, format_rate,
    network_seed,
)
from neon_ray.pruning.episode_config import EpisodeConfig
from neon_ray.pruning.finetune import FinetuneConfig
from neon_ray.pruning.tolerance import CONFIDENCE_Z, check_confidence_z
from neon_ray.results.schema import check_tolerance
from neon_ray.runtime.files import check_output_dir

METHODS = ("random", "uniform", "magnitude", "uniform-search")
DEFAULT_RATE = {"uniform": 0.5, "magnitude": 0.5}
RANDOM_LOOPS = 4
# Unguarded global thresholds empty whole layers: in a wide network the head's weights are the
# smallest (diabetes__s0__n002, 8-[bn]800relu-2, lost 100% of its head at rate 0.5 and then
# predicted one class whatever the fine-tuning did). Each layer keeps at least 5%.
DEFAULT_MAX_LAYER_RATE = 0.95
# PruningEnv needs a tolerance for its observation and reward; unguarded baselines ignore both
# (a guard needs the user's --tolerance, which then is the episode's).
_ENV_TOLERANCE = 1.0


def global_magnitude_masks(model, rate: float, max_layer_rate: float | None = DEFAULT_MAX_LAYER_RATE) -> dict:
    """Keep-masks (state_dict weight name -> bool tensor) removing exactly round(rate * n) Linear weights.

    The weights with the smallest |w| over ALL Linear layers go, so layers lose different
    fractions; with `max_layer_rate`, no layer loses more than that fraction of its own
    weights (only each layer's floor(max_layer_rate * size) smallest weights compete).
    Ties are broken by position (a stable sort), so the count is exact and the choice
    deterministic.
    """
    check_rates(rate, max_layer_rate)
    weights = prunable_weights(model)
    scores, positions = [], []  # the candidates: magnitude and (layer, flat index)
    for i, w in enumerate(weights.values()):
        mags = w.detach().abs().flatten()
        order = torch.sort(mags, stable=True).indices
        if max_layer_rate is not None:
            order = order[: int(max_layer_rate * mags.numel())]
        scores.append(mags[order])
        positions.append(torch.stack([torch.full_like(order, i), order], 1))
    scores, positions = torch.cat(scores), torch.cat(positions)
    n_remove = round(rate * sum(w.numel() for w in weights.values()))
    if n_remove > len(scores):
        raise ConfigError(f"cannot remove {n_remove} weights (rate {rate:g}) when each layer keeps at least "
                          f"{1 - max_layer_rate:.0%} of its weights; raise --max-layer-rate or lower the rate")
    # candidates are layer by layer, each layer's in (magnitude, position) order, so a stable
    # sort orders ties by layer, then position
    chosen = positions[torch.sort(scores, stable=True).indices[:n_remove]]
    masks = {}
    for i, (name, w) in enumerate(weights.items()):
        keep = torch.ones(w.numel(), dtype=torch.bool)
        keep[chosen[chosen[:, 0] == i, 1]] = False
        masks[name] = keep.reshape(w.shape)
    return masks


def check_rates(rate: float, max_layer_rate: float | None) -> None:
    """The magnitude baseline's rate in [0, 1) and per-layer cap in [rate, 1] (or None)."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise ConfigError(f"magnitude --rate is the fraction of weights removed, in [0, 1); got {rate!r}")
    if max_layer_rate is not None and (isinstance(max_layer_rate, bool) or not isinstance(max_layer_rate, (int, float))
                                       or not rate <= max_layer_rate <= 1.0):
        raise ConfigError(f"magnitude --max-layer-rate (most of one layer's weights that may go) must be in "
                          f"[rate, 1] = [{rate:g}, 1], got {max_layer_rate!r}")


@dataclass(frozen=True)
class MagnitudePruner:
    """Global magnitude pruning of individual weights, then masked fine-tuning."""

    rate: float
    """Fraction of all Linear weights removed."""
    max_layer_rate: float | None = DEFAULT_MAX_LAYER_RATE
    """Most any one layer may lose (None: a pure global threshold, which can empty a layer)."""
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    """The fine-tuning budget (epochs, batch, lr, patience, rows): the episode's, as for the agent."""
    seed: int = 0
    """Base seed of the fine-tuning (mixed with the network ID)."""
    tolerance: float | None = None
    """Tolerance (pp) reported with the rows."""
    method: str = "magnitude"
    """Method name in the results."""
    guard: bool = False
    """Return the original network when the pruned one falls out of `tolerance` on val (by the guard's bound)."""
    confidence_z: float = CONFIDENCE_Z
    """z of the guard's bound (EpisodeConfig.confidence_z)."""

    def __post_init__(self) -> None:
        check_rates(self.rate, self.max_layer_rate)
        check_guard(self.guard, self.tolerance, self.method)
        object.__setattr__(self, "confidence_z", check_confidence_z(self.confidence_z, "MagnitudePruner.confidence_z"))
        if not isinstance(self.finetune, FinetuneConfig):
            raise ConfigError(f"MagnitudePruner.finetune must be a FinetuneConfig, got {type(self.finetune).__name__}")

    @property
    def label(self) -> str:
        cap = "" if self.max_layer_rate == DEFAULT_MAX_LAYER_RATE else f" cap={self.max_layer_rate}"
        return f"remove={format_rate(self.rate)}{cap}{guard_label(self.guard, self.tolerance)}"

    @property
    def loops(self) -> None:
        return None

    def row_config(self) -> dict:
        return {"rate_removed": self.rate, "max_layer_rate": self.max_layer_rate, "finetune": asdict(self.finetune),
                "seed": self.seed, "scope": "global"}

    def prune(self, model, dataset, network: dict) -> Pruned:
        start = time.perf_counter()
        original, model = model, copy.deepcopy(model)
        masks = global_magnitude_masks(model, self.rate, self.max_layer_rate)
        apply_masks(model, masks)
        result = retrain_masked(model, masks, (dataset.X_train, dataset.y_train), (dataset.X_val, dataset.y_val),
                                self.finetune.train_config(count_flops(model)), network_seed(self.seed, network["network_id"]))
        info = {"finetune_epochs": result.epochs, "weights_removed": sum(int((~m).sum()) for m in masks.values())}
        model.eval()
        if self.guard:
            kept = SmallestWithinTolerance(original, count_params(original), _val_acc(original, dataset))
            within = confident_within(original, model, dataset, self.tolerance, self.confidence_z)
            if not kept.offer(1, model, count_nonzero(model), _val_acc(model, dataset), within):
                # the dense original comes back: its bytes are counted dense
                return Pruned(original, [], time.perf_counter() - start, guard=True, returned_step=0, info=info)
        return Pruned(model, [], time.perf_counter() - start, sparse=True, guard=self.guard, returned_step=1, info=info)


def _val_acc(model, dataset) -> float:
    return accuracy_f1(model, dataset.X_val, dataset.y_val)[0]


def check_guard(guard, tolerance: float | None, method: str) -> None:
    """A guard is True or False, and a guarded baseline has a tolerance to guard."""
    if not isinstance(guard, bool):
        raise ConfigError(f"{method} guard must be True or False, got {guard!r}")
    if guard and tolerance is None:
        raise ConfigError(f"{method} --guard keeps the smallest network within the tolerance: give --tolerance")


def guard_label(guard: bool, tolerance: float | None) -> str:
    """What a guard adds to a baseline's label (and so its run ID): '' or ' guard a=5'."""
    return f" guard a={tolerance:g}" if guard else ""


def make_pruner(method: str, rate: float | None = None, *, tolerance: float | None = None, loops: int | None = None,
                seed: int = 0, episode: EpisodeConfig | None = None, max_layer_rate: float | None = DEFAULT_MAX_LAYER_RATE,
                guard: bool = False, search_steps: int | None = None):
    """The pruner of a baseline. `episode` holds the settings shared with the agent (fine-tuning, keep-rates, ...;
    None: EpisodeConfig's defaults), which each baseline adapts; `max_layer_rate` is the magnitude baseline's cap;
    `guard` returns the smallest visited network within `tolerance`; `search_steps` are uniform-search's
    bisection steps."""
    episode = EpisodeConfig() if episode is None else episode
    if not isinstance(episode, EpisodeConfig):
        raise ConfigError(f"a baseline's episode must be an EpisodeConfig, got {type(episode).__name__}")
    if method not in METHODS:
        raise ConfigError(f"unknown baseline {method!r}; expected one of {', '.join(METHODS)}")
    tolerance = check_tolerance(tolerance, f"{method} --tolerance (recorded with the rows)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{method} --seed must be an integer >= 0, got {seed!r}")
    check_guard(guard, tolerance, method)
    if search_steps is not None and method != "uniform-search":
        raise ConfigError(f"--search-steps is uniform-search's number of bisection steps; {method} does not take it")
    if method == "uniform-search":
        return _search_pruner(rate, tolerance, loops, seed, episode, guard, search_steps)
    if method == "random":
        if rate is not None:
            raise ConfigError("the random baseline draws its keep-rates from the env's keep_rates; it takes no --rate")
        if loops is not None and (isinstance(loops, bool) or not isinstance(loops, int) or loops < 1):
            raise ConfigError(f"random --loops (passes over the hidden layers) must be an integer >= 1, got {loops!r}")
        loops = RANDOM_LOOPS if loops is None else loops
        episode = replace(episode, loops=loops, tolerance=tolerance if tolerance is not None else _ENV_TOLERANCE)
        return EpisodePruner("random", f"loops={loops}{guard_label(guard, tolerance)}", episode, RandomChooser(seed),
                             tolerance=tolerance, seed=seed, guard=guard)
    if loops not in (None, 1):
        raise ConfigError(f"{method} pruning takes no --loops (got {loops}): it prunes each layer once; change --rate instead")
    rate = DEFAULT_RATE[method] if rate is None else rate
    if method == "magnitude":
        return MagnitudePruner(rate, max_layer_rate, finetune=episode.finetune, seed=seed, tolerance=tolerance, guard=guard,
                               confidence_z=episode.confidence_z)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 < rate <= 1.0:
        raise ConfigError(f"uniform --rate is the keep-rate of every layer, in (0, 1]; got {rate!r}")
    episode = replace(episode, keep_rates=(float(rate),), loops=1, remove_layer_action=False,
                      tolerance=tolerance if tolerance is not None else _ENV_TOLERANCE)
    return EpisodePruner("uniform", f"keep={format_rate(rate)}{guard_label(guard, tolerance)}", episode, FixedChooser(0),
                         tolerance=tolerance, seed=seed, guard=guard)


def _search_pruner(rate, tolerance, loops, seed: int, episode: EpisodeConfig, guard: bool, steps: int | None):
    if rate is not None:
        raise ConfigError("uniform-search finds its keep-rate itself; it takes no --rate")
    if loops not in (None, 1):
        raise ConfigError(f"uniform-search takes no --loops (got {loops}): each probe prunes every layer once")
    if tolerance is None:
        raise ConfigError("uniform-search looks for the smallest keep-rate within a tolerance: give --tolerance")
    if guard:
        raise ConfigError("uniform-search returns a network within the tolerance on val by construction; "
                          "--guard does not apply to it")
    steps = DEFAULT_SEARCH_STEPS if steps is None else steps
    return UniformSearchPruner(tolerance, episode, steps=steps, seed=seed)


def baseline_run_id(pruner) -> str:
    """`{method}__{label}__s{seed}`: the same baseline run again maps to the same files."""
    return f"{pruner.method}__{slug(pruner.label)}__s{pruner.seed}"


def run_baseline(
    zoo,
    method: str,
    rate: float | None = None,
    datasets: list[str] | None = None,
    role: str = "all",
    results: str | None = None,
    *,
    tolerance: float | None = None,
    loops: int | None = None,
    seed: int = 0,
    episode: EpisodeConfig | None = None,
    max_layer_rate: float | None = DEFAULT_MAX_LAYER_RATE,
    guard: bool = False,
    search_steps: int | None = None,
    run_id: str | None = None,
    options: RunOptions = RunOptions(),
    address: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run a baseline on every selected network in parallel on Ray; write rows to `results` (if given) and return them.

    `datasets` None takes every dataset of the zoo; `role` is 'train', 'test' or 'all'.
    `tolerance` is recorded (for the share of networks within tolerance), and is what `guard` and
    uniform-search keep to on val. `episode` is the
    episode random and uniform adapt and play, and whose fine-tuning magnitude uses (see make_pruner).
    Settings and the `results` location are checked before any work.
    """
    if results is not None:
        check_output_dir(results, "results directory")
    pruner = make_pruner(method, rate, tolerance=tolerance, loops=loops, seed=seed, episode=episode,
                         max_layer_rate=max_layer_rate, guard=guard, search_steps=search_steps)
    networks = zoo_networks(zoo, datasets, role)
    return run_networks(zoo, pruner, networks, run_id=run_id or baseline_run_id(pruner), results=results,
                        options=options, address=address, progress=progress)
