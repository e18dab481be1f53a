"""The pruning environment (method.md §4): one episode shrinks one zoo network layer by layer.

    env = PruningEnv(EnvConfig(zoo="runs/zoo", networks="train", episode=EpisodeConfig(loops=4)))
    env = PruningEnv({"zoo": "runs/zoo", "networks": "train", "loops": 4, "tolerance": [1, 50]})  # RLlib's dict
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)

Episode. A network with H hidden layers gets `loops * H` steps. Step t acts on the current
hidden layer with the action's keep-rate (or merges the layer away, see below), fine-tunes
the changed layers (skipped for keep-rate 1.0), measures val accuracy (the reward split) and
moves on to the next layer; after the last hidden layer it wraps to layer 0 and the loop
index grows. With `loops=1` every hidden layer, the last one included, is visited once, and
H = 1 works.

Remove-layer action (`remove_layer_action=True`, the last action index). The layer is merged
with the next Linear (structured.remove_layer), so the network gets shallower. The step budget
stays `loops * H` of the ORIGINAL depth, and the cycle carries on at the same index, which now
holds the layer that followed the removed one (wrapping to 0 past the end). On a network with
one hidden layer left the action cannot apply: it acts as keep-rate 1.0 (reward 0, nothing
changes) and `info["action_valid"]` is False.

Which networks, in what order, and on which RLlib worker: see catalogue.py. The tolerance of
each episode is fixed or drawn from a range: see tolerance.py. Settings: episode_config.py.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping

import gymnasium as gym
import numpy as np

from neon_ray.errors import ConfigError, NeonRayError
from neon_ray.nets import metrics
from neon_ray.nets.spec import MLP
from neon_ray.pruning.catalogue import NetworkCatalogue, ZooNetwork, measure_costs
from neon_ray.pruning.episode_config import EnvConfig
from neon_ray.pruning.finetune import Targets, finetune
from neon_ray.pruning.observation import CLIP, OBS_SIZE, EpisodeContext, Progress, observe
from neon_ray.pruning.rewards import StepOutcome, get_reward
from neon_ray.pruning.structured import prune_layer, remove_layer
from neon_ray.pruning.tolerance import draw_tolerance, drop_bound_pp, paired_changes


@dataclass
class _Episode:
    """The state of the running episode."""

    net: ZooNetwork
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
    """Current optional measurements (as ZooNetwork.costs)."""
    orig_widths: list = field(default_factory=list)
    """Original width of each current hidden layer (entries leave with removed layers)."""
    actions: list = field(default_factory=list)
    """Actions taken so far."""
    best_params: int = 0
    """Parameters of the smallest network within the tolerance visited so far (what the guard would return)."""
    correct_orig: np.ndarray | None = None
    """Which val rows the original network gets right."""
    correct: np.ndarray | None = None
    """Which val rows the current network gets right."""
    drop_bound: float = 0.0
    """Upper confidence bound of the current val drop in pp (tolerance.drop_bound_pp); 0 for the original."""
    within: bool = True
    """drop_bound <= tolerance; the original is within by definition."""
    targets: Targets | None = None
    """The original's predictions on train and val, when fine-tuning distils (FinetuneConfig.targets 'original')."""


