"""Applying a trained agent to networks: one network in-process, or a zoo in parallel on Ray.

    pruned = prune_one(policy, model, dataset, trained_episode(cfg, tolerance=5))   # no Ray
    frame = apply_agent("runs/agent", tolerance=5, results="runs/results")           # on Ray

The agent prunes with exactly the episode it was trained in (the run's `EpisodeConfig`:
keep-rates, loops, remove-layer action, reward, fine-tuning, importance from RUN/config.json),
at ONE fixed tolerance: a run trained on a tolerance range must be told which tolerance to
prune for.

Which networks, by default (method.md §8): protocol B (the run has held-out datasets) prunes
every network of the held-out datasets; protocol A prunes the test-role networks of the run's
datasets. `datasets` / `role` override that.

On Ray every task loads the policy itself from the run's agent checkpoint directory (`best`,
else `latest`; once per worker process); the policy needs no cluster, only its location, so on a
multi-node cluster RUN is a URI every node reads (`s3://bucket/run`, uploaded with
`run_dir.upload_run`; credentials and endpoint as pyarrow takes them, on every node) or a path on
a filesystem the nodes share. Only the checkpoint's pickle-free export (policy.json +
policy.pt, see export.py) is read, never RLlib's pickles. Actions are greedy (the most likely keep-rate) unless
`greedy=False`, which samples them with a per-network seed. The guard is on by default: the network
returned is the smallest one visited within the tolerance on val (pruning/episodes.py).
"""
from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import pandas as pd

from neon_ray.agent.algos import LoadedPolicy
from neon_ray.agent.config import AgentTrainConfig
from neon_ray.agent.protocols import select_networks
from neon_ray.agent.run_dir import agent_checkpoint, load_checkpoint_policy
from neon_ray.errors import ConfigError
from neon_ray.pruning.batch import run_networks, slug, zoo_networks
from neon_ray.pruning.episode_config import EpisodeConfig
from neon_ray.pruning.episodes import Chooser, EpisodePruner, Pruned, RunOptions, network_seed, prune_episode
from neon_ray.pruning.tolerance import parse_tolerance
from neon_ray.runtime.files import Location, base_name, display, resolved
from neon_ray.zoo.store import open_zoo


def trained_episode(cfg: AgentTrainConfig, tolerance: float | None = None) -> EpisodeConfig:
    """The episode an agent was trained in (its run's resolved settings), at one fixed tolerance.

    `tolerance` None keeps the run's own tolerance when it is a single number.
    """
    if tolerance is None:
        if isinstance(cfg.episode.tolerance, tuple):
            lo, hi = cfg.episode.tolerance
            raise ConfigError(f"the agent was trained on tolerances {lo:g} to {hi:g} pp: give the tolerance to prune for "
                              f"(--tolerance A)")
        tolerance = cfg.episode.tolerance
    tolerance = parse_tolerance(tolerance, allow_range=False)
    return replace(cfg.episode, tolerance=tolerance, reward_params=cfg.resolved_reward_params())


def policy_chooser(policy, env_actions: int, greedy: bool = True, seed: int = 0, network_id: str = "network",
                   where: str = "policy") -> Chooser:
    """obs -> action from a LoadedPolicy; sampled actions are seeded per network."""
    n_policy = policy.module.action_space.n
    if n_policy != env_actions:
        raise ConfigError(f"{where}: the policy has {n_policy} actions but the env has {env_actions} "
                          "(its keep_rates / remove_layer differ from the ones the agent was trained with)")
    if not greedy:
        policy = LoadedPolicy(policy.module, seed=network_seed(seed, network_id))
    return lambda obs: policy(obs, greedy=greedy)


@functools.lru_cache(maxsize=4)
def _cached_policy(checkpoint: str):
    # Ray reuses worker processes across tasks: load each checkpoint once per process
    return load_checkpoint_policy(checkpoint)


class PolicyChooser:
    """Builds a network's chooser inside its Ray task from a checkpoint directory, a path or a URI (picklable)."""

    def __init__(self, checkpoint: Location, greedy: bool = True, seed: int = 0):
        self.checkpoint = str(resolved(checkpoint))
        self.greedy, self.seed = greedy, seed

    def __call__(self, network_id: str, env_actions: int) -> Chooser:
        return policy_chooser(_cached_policy(self.checkpoint), env_actions, self.greedy, self.seed, network_id,
                              display(self.checkpoint))


def prune_one(policy, model, dataset, episode: EpisodeConfig, *, greedy: bool = True, seed: int = 0,
              network_id: str = "network", guard: bool = True) -> Pruned:
    """Prune one network with a loaded policy in this process (no Ray, no zoo).

    `episode` must be the episode the agent was trained in: use `trained_episode(cfg, tolerance)`.
    `model` is left unchanged; the result holds the pruned network, the keep-rates chosen and
    the seconds taken.
    """
    choose = policy_chooser(policy, episode.n_actions, greedy, seed, network_id)
    return prune_episode(model, dataset, network_id, episode, choose, network_seed(seed, network_id), guard=guard)


