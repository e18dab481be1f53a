"""End to end: a real `ray start --head` cluster, the pipeline job submitted with `ray job submit`.

The cluster is torn down by stopping exactly the processes this test started (never `ray stop`,
which ends every Ray process on the machine), and the job is submitted only once the head's
dashboard answers, retrying while its job agent is still starting.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_dashboard(address: str, head: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited with {head.returncode} before the head was ready")
        try:
            with urllib.request.urlopen(f"{address}/api/version", timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"the Ray dashboard at {address} did not answer within {timeout:.0f} s")


def stop_tree(head: subprocess.Popen) -> None:
    """Stop `ray start --block` and everything under it (GCS, raylet, dashboard, agents, workers), by PID."""
    from neon_ray.runtime.ray_session import descendants
    from neon_ray.runtime.reaper import proc_start, reap

    tracked = list(descendants(head.pid).items())
    if (start := proc_start(head.pid)) is not None:
        tracked.append((head.pid, start))
    for pid, _ in tracked:
        try:
            os.kill(pid, 15)
        except OSError:
            pass
    reap(tracked)
    head.wait(timeout=30)


@pytest.fixture
def cluster():
    """A loopback-only head node; token auth is off only because nothing but this test reaches it."""
    temp = tempfile.mkdtemp(prefix="nre2e", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    dash = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    # every port chosen free now: Ray's fixed defaults (e.g. the agent's 52365) clash with any other Ray here
    ports = {flag: free_port() for flag in ("port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                           "metrics-export-port", "runtime-env-agent-port", "ray-client-server-port",
                                           "node-manager-port", "object-manager-port")}
    start = [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus=2", *(f"--{f}={p}" for f, p in ports.items()),
             "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--temp-dir={temp}", "--disable-usage-stats"]
    head = subprocess.Popen(start, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"http://127.0.0.1:{dash}"
    try:
        wait_for_dashboard(address, head)
        yield address, env
    finally:
        stop_tree(head)


def submit(command: list[str], env: dict, attempts: int = 10) -> subprocess.CompletedProcess:
    """`ray job submit`, retried while the head's job agent is not up yet (its documented start-up race)."""
    for _ in range(attempts):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if "No available agent" not in done.stdout + done.stderr:
            return done
        time.sleep(3)
    return done


@pytest.mark.e2e
def test_pipeline_job_through_ray_job_submit(cluster, tmp_path):
    address, env = cluster
    out = tmp_path / "run"
    command = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
               "python", "-m", "jobs.pipeline", "--spec", "jobs/specs/smoke.json", "--out", str(out)]
    done = submit(command, env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "succeeded" in done.stdout

    spec = json.loads((REPO / "jobs/specs/smoke.json").read_text())
    manifest = pd.concat(pd.read_parquet(p) for p in (out / "zoo").glob("*/manifest.parquet"))
    held_out = manifest[manifest["dataset"].isin(spec["holdout"])]
    results = pd.read_parquet(out / "results")
    agent_rows = results[results["method"].astype(str).str.startswith("neon-")]
    # every held-out network pruned exactly once, matched by ID
    assert sorted(agent_rows["network_id"]) == sorted(held_out["network_id"])
    for method in spec["baselines"]:
        rows = results[results["method"].astype(str) == method]
        assert sorted(rows["network_id"]) == sorted(held_out["network_id"])
    assert (agent_rows["params_after"] <= agent_rows["params_before"]).all()
    assert (out / "agent" / "config.json").is_file()
    assert (out / "report" / "report.md").is_file()
