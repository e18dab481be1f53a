"""A small progress display for long loops: a rewriting line on a terminal, plain lines in logs."""
from __future__ import annotations

import sys
import time


class ProgressLine:
    """Counts finished items and prints done/total, rate and ETA with a message per item."""

    def __init__(self, total: int, label: str, stream=None, enabled: bool = True):
        self.total, self.label, self.done = total, label, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.start = time.perf_counter()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, message: str = "", n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        line = f"{self.label} [{self.done}/{self.total}] {elapsed:5.0f}s elapsed, eta {eta:4.0f}s  {message}"
        if self.tty:
            self.stream.write("\r\033[K" + line[:200])
            if self.done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
