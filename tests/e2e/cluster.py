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

Several nodes (`running_cluster`): worker nodes are further `ray start --address --block`
processes on this machine, each with its own raylet, object store, agents and temp dir, in its
own process group, on loopback and free ports too, in token mode with the head's token.
- Loopback: Ray refuses `ray start --address` while its single-machine switch is off
  (LOOPBACK_ENV), and with the switch on it rewrites 127.0.0.1 to the machine's outward IP; so a
  worker node runs Ray's own CLI in a wrapper (JOIN_ON_LOOPBACK) that lifts the refusal and keeps
  127.0.0.1 as given, while its child processes still see the switch off.
- Own temp dir: by default a worker node on the head's machine shares the head's session folder,
  and its runtime-env agent then deletes a job's working dir under the head's job driver.
- Readiness: every node ALIVE in the head's state API; a worker whose `ray start` gives up
  (Ray waits 30 s for its raylet, which a loaded machine can miss) is started again.
- `kill_node` is a node fault: SIGKILL to the node's whole process group. Teardown kills the
  worker nodes' groups, then stops the head, as above.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from neon_ray.runtime.ray_session import descendants
from neon_ray.runtime.reaper import proc_start, reap

BIN = Path(sys.executable).parent
PORT_FLAGS = ("port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
              "runtime-env-agent-port", "ray-client-server-port", "node-manager-port", "object-manager-port")
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
"""Ray's single-machine switch: with it off, `ray start` keeps the node IP 127.0.0.1 instead of
replacing it by the machine's outward IP, and every server binds loopback (it also refuses
`ray start --address`: worker nodes get around that with JOIN_ON_LOOPBACK)."""
CLIENT_ENV_DROPPED = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@dataclass
class Head:
    address: str
    """The dashboard (Jobs API) URL."""
    token: str
    process: subprocess.Popen
    temp_dir: str
    gcs_address: str = ""
    """HOST:PORT that worker nodes join (`ray start --address`)."""

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


def start_head(num_cpus: int = 2, timeout: float = 120, extra_args: tuple[str, ...] = (),
               extra_env: dict | None = None) -> Head:
    temp = tempfile.mkdtemp(prefix="nre2e", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    token = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV_DROPPED}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, RAY_USAGE_STATS_ENABLED="0",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **LOOPBACK_ENV, **(extra_env or {}))
    dash = free_port()
    ports = {flag: free_port() for flag in PORT_FLAGS}
    command = [str(BIN / "ray"), "start", "--head", "--block", f"--num-cpus={num_cpus}",
               *(f"--{flag}={port}" for flag, port in ports.items()), "--node-ip-address=127.0.0.1",
               "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--temp-dir={temp}", "--disable-usage-stats",
               *extra_args]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    head = Head(f"http://127.0.0.1:{dash}", token, process, temp, f"127.0.0.1:{ports['port']}")
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
    remove_dir(head.temp_dir)


def remove_dir(path: str) -> None:
    for _ in range(3):  # a process on its way out can still write a log file into it
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
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


# ------------------------------------------------------------------------------------------------
# Several nodes on this machine

NODE_PORT_FLAGS = ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                   "metrics-export-port", "runtime-env-agent-port")
JOIN_ON_LOOPBACK = "\n".join((
    "import sys",
    "from ray._private import ray_constants, services",
    "ray_constants.ENABLE_RAY_CLUSTER = True  # lifts the refusal of `ray start --address` (this process only)",
    "services.resolve_ip_for_localhost = lambda host: host  # 127.0.0.1 stays the node's IP and the GCS host",
    "from ray.scripts.scripts import main",
    "sys.exit(main())",
))
"""`python -c JOIN_ON_LOOPBACK start --address ...`: Ray's own `ray start` for a worker node on loopback (see the module docstring)."""
OBJECT_STORE_BYTES = 256 * 1024 ** 2
"""Per node: Ray's default (30% of memory) for four nodes would exceed /dev/shm; the tests store little."""
FAST_NODE_DEATH = {"RAY_health_check_period_ms": "2000", "RAY_health_check_timeout_ms": "5000",
                   "RAY_health_check_failure_threshold": "3"}
"""Head settings for a node-fault test: the GCS declares a killed node (its port refuses at once) dead
after 3 checks 2 s apart, not Ray's 5 checks 3 s apart; a live node on a loaded machine still has
5 s to answer each check."""


@dataclass
class WorkerNode:
    name: str
    """`ray start --node-name`: how the state API's node list names it."""
    process: subprocess.Popen
    """`ray start --address --block`, leader of the node's own process group."""
    temp_dir: str
    """The node's own session folder, as on a machine of its own (sharing the head's, as Ray does by
    default on one machine, lets one node's runtime-env agent delete a job's working dir under another)."""
    num_cpus: int = 1
    node_id: str = ""
    """Filled in once the node is ALIVE (wait_for_nodes)."""


@dataclass
class Cluster:
    head: Head
    workers: list[WorkerNode] = field(default_factory=list)


