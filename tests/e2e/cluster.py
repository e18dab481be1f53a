"""A real Ray head for end-to-end tests: `ray start --head --block` on loopback and free ports.

- Every port is chosen free at start (Ray's fixed defaults, e.g. the dashboard agent's 52365,
  clash with any other Ray on the machine), every server binds 127.0.0.1, and the temp dir is
  the head's own, so an unrelated Ray beside the tests is never touched.
- Token mode, as shipped clusters run: the head reads its token from RAY_AUTH_TOKEN (Ray's
  first source), so neither ~/.ray/auth_token nor the caller's environment is used or changed.
- Readiness: `start_head` returns once the dashboard answers its public GCS health check; the
  job agent may still be starting ("No available agent to submit job"), which submitters retry.
- Teardown stops exactly the processes under this `ray start` (by PID and start time), never
  `ray stop`, which ends every Ray process on the machine.
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from neon_ray.runtime.ray_session import descendants
from neon_ray.runtime.reaper import proc_start, reap

BIN = Path(sys.executable).parent
PORT_FLAGS = ("port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
              "runtime-env-agent-port", "ray-client-server-port", "node-manager-port", "object-manager-port")
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
"""Ray's single-machine switch: with it off, `ray start` keeps the node IP 127.0.0.1 instead of
replacing it by the machine's outward IP, and every server binds loopback (it also refuses
`ray start --address`, so a multi-node test needs another way to stay on loopback)."""
CLIENT_ENV_DROPPED = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@dataclass
class Head:
    address: str
    """The dashboard (Jobs API) URL."""
    token: str
    process: subprocess.Popen
    temp_dir: str

    def client_env(self, token: str | None = "head", home: str | None = None) -> dict:
        """Environment for a client process: the venv first on PATH, no inherited Ray address or auth
        settings; `token` "head" passes the head's token in RAY_AUTH_TOKEN, None passes none, a string
        passes that string; `home` replaces HOME (to hide ~/.ray/auth_token)."""
        env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV_DROPPED}
        env.update(RAY_USAGE_STATS_ENABLED="0", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        if token is not None:
            env["RAY_AUTH_TOKEN"] = self.token if token == "head" else token
        if home is not None:
            env["HOME"] = home
        return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_head(num_cpus: int = 2, timeout: float = 120) -> Head:
    temp = tempfile.mkdtemp(prefix="nre2e", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    token = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV_DROPPED}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, RAY_USAGE_STATS_ENABLED="0",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **LOOPBACK_ENV)
    dash = free_port()
    command = [str(BIN / "ray"), "start", "--head", "--block", f"--num-cpus={num_cpus}",
               *(f"--{flag}={free_port()}" for flag in PORT_FLAGS), "--node-ip-address=127.0.0.1",
               "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--temp-dir={temp}", "--disable-usage-stats"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    head = Head(f"http://127.0.0.1:{dash}", token, process, temp)
    try:
        wait_for_dashboard(head, timeout)
    except BaseException:
        stop_head(head)
        raise
    return head


def wait_for_dashboard(head: Head, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if head.process.poll() is not None:
            raise RuntimeError(f"ray start exited with {head.process.returncode} before the head was ready")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{head.address}/api/gcs_healthz", timeout=5) as reply:
                if reply.status == 200:
                    return
        time.sleep(1)
    raise TimeoutError(f"the Ray dashboard at {head.address} did not answer within {timeout:.0f} s")


def stop_head(head: Head) -> None:
    """Stop `ray start --block` and everything under it (GCS, raylet, dashboard, agents, workers), by PID."""
    tracked = list(descendants(head.process.pid).items())
    if (start := proc_start(head.process.pid)) is not None:
        tracked.append((head.process.pid, start))
    for pid, _ in tracked:
        with contextlib.suppress(OSError):
            os.kill(pid, 15)
    reap(tracked)
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.process.wait(timeout=30)
    for _ in range(3):  # a process on its way out can still write a log file into it
        shutil.rmtree(head.temp_dir, ignore_errors=True)
        if not os.path.exists(head.temp_dir):
            break
        time.sleep(1)


@contextlib.contextmanager
def running_head(num_cpus: int = 2):
    """A head for the `with` block, stopped afterwards even when the block fails."""
    head = start_head(num_cpus)
    try:
        yield head
    finally:
        stop_head(head)


def head_pids(head: Head) -> set[int]:
    return set(descendants(head.process.pid)) | {head.process.pid}


def listening_ips(pids: set[int]) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The local addresses these processes accept TCP connections on (Linux /proc)."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if (link := os.readlink(f"/proc/{pid}/fd/{fd}")).startswith("socket:["):
                        inodes.add(link[len("socket:["):-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # state 0A: LISTEN
                found.add(_proc_ip(fields[1].split(":")[0]))
    return found


def _proc_ip(hex_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """/proc/net/tcp* write addresses as 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_ip)
    ip = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
    return getattr(ip, "ipv4_mapped", None) or ip
