"""Structured pruning as an RL environment: pruning ops, fine-tuning, the observation, rewards, the gymnasium env, and whole episodes on Ray."""
