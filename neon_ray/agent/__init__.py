"""The pruning agent on RLlib.

- `a2c.py`: a true advantage actor-critic (`A2C`, `A2CConfig`, `A2CTorchLearner`) with an
  optional random-action warm-up that trains the critic only.
- `algos.py`: `make_algo_config("a2c"|"ppo", env, ...)`, `trial_cpus(config)` and
  `load_policy(checkpoint_dir)`.
- `export.py`: the trained policy as policy.json + policy.pt (a format that runs no code),
  written with every checkpoint; the only thing `load_policy` / `load_agent` / `prune` read.
- `protocols.py`: which networks train and which report (protocols A and B).
- `config.py`: `AgentTrainConfig`, the settings of a training run, with the episode it trains in.
- `callbacks.py`: per-episode figures logged on the EnvRunners and their per-iteration means.
- `run_dir.py`: the run directory (config.json, progress.csv, checkpoints) and `load_agent`.
- `training.py`: `algo_config`, `train_agent`: the training loop, checkpoints and resume.
- `apply.py`: pruning networks with a trained agent, in-process or on Ray.

Nothing is imported here: `import ray.rllib` costs seconds, and callers such as the CLI's
help should not pay it.
"""