class PruningEnv(gym.Env):
    """NEON's pruning environment on a zoo; see the module docstring and `EnvConfig`."""

    metadata = {"render_modes": []}

    def __init__(self, env_config: EnvConfig | Mapping | None = None):
        """`env_config`: an EnvConfig, or its flat dict form (what RLlib passes: an EnvContext)."""
        super().__init__()
        self.config = env_config if isinstance(env_config, EnvConfig) else EnvConfig.from_dict(env_config)
        self._settings = self.config.episode
        self._reward = get_reward(self._settings.reward, **(self._settings.reward_params or {}))
        self.catalogue = NetworkCatalogue(self.config, self._reward.needs)
        self.observation_space = gym.spaces.Box(-CLIP, CLIP, shape=(OBS_SIZE,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(self._settings.n_actions)
        self._episode: _Episode | None = None
        self._target_cache: dict[str, Targets] = {}
        self._reseed(self.config.seed)

    @property
    def batch_share(self) -> float:
        """Share of each train batch's steps this env's RLlib worker samples (see catalogue.step_shares)."""
        return self.catalogue.batch_share

    def _reseed(self, seed: int) -> None:
        """Seed every random choice of the env and restart the network cycle."""
        self._rng = np.random.default_rng([int(seed), self.config.worker_index, self.config.vector_index])
        self.catalogue.restart(self._rng)

    # ----------------------------------------------------------------------------------------
    # Gymnasium API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._reseed(seed)
        net = self.catalogue.next_network()
        tolerance = draw_tolerance(self._settings.tolerance, self._settings.tolerance_sampling, self._rng)
        depth = net.model.spec.depth
        self._episode = _Episode(
            net=net, model=net.model, tolerance=tolerance, seed=int(self._rng.integers(2**31 - 1)),
            total_steps=self._settings.loops * depth, acc=net.acc, f1=net.f1, params=net.params,
            costs=dict(net.costs), orig_widths=list(net.model.spec.hidden), best_params=net.params,
        )
        self._episode.correct_orig = self._episode.correct = self._val_correct(net.model)
        if self._settings.finetune.targets == "original":
            self._episode.targets = self._targets(net)
        t0 = time.perf_counter()
        obs = self._observe()
        info = {**self._summary(), "tolerance": tolerance}
        if self._settings.info_timings:
            info["seconds"] = {"observe": time.perf_counter() - t0}
        return obs, info

    def step(self, action):
        ep = self._require_episode()
        action = self._check_action(action)
        if ep.step >= ep.total_steps:
            raise NeonRayError(f"episode of {ep.net.network_id} is over ({ep.total_steps} steps); call reset()")
        seconds = {}
        layer, before = ep.layer, self._snapshot()
        remove = self._settings.remove_layer_action and action == len(self._settings.keep_rates)
        valid = not (remove and ep.model.spec.depth == 1)
        keep_rate = 1.0 if remove or not valid else float(self._settings.keep_rates[action])

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
        best_before = ep.best_params
        if ep.within and ep.params < ep.best_params:
            ep.best_params = ep.params
        # a keep-rate whose ceiling keeps every neuron changed nothing: it is paid as a no-op
        outcome = self._outcome(ep, before, keep_rate if changed else 1.0, remove and valid, best_before)
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
        if self._settings.info_timings:
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
            raise ConfigError(f"action {action!r} out of range: expected an integer in 0..{n - 1} (keep-rates {list(self._settings.keep_rates)}"
                              f"{', then remove-layer' if self._settings.remove_layer_action else ''})")
        return value

    def _compress(self, ep: _Episode, layer: int, remove: bool, keep_rate: float) -> MLP:
        if remove:
            return remove_layer(ep.model, layer)
        return prune_layer(ep.model, layer, keep_rate, importance=self._settings.importance, probe=ep.net.probe,
                           reinit=self._settings.reinit, seed=ep.seed + ep.step)

    def _finetune_and_measure(self, ep: _Episode, model: MLP, layer: int, removed: bool) -> tuple[int, float, float]:
        data = self.catalogue.dataset(ep.net.dataset)
        # after a removal the merged Linear is blocks[layer] (or the head when the last layer went)
        ft_layer = min(layer, model.spec.depth - 1) if removed else layer
        t0 = time.perf_counter()
        result = finetune(model, ft_layer, data, self._settings.finetune, seed=ep.seed + ep.step, original=ep.targets)
        finetune_seconds = time.perf_counter() - t0  # includes caching the frozen prefix
        t0 = time.perf_counter()
        ep.model = model
        pred = metrics.predict(model, data.X_val).numpy()
        truth = data.y_val.numpy()
        ep.correct = pred == truth
        ep.acc, ep.f1 = float(ep.correct.mean()), metrics.macro_f1(truth, pred)
        lost, gained = paired_changes(ep.correct_orig, ep.correct)
        ep.drop_bound = drop_bound_pp(lost, gained, len(truth), self._settings.confidence_z)
        ep.within = ep.drop_bound <= ep.tolerance
        ep.params = metrics.count_params(model)
        ep.costs = measure_costs(model, data, self._reward.needs, self._settings)
        return result.epochs, finetune_seconds, time.perf_counter() - t0

    def _targets(self, net: ZooNetwork) -> Targets:
        """The original's predictions, computed once per network (an env cycles over few networks)."""
        if net.network_id not in self._target_cache:
            self._target_cache[net.network_id] = Targets.of(net.model, self.catalogue.dataset(net.dataset))
        return self._target_cache[net.network_id]

    def _val_correct(self, model: MLP) -> np.ndarray:
        data = self.catalogue.dataset(self._episode.net.dataset)
        return metrics.predict(model, data.X_val).numpy() == data.y_val.numpy()

    def _snapshot(self) -> dict:
        ep = self._episode
        return {"acc": ep.acc, "f1": ep.f1, "params": ep.params, **ep.costs}

    def _outcome(self, ep: _Episode, before: dict, keep_rate: float, removed: bool, best_before: int) -> StepOutcome:
        net, extra = ep.net, {}
        for key in ("flops", "latency", "memory"):
            if key in net.costs:
                extra.update({f"{key}_orig": net.costs[key], f"{key}_before": before[key], f"{key}_after": ep.costs[key]})
        return StepOutcome(
            keep_rate=keep_rate, acc_orig=net.acc, acc_before=before["acc"], acc_now=ep.acc,
            params_orig=net.params, params_before=before["params"], params_after=ep.params,
            tolerance=ep.tolerance, removed_layer=removed, best_params_before=best_before, best_params_after=ep.best_params,
            within_after=ep.within,
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
        data = self.catalogue.dataset(ep.net.dataset)
        desc = data.descriptors()
        ctx = EpisodeContext(
            probe=ep.net.probe, params_orig=ep.net.params, depth_orig=ep.net.model.spec.depth,
            rows=desc["rows"], features=desc["features"], classes=desc["classes"],
            tolerance=ep.tolerance, loops=self._settings.loops, total_steps=ep.total_steps,
        )
        progress = Progress(step=ep.step, loop=ep.loop, acc_change=ep.acc - ep.net.acc, width_orig=ep.orig_widths[ep.layer],
                            best_removed=1.0 - ep.best_params / ep.net.params, drop_bound_pp=ep.drop_bound, within=ep.within)
        return observe(ep.model, ep.layer, ctx, progress)

    def _summary(self) -> dict:
        ep = self._episode
        return {
            "network_id": ep.net.network_id, "dataset": ep.net.dataset,
            "val_acc": ep.acc, "val_acc_orig": ep.net.acc, "drop_bound_pp": ep.drop_bound, "within_tolerance": ep.within,
            "params": ep.params, "params_orig": ep.net.params,
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
        data = self.catalogue.dataset(ep.net.dataset)
        model = ep.net.model if original else ep.model
        return metrics.accuracy_f1(model, data.X_test, data.y_test)[0]
