"""Benchmarks: each prints its figures and writes them as JSON to a file given on the command line."""
