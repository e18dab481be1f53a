"""CI: run a command (the test suite) beside an unrelated Ray head, and fail if the command killed it.

    python .ci/bystander.py make test

Tests must stop only the Ray processes they started (never `ray stop`); this head belongs to
nobody in the suite, so it must answer its health check afterwards. Exit status: the
command's, or 1 when the command passed but the head did not survive.
"""
from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from cluster import start_head, stop_head  # noqa: E402  (the e2e tests' own loopback head, free ports)


def alive(head) -> bool:
    if head.process.poll() is not None:
        return False
    try:
        with urllib.request.urlopen(f"{head.address}/api/gcs_healthz", timeout=10) as reply:
            return reply.status == 200
    except OSError:
        return False


def main(command: list[str]) -> int:
    head = start_head(num_cpus=1)
    try:
        status = subprocess.call(command)
        survived = alive(head)
    finally:
        stop_head(head)
    if not survived:
        print("bystander: an unrelated Ray head did not survive the test suite (a test stopped Ray processes it did not start)",
              file=sys.stderr)
        return status or 1
    print("bystander: the unrelated Ray head survived the test suite", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