def agent_pruner(run_dir: Location, tolerance: float | None = None, greedy: bool = True, seed: int = 0,
                 guard: bool = True):
    """(EpisodePruner for the run's agent checkpoint (`best`, else `latest`), the run's AgentTrainConfig).

    Loads the policy once here, so a bad run directory fails before any task starts.
    """
    run_dir = resolved(run_dir)
    checkpoint, cfg = agent_checkpoint(run_dir)
    load_checkpoint_policy(checkpoint)  # the export is complete and readable
    return checkpoint_pruner(checkpoint, cfg, run_dir, tolerance, greedy, seed, guard), cfg


def checkpoint_pruner(checkpoint: Location, cfg: AgentTrainConfig, run_dir: Location, tolerance: float | None = None,
                      greedy: bool = True, seed: int = 0, guard: bool = True) -> EpisodePruner:
    """The EpisodePruner of one checkpoint directory of run `run_dir` (trained with `cfg`)."""
    episode = trained_episode(cfg, tolerance)
    label = (f"a={episode.tolerance:g} loops={episode.loops}" + ("" if greedy else f" sample seed={seed}")
             + (" guard" if guard else ""))
    extra = {"agent": display(run_dir), "checkpoint": base_name(checkpoint), "greedy": greedy, "algo": cfg.algo}
    pruner = EpisodePruner(f"neon-{cfg.algo}", label, episode, PolicyChooser(checkpoint, greedy, seed),
                           tolerance=episode.tolerance, seed=seed, config=extra, guard=guard)
    return pruner


def default_networks(zoo, cfg, datasets: list[str] | None = None, role: str | None = None) -> pd.DataFrame:
    """The networks to prune: the protocol's reporting networks unless `datasets` / `role` say otherwise."""
    if datasets is None and role is None:
        ids = select_networks(zoo, cfg.datasets, cfg.holdout).eval_ids
        manifest = zoo.manifest()
        return manifest[manifest["network_id"].isin(ids)].sort_values(["dataset", "network_id"]).reset_index(drop=True)
    if role is None:
        role = "all" if cfg.holdout else "test"
    if datasets is None:
        datasets = list(cfg.holdout) if cfg.holdout else (list(cfg.datasets) if cfg.datasets else None)
    return zoo_networks(zoo, datasets, role)


def default_run_id(pruner: EpisodePruner, run_dir: Location) -> str:
    """`{method}__{run name}__{label}`: applying the same agent the same way again replaces its rows."""
    return f"{pruner.method}__{slug(base_name(resolved(run_dir)))}__{slug(pruner.label)}"


def apply_agent(
    run_dir: Location,
    *,
    zoo=None,
    datasets: list[str] | None = None,
    role: str | None = None,
    tolerance: float | None = None,
    greedy: bool = True,
    guard: bool = True,
    seed: int = 0,
    results: Location | None = None,
    run_id: str | None = None,
    options: RunOptions = RunOptions(),
    address: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Prune the selected networks of `zoo` (default: the run's zoo) with the trained agent on Ray.

    Writes rows (method 'neon-a2c' / 'neon-ppo', the common schema) to `results` dataset by
    dataset and returns them; `options` saves pruned networks and adds Deep Compression. `run_dir`
    and `results` may be URIs (s3://...); `zoo` and `options.save_dir` are paths.
    """
    run_dir = resolved(run_dir)
    pruner, cfg = agent_pruner(run_dir, tolerance, greedy, seed, guard)
    zoo = zoo if zoo is not None else cfg.zoo
    if isinstance(zoo, (str, Path)):
        zoo = open_zoo(Path(zoo).expanduser().resolve())
    networks = default_networks(zoo, cfg, datasets, role)
    if networks.empty:
        raise ConfigError(
            f"no network to prune in zoo {zoo.root}: datasets {datasets if datasets is not None else 'of the run'}, "
            f"role {role or 'of the run'} select none (the zoo's networks by dataset and role: {_roles(zoo)}); "
            "choose other --datasets or --role")
    return run_networks(zoo, pruner, networks, run_id=run_id or default_run_id(pruner, run_dir), results=results,
                        options=options, address=address, progress=progress)


def _roles(zoo) -> str:
    manifest = zoo.manifest()
    if manifest.empty:
        return "none"
    counts = manifest.groupby(["dataset", "role"]).size()
    return ", ".join(f"{d}: {n} {r}" for (d, r), n in counts.items())