def start_worker(head: Head, name: str, num_cpus: int = 1) -> WorkerNode:
    env = head.client_env()
    env.update(RAY_AUTH_MODE="token", **LOOPBACK_ENV)
    temp = tempfile.mkdtemp(prefix="nre2e", dir="/tmp")
    command = [sys.executable, "-c", JOIN_ON_LOOPBACK, "start", f"--address={head.gcs_address}", "--block",
               f"--num-cpus={num_cpus}", "--node-ip-address=127.0.0.1", f"--node-name={name}", f"--temp-dir={temp}",
               f"--object-store-memory={OBJECT_STORE_BYTES}", "--disable-usage-stats",
               *(f"--{flag}={free_port()}" for flag in NODE_PORT_FLAGS)]
    with open(Path(temp) / "ray-start.log", "wb") as log:  # its tail goes into a start-up error
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return WorkerNode(name, process, temp, num_cpus)


def state(head: Head, resource: str, filters: tuple[tuple[str, str, str], ...] = ()) -> list[dict]:
    """One list of Ray's state API (`nodes`, `actors`, `tasks`, ...), in detail, straight from the head's dashboard;
    `filters`: (key, "=" or "!=", value) each."""
    query = urllib.parse.urlencode({"detail": "true", "limit": 10000, "filter_keys": [f[0] for f in filters],
                                    "filter_predicates": [f[1] for f in filters],
                                    "filter_values": [f[2] for f in filters]}, doseq=True)
    request = urllib.request.Request(f"{head.address}/api/v0/{resource}?{query}",
                                     headers={"Authorization": f"Bearer {head.token}"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.load(reply)["data"]["result"]["result"]


def wait_for_nodes(cluster: Cluster, timeout: float = 240, attempts: int = 3) -> None:
    """Until the head and every worker node are ALIVE in the state API (retrying while it is not up yet).

    A worker node whose `ray start` gives up (Ray waits 30 s for its raylet to register, which a
    loaded machine can miss) is killed and started again, up to `attempts` times in all.
    """
    end = time.monotonic() + timeout
    tries = {node.name: 1 for node in cluster.workers}
    while time.monotonic() < end:
        for index, node in enumerate(cluster.workers):
            if node.process.poll() is not None:
                cluster.workers[index] = _restart(cluster.head, node, tries, attempts)
        with contextlib.suppress(OSError, ValueError, KeyError):
            alive = {n["node_name"]: n["node_id"] for n in state(cluster.head, "nodes") if n["state"] == "ALIVE"}
            if len(alive) == len(cluster.workers) + 1 and all(node.name in alive for node in cluster.workers):
                for node in cluster.workers:
                    node.node_id = alive[node.name]
                return
        time.sleep(1)
    raise TimeoutError(f"{len(cluster.workers)} worker node(s) did not all become ALIVE within {timeout:.0f} s")


def _restart(head: Head, node: WorkerNode, tries: dict[str, int], attempts: int) -> WorkerNode:
    log = (Path(node.temp_dir) / "ray-start.log").read_text(errors="replace")[-3000:]
    kill_node(node)  # whatever of it still runs
    remove_dir(node.temp_dir)
    base, attempt = node.name.rsplit("-a", 1)[0], tries.pop(node.name)
    if attempt >= attempts:
        raise RuntimeError(f"worker node {base} exited with {node.process.returncode} before it was ready, "
                           f"{attempt} times; last output:\n{log}")
    fresh = start_worker(head, f"{base}-a{attempt + 1}", node.num_cpus)
    tries[fresh.name] = attempt + 1
    return fresh


def kill_node(node: WorkerNode) -> None:
    """A node fault: SIGKILL to the node's process group (raylet, object store, agents, workers), nothing else."""
    tracked = list(descendants(node.process.pid).items())
    if node.process.poll() is None:  # the leader lives, so the group ID is still this node's
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.process.pid, signal.SIGKILL)
    reap(tracked)  # any that left the group, by PID and start time
    with contextlib.suppress(subprocess.TimeoutExpired):
        node.process.wait(timeout=30)


@contextlib.contextmanager
def running_cluster(workers: int = 2, head_cpus: int = 1, worker_cpus: int = 1, head_env: dict | None = None):
    """A head and `workers` worker nodes for the `with` block, all ALIVE; every process of it stopped afterwards."""
    head = start_head(head_cpus, extra_args=(f"--object-store-memory={OBJECT_STORE_BYTES}",), extra_env=head_env)
    cluster = Cluster(head)
    try:
        for index in range(workers):
            cluster.workers.append(start_worker(head, f"{Path(head.temp_dir).name}-w{index}-a1", worker_cpus))
        wait_for_nodes(cluster)
        yield cluster
    finally:
        for node in cluster.workers:
            kill_node(node)
            remove_dir(node.temp_dir)
        stop_head(head)


def cluster_pids(cluster: Cluster) -> set[int]:
    pids = head_pids(cluster.head)
    for node in cluster.workers:
        pids |= set(descendants(node.process.pid)) | ({node.process.pid} if node.process.poll() is None else set())
    return pids


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
