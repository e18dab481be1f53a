"""The reaper: stops a local Ray session's leftover processes once its driver is gone.

Run as a script by `ray_session.py` (`python -I -S reaper.py PID:START ...`), so it must stay
standard-library only and import nothing from the package. It reads its stdin, a pipe whose
other end only the driver holds, until end of file (normal exit or SIGKILL of the driver), then
sends what still runs of the given processes nothing, SIGTERM, then SIGKILL, with short graces.
A process counts as "still the same" only while its start time matches, so a reused PID is
never touched.
"""
from __future__ import annotations

import os
import signal
import sys
import time

STEPS = ((None, 1.0), (signal.SIGTERM, 2.0), (signal.SIGKILL, 1.0))
"""(signal, seconds to wait after it): first a grace for a normal shutdown, then TERM, then KILL."""


def proc_start(pid: int) -> str | None:
    """The start time (clock ticks since boot) of a live process, from /proc; None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            rest = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if rest[0] in ("Z", "X") else rest[19]


def _alive(tracked: list[tuple[int, str]]) -> list[int]:
    return [pid for pid, start in tracked if proc_start(pid) == start]


def reap(tracked: list[tuple[int, str]]) -> None:
    for sig, grace in STEPS:
        left = _alive(tracked)
        if not left:
            return
        for pid in left if sig is not None else ():
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        end = time.monotonic() + grace
        while _alive(tracked) and time.monotonic() < end:
            time.sleep(0.05)


def main(args: list[str]) -> None:
    tracked = [(int(pid), start) for pid, start in (arg.split(":") for arg in args)]
    try:
        while sys.stdin.buffer.read(65536):
            pass
    except BaseException:  # any end of the pipe, or a signal to us, means: clean up now
        pass
    reap(tracked)


if __name__ == "__main__":
    main(sys.argv[1:])
