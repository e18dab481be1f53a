"""The pruning agent on RLlib.

- `a2c.py`: a true advantage actor-critic (`A2C`, `A2CConfig`, `A2CTorchLearner`) with an
  optional random-action warm-up that trains the critic only.
- `algos.py`: `make_algo_config("a2c"|"ppo", env, ...)`, `trial_cpus(config)` and
  `load_policy(checkpoint_dir)`.
- `export.py`: the trained policy as policy.json + policy.pt (a format that runs no code),
  written with every checkpoint; the only thing `load_policy` / `load_agent` / `prune` read.

Nothing is imported here: `import ray.rllib` costs seconds, and callers such as the CLI's
help should not pay it.
"""
