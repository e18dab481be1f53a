"""The bounded Ray fan-out: at most `limit` tasks in flight, items drawn lazily, every result handled once."""
from __future__ import annotations

import io

import pytest

from neon_ray.runtime.fanout import fan_out
from neon_ray.runtime.progress import ProgressLine

pytestmark = pytest.mark.ray


def test_fan_out_keeps_the_limit_and_handles_every_result(ray_session):
    @ray_session.remote
    def square(x):
        return x * x

    drawn, in_flight, peak, handled = [], [0], [0], {}

    def items():
        for x in range(7):
            drawn.append(x)
            yield x

    def submit(x):
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        assert len(drawn) - len(handled) <= 2  # never drawn ahead of a free slot
        return square.remote(x)

    def on_result(x, result):
        in_flight[0] -= 1
        handled[x] = result
        return f"{x} done"

    stream = io.StringIO()
    fan_out(items(), submit, on_result, limit=2, progress=ProgressLine(7, "squares", stream=stream))
    assert handled == {x: x * x for x in range(7)} and peak[0] == 2
    assert len(stream.getvalue().splitlines()) == 7 and "[7/7]" in stream.getvalue()


def test_fan_out_stops_on_the_first_failing_result(ray_session):
    @ray_session.remote
    def identity(x):
        return x

    def on_result(x, result):
        if x == 1:
            raise OSError("disk full (simulated)")

    with pytest.raises(OSError, match="simulated"):
        fan_out(range(5), identity.remote, on_result, limit=1)
    with pytest.raises(ValueError, match="limit >= 1"):
        fan_out([], identity.remote, on_result, limit=0)
