"""Starting or joining Ray the same way everywhere (CLI, jobs, library).

A local Ray started here (no `address`, no RAY_ADDRESS) is private to this process:

- Loopback only. Every server it starts (GCS, raylet, object manager, core workers, dashboard
  agent, runtime-env agent, metrics exporters) listens on 127.0.0.1, not on all interfaces.
  Ray binds its gRPC servers to loopback only when the node's IP is loopback, and `ray.init`
  turns a loopback `_node_ip_address` into the machine's outward IP unless Ray's
  RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER switch is off; that switch is read once at import, so it
  is turned off around `ray.init` only (`_loopback_node_ip`).
- Quiet. Ray's banners and warnings that say nothing to a neon-ray user (the token-auth banner,
  RLlib's "new API stack" and its own RLModuleConfig deprecation, Tune's "Install gputil") are
  dropped at their loggers, and workers' output is not forwarded to the driver, unless the
  `neon_ray` logger is enabled for DEBUG (`neon-ray --verbose`), which shows all of it.
- Cleaned up after the driver is killed. Ray's dashboard and runtime-env agents, on noticing
  their raylet died without SIGTERM (the raylet fate-shares the driver through SIGKILL), try to
  report it to the GCS, which died too, and wait out a fixed 60 s gRPC timeout before exiting.
  A tiny reaper process (stdlib only) holds a pipe from the driver; when the pipe closes (normal
  exit or SIGKILL) it stops whatever of this session's processes still runs, identified by PID
  and start time, so nothing outlives the driver by more than a few seconds.

Joining a cluster (`address`, or RAY_ADDRESS inside a Ray Job) changes none of the cluster's
settings and starts no reaper.
"""
from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys

from neon_ray.runtime import reaper as _reaper_script
from neon_ray.runtime.reaper import proc_start as _proc_start

LOOPBACK = "127.0.0.1"

NOISE: tuple[tuple[str, str], ...] = (
    ("ray._private.authentication.authentication_token_setup", "Token authentication is enabled for this Ray cluster"),
    ("ray.rllib.algorithms.algorithm_config", "on the new API stack! This is the new default behavior"),
    ("ray._common.deprecation", "DeprecationWarning: `RLModule(config=[RLModuleConfig"),
    ("ray.tune.utils.util", "Install gputil for GPU system monitoring"),
)
"""(logger, message start or fragment) of Ray log records dropped unless verbose. Only these
exact messages go: the "token authentication is *disabled*" warning and every other Ray
warning or error stay visible."""


def verbose() -> bool:
    """Whether Ray's own output is wanted: the `neon_ray` logger is enabled for DEBUG (`neon-ray --verbose`)."""
    return logging.getLogger("neon_ray").isEnabledFor(logging.DEBUG)


class _DropNoise(logging.Filter):
    """Drops the records of one logger whose message contains one of `fragments`."""

    def __init__(self, fragments: tuple[str, ...]):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to judge
            return True
        return not any(fragment in message for fragment in self.fragments)


def quiet_ray_logs(quiet: bool = True) -> None:
    """Install (quiet=True) or remove the filters dropping Ray's `NOISE` records; idempotent.

    Filters sit on the emitting loggers, so they work whether or not Ray is imported yet and
    whatever handlers Ray or the user attach.
    """
    by_logger: dict[str, tuple[str, ...]] = {}
    for name, fragment in NOISE:
        by_logger[name] = by_logger.get(name, ()) + (fragment,)
    for name, fragments in by_logger.items():
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _DropNoise)]:
            logger.removeFilter(old)
        if quiet:
            logger.addFilter(_DropNoise(fragments))


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None):
    """Use the running Ray, join `address`, or start a local one in-process; shut down only what we started.

    Inside a Ray Job (`ray job submit`) Ray sets RAY_ADDRESS, so `address=None` joins the
    cluster the job runs on instead of starting a second one. A local Ray listens on loopback
    only (see the module docstring).
    """
    import ray  # seconds to import: the CLI imports this module for every command, so only sessions pay for Ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        yield ray
        return
    loud = verbose()
    if not loud:
        quiet_ray_logs()
    kwargs = {"log_to_driver": loud, "configure_logging": False}
    reaper = None
    if address:
        ray.init(address=address, **kwargs)
    elif os.environ.get("RAY_ADDRESS"):
        ray.init(**kwargs)
    else:
        before = _children(os.getpid())
        with _loopback_node_ip():
            ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address=LOOPBACK, **kwargs)
        reaper = _start_reaper(before)
    try:
        yield ray
    finally:
        try:
            ray.shutdown()
        finally:
            _stop_reaper(reaper)


def cluster_cpus() -> float:
    import ray

    return float(ray.cluster_resources().get("CPU", 1.0))


# ------------------------------------------------------------------------------------------------
# Loopback


@contextlib.contextmanager
def _loopback_node_ip():
    """Let `ray.init(_node_ip_address="127.0.0.1")` keep the loopback address.

    `ray.init` passes its node IP through `services.resolve_ip_for_localhost`, which replaces a
    loopback address by the machine's outward IP whenever `ray_constants.ENABLE_RAY_CLUSTER` is
    true (the default on Linux; env RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER, read at import). With the
    node IP on loopback, Ray binds its gRPC servers, agents and metrics exporters to loopback.
    """
    try:
        from ray._private import ray_constants
    except ImportError:  # pragma: no cover - a Ray without the switch: nothing to undo
        yield
        return
    had = hasattr(ray_constants, "ENABLE_RAY_CLUSTER")
    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if had:
            ray_constants.ENABLE_RAY_CLUSTER = saved
        else:  # pragma: no cover
            del ray_constants.ENABLE_RAY_CLUSTER


# ------------------------------------------------------------------------------------------------
# Reaper: stop this session's leftover processes once the driver is gone


def _process_tree() -> dict[int, list[int]]:
    """{parent pid: [child pids]} of every process on the machine (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return {}
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int, roots: list[int] | None = None) -> dict[int, str]:
    """{pid: start time} of every live descendant of `pid` (or of `roots`, themselves included); Linux /proc."""
    children = _process_tree()
    found: dict[int, str] = {}
    todo = list(children.get(pid, ()) if roots is None else roots)
    while todo:
        child = todo.pop()
        start = _proc_start(child)
        if start is not None and child not in found:
            found[child] = start
            todo.extend(children.get(child, ()))
    return found


def _children(pid: int) -> dict[int, str]:
    """{pid: start time} of the live direct children of `pid`."""
    return {c: s for c in _process_tree().get(pid, ()) if (s := _proc_start(c)) is not None}


def _start_reaper(before: dict[int, str]) -> subprocess.Popen | None:
    """Start the reaper for what `ray.init` started: the direct children that were not in `before`
    (GCS, raylet, dashboard, monitors) and everything under them (agents, workers). Linux only."""
    if not sys.platform.startswith("linux"):
        return None
    new = [pid for pid, start in _children(os.getpid()).items() if before.get(pid) != start]
    tracked = descendants(os.getpid(), roots=new) if new else {}
    if not tracked:
        return None
    try:
        return subprocess.Popen(
            [sys.executable, "-I", "-S", _reaper_script.__file__, *(f"{pid}:{start}" for pid, start in tracked.items())],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the terminal's process group must not stop it early
        )
    except OSError:  # pragma: no cover - cleanup is best effort
        return None


def _stop_reaper(reaper: subprocess.Popen | None) -> None:
    """After a normal shutdown: close the pipe (the reaper stops anything still running) and reap it."""
    if reaper is None:
        return
    with contextlib.suppress(OSError):
        reaper.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        reaper.wait(timeout=10)
