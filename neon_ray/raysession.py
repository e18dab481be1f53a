"""Starting or joining Ray the same way everywhere (CLI, jobs, library)."""
from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None):
    """Use the running Ray, join `address`, or start a local one in-process; shut down only what we started.

    Inside a Ray Job (`ray job submit`) Ray sets RAY_ADDRESS, so `address=None` joins the
    cluster the job runs on instead of starting a second one.
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        yield ray
        return
    kwargs = {"log_to_driver": False, "configure_logging": False}
    if address:
        ray.init(address=address, **kwargs)
    elif os.environ.get("RAY_ADDRESS"):
        ray.init(**kwargs)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_cpus() -> float:
    import ray

    return float(ray.cluster_resources().get("CPU", 1.0))
