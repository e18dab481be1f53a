"""Bounded fan-out on Ray: many tasks, at most `limit` in flight, each result handled as it lands.

    fan_out(plans, lambda plan: task.remote(plan), save, limit=8, progress=ProgressLine(n, "zoo build"))

Work items are drawn from an iterator only when a slot is free, so a large job never holds
all its inputs (networks, object references) at once, and results are handled in the driver
in the order they finish, so a crash keeps everything handled before it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from neon_ray.runtime.progress import ProgressLine

Item = TypeVar("Item")
Result = TypeVar("Result")


def fan_out(
    items: Iterable[Item],
    submit: Callable[[Item], object],
    on_result: Callable[[Item, Result], str | None],
    *,
    limit: int,
    progress: ProgressLine | None = None,
) -> None:
    """Run `submit(item)` (which returns a Ray ObjectRef) for every item, at most `limit` at a time.

    As each task finishes, `on_result(item, result)` runs in the driver; what it returns is the
    progress line's message for that item. An exception from a task or from `on_result` stops
    the fan-out and propagates; tasks still in flight are left to the Ray session's shutdown.
    """
    import ray  # third-party and slow to import; only callers already inside a Ray session get here

    if limit < 1:
        raise ValueError(f"fan_out needs limit >= 1, got {limit!r}")
    todo, pending = iter(items), {}
    while True:
        for item in todo:
            pending[submit(item)] = item
            if len(pending) >= limit:
                break
        if not pending:
            return
        ready, _ = ray.wait(list(pending), num_returns=1)
        item = pending.pop(ready[0])
        message = on_result(item, ray.get(ready[0]))
        if progress is not None:
            progress.update(message or "")
