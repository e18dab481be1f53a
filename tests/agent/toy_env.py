"""A tiny pruning-like gymnasium env for agent tests: fast, pure numpy, seeded by reset().

An episode walks over `episode_len` "layers". At each step the observation shows a one-hot
"best keep-rate bucket" for the current layer plus the layer's position; the agent picks one
of 5 buckets and gets 1 - 0.25 * |action - best|. A uniformly random policy earns 0.6 per
step on average, the optimal policy 1.0, so with 4 steps: 2.4 versus 4.0 per episode.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

N_ACTIONS = 5


class ToyPruningEnv(gym.Env):
    """See the module docstring. `env_config`: {"episode_len": int (default 4)}."""

    def __init__(self, env_config: dict[str, Any] | None = None) -> None:
        self.episode_len = int((env_config or {}).get("episode_len", 4))
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(N_ACTIONS + 1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(N_ACTIONS)
        self._t = 0
        self._best = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._best = int(self.np_random.integers(N_ACTIONS))
        return self._obs(), {}

    def step(self, action):
        reward = 1.0 - 0.25 * abs(int(action) - self._best)
        self._t += 1
        self._best = int(self.np_random.integers(N_ACTIONS))
        return self._obs(), reward, self._t >= self.episode_len, False, {}

    def _obs(self) -> np.ndarray:
        obs = np.zeros(N_ACTIONS + 1, dtype=np.float32)
        obs[self._best] = 1.0
        obs[-1] = self._t / self.episode_len
        return obs


def best_action(obs: np.ndarray) -> int:
    """The optimal action for an observation of this env."""
    return int(np.argmax(obs[:N_ACTIONS]))


def expected_return(action_probs, episode_len: int = 4) -> float:
    """Exact expected episode return of a policy given as `action_probs(obs) -> probs`.

    Noise-free (no sampling), so learning tests can compare policies with small margins.
    """
    actions = np.arange(N_ACTIONS)
    total = 0.0
    for t in range(episode_len):
        for best in range(N_ACTIONS):
            obs = np.zeros(N_ACTIONS + 1, dtype=np.float32)
            obs[best] = 1.0
            obs[-1] = t / episode_len
            rewards = 1.0 - 0.25 * np.abs(actions - best)
            total += float(np.dot(action_probs(obs), rewards)) / N_ACTIONS
    return total
