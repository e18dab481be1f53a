"""Benchmarks: each measures and returns its figures; cli/bench_*.py prints them and writes them as JSON (bench/io.py)."""
