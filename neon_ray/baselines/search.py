"""The uniform baseline a practitioner would run: the smallest uniform keep-rate within tolerance.

    pruner = UniformSearchPruner(tolerance=5.0, episode=EpisodeConfig(), steps=7)
    pruned = pruner.prune(model, dataset, network)        # pruned.actions: [rate] * depth

Per network, `bisect_keep_rate` looks for the smallest keep-rate r in (0, 1] whose uniform
pruning (every hidden layer kept at ceil(r * width), one loop, the episode's fine-tuning after
each layer: exactly the `uniform` baseline) leaves val accuracy within the tolerance of the
original's by the guard's confidence bound (`info["within_tolerance"]`, see episodes.py). Each probe is a fresh uniform episode on the original
network. Keeping nothing is taken as out of tolerance and keeping everything (r = 1, the
original) is within it by definition, so the search starts from (0, 1] and halves it `steps`
times: the rate returned is within 2**-steps of the boundary when accuracy falls monotonically
with r, and is always one whose network was measured within tolerance (or 1.0). Only val is
looked at; test stays for the report.

Rates whose ceilings give the same widths give the same network (same neurons, same seeded
fine-tuning), so each distinct set of widths is pruned and fine-tuned once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

from neon_ray.errors import ConfigError
from neon_ray.nets.checks import check_int
from neon_ray.pruning.episode_config import EpisodeConfig
from neon_ray.pruning.episodes import FixedChooser, Pruned, network_seed, prune_episode
from neon_ray.pruning.structured import kept_width
from neon_ray.results.schema import check_tolerance

DEFAULT_SEARCH_STEPS = 7
"""Bisection steps: the rate is found to within 2**-7 (< 0.008), at most 7 probes per network."""
MAX_SEARCH_STEPS = 30


def bisect_keep_rate(feasible: Callable[[float], bool], steps: int) -> float:
    """The smallest keep-rate in (0, 1] that `feasible` accepts, to within 2**-steps if it is monotone.

    Invariant: `hi` is feasible (1.0 by definition, else a tested rate) and `lo` is not (0.0 by
    definition, else a tested rate); each step tests the midpoint and keeps the half holding the
    boundary. Returns `hi`, so the answer was always found feasible.
    """
    check_int("uniform-search steps", steps, 1, MAX_SEARCH_STEPS)
    lo, hi = 0.0, 1.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        if feasible(mid):
            hi = mid
        else:
            lo = mid
    return hi


@dataclass(frozen=True)
class UniformSearchPruner:
    """Uniform structured pruning at the smallest keep-rate within `tolerance` on val, per network."""

    tolerance: float
    """Allowed val accuracy drop in pp."""
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)
    """Fine-tuning and importance of each probe (keep-rates, loops and tolerance are set here)."""
    steps: int = DEFAULT_SEARCH_STEPS
    """Bisection steps over the keep-rate."""
    seed: int = 0
    """Base seed of each probe's fine-tuning (mixed with the network ID; the same for every probe)."""
    method: str = "uniform-search"
    """Method name in the results."""

    def __post_init__(self) -> None:
        if check_tolerance(self.tolerance, "uniform-search --tolerance") is None:
            raise ConfigError("uniform-search needs a tolerance (pp) to search within")
        if not isinstance(self.episode, EpisodeConfig):
            raise ConfigError(f"UniformSearchPruner.episode must be an EpisodeConfig, got {type(self.episode).__name__}")
        check_int("uniform-search steps", self.steps, 1, MAX_SEARCH_STEPS)
        # each probe is the uniform baseline's episode: one loop, one action, no layer removal
        object.__setattr__(self, "episode", replace(self.episode, loops=1, remove_layer_action=False,
                                                    keep_rates=(1.0,), tolerance=float(self.tolerance)))

    @property
    def label(self) -> str:
        return f"a={self.tolerance:g} steps={self.steps}"

    @property
    def loops(self) -> int:
        return 1

    def row_config(self) -> dict:
        return {**self.episode.to_dict(), "search": "bisection over the uniform keep-rate", "search_steps": self.steps,
                "seed": self.seed}

    def prune(self, model, dataset, network: dict) -> Pruned:
        """Uniform pruning at the rate found; `info` adds `keep_rate`, `tested` ((rate, within) per bisection
        step) and `probes` (episodes actually run)."""
        start = time.perf_counter()
        nid = network["network_id"]
        seed = network_seed(self.seed, nid)
        probes: dict[tuple[int, ...], Pruned] = {}
        tested: list[tuple[float, bool]] = []

        def probe(rate: float) -> Pruned:
            widths = tuple(kept_width(w, rate) for w in model.spec.hidden)
            if widths not in probes:
                episode = replace(self.episode, keep_rates=(rate,))
                probes[widths] = prune_episode(model, dataset, nid, episode, FixedChooser(0)(nid, 1), seed)
            return probes[widths]

        def feasible(rate: float) -> bool:
            info = probe(rate).info
            tested.append((rate, info["within_tolerance"]))
            return tested[-1][1]

        rate = bisect_keep_rate(feasible, self.steps)
        chosen = probe(rate)
        info = {**chosen.info, "keep_rate": rate, "tested": tested, "probes": len(probes)}
        # the actions report the chosen rate (a cached probe of the same widths may have used another)
        return replace(chosen, actions=[rate] * len(chosen.actions), seconds=time.perf_counter() - start, info=info)
