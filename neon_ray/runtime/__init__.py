"""Running things: the Ray session (local on loopback, or joined), bounded fan-out, progress lines, atomic files, the reaper."""
