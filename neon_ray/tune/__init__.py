"""Ray Tune sweeps of reward trade-offs and learning settings."""
