"""The pruning agent on RLlib.

- `a2c.py`: a true advantage actor-critic (`A2C`, `A2CConfig`, `A2CTorchLearner`) with an
  optional random-action warm-up that trains the critic only.
- `algos.py`: `make_algo_config("a2c"|"ppo", env, ...)`, `trial_cpus(config)` and
  `load_policy(checkpoint_dir)`.

Nothing is imported here: `import ray.rllib` costs seconds, and callers such as the CLI's
help should not pay it.
"""
