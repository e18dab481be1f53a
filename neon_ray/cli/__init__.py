"""The `neon-ray` command.

Each sub-command lives in its own `*_cmd.py` module exposing `register(subparsers)`; handlers
are thin wrappers over library functions (the same ones jobs/ and tests call) and import torch
and Ray lazily so that `--help` stays fast.

Output: results and progress go to stdout/stderr as each command prints them; messages of the
`neon_ray` loggers go to stderr (INFO as plain lines, warnings as `neon-ray: warning: ...`).
Ray's banners and routine warnings are silenced (see `neon_ray.runtime.ray_session`); the global
`--verbose` flag (before the sub-command) shows them, forwards Ray workers' output to the
terminal and turns the `neon_ray` loggers to DEBUG.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys

from neon_ray.errors import NeonRayError

COMMAND_MODULES = (
    "datasets",
    "zoo",
    "baseline",
    "train",
    "prune",
    "evaluate",
    "results",
    "compress",
    "tune",
    "report",
    "demo",
    "bench",
    "submit",
    "agent",
)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes as one line and exit 2, like every other user mistake (sub-parsers inherit it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="neon-ray",
        description="Prune dense networks with a reinforcement-learning agent (NEON) and Deep Compression, on Ray.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true",
        help="show everything: Ray's banners and warnings, Ray workers' output, neon-ray's debug messages "
             "(give it before the command, e.g. `neon-ray --verbose train ...`)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"neon_ray.cli.{name}_cmd").register(sub)
    return parser


class _CliFormatter(logging.Formatter):
    """INFO as the bare message; other levels as `neon-ray: warning: ...` (debug lines name their logger)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            message = f"{message}\n{record.exc_text}"
        if record.levelno == logging.INFO:
            return message
        if record.levelno < logging.INFO:
            return f"neon-ray: debug: {record.name}: {message}"
        return f"neon-ray: {record.levelname.lower()}: {message}"


@contextlib.contextmanager
def configure_logging(verbose: bool = False):
    """For one command: `neon_ray` loggers at INFO (DEBUG with verbose) on stderr; Ray's noise off unless verbose.

    Restores the logger's level and handlers afterwards, so in-process callers (tests) are left as they were.
    """
    from neon_ray.runtime.ray_session import quiet_ray_logs  # here: only a running command needs it, not `--help`

    logger = logging.getLogger("neon_ray")
    level, handler = logger.level, logging.StreamHandler(sys.stderr)
    handler.setFormatter(_CliFormatter())
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.addHandler(handler)
    quiet_ray_logs(not verbose)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with configure_logging(args.verbose):
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
