"""Baselines a fair comparison needs, run on the same networks and splits as the agent."""
