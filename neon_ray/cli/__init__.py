"""The `neon-ray` command.

Each sub-command lives in its own `*_cmd.py` module exposing `register(subparsers)`; handlers
are thin wrappers over library functions (the same ones jobs/ and tests call) and import torch
and Ray lazily so that `--help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from neon_ray.errors import NeonRayError

COMMAND_MODULES = (
    "datasets",
    "zoo",
    "baseline",
    "train",
    "prune",
    "results",
    "compress",
    "tune",
    "demo",
    "bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neon-ray",
        description="Prune dense networks with a reinforcement-learning agent (NEON) and Deep Compression, on Ray.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"neon_ray.cli.{name}_cmd").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NeonRayError as exc:
        print(f"neon-ray: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neon-ray: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
