"""Baselines a fair comparison needs, run on the same networks and splits as the agent.

- `pruners.py`: random, uniform and magnitude pruning, `make_pruner`, `run_baseline`.
- `search.py`: uniform-search, the smallest uniform keep-rate within tolerance, by bisection.
"""
