"""End to end: a real `ray start --head` cluster, the pipeline job submitted with `ray job submit`.

Runs in its own pytest process (`make test` does this) because `ray stop` ends every Ray
process on the machine, including the shared `ray.init` of the integration tests.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster():
    """A loopback-only head node; token auth is off only because nothing but this test reaches it."""
    temp = tempfile.mkdtemp(prefix="nre2e", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    dash = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    start = [str(BIN / "ray"), "start", "--head", f"--port={free_port()}", "--num-cpus=2",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--temp-dir={temp}", "--disable-usage-stats"]
    subprocess.run(start, env=env, check=True, capture_output=True, timeout=120)
    try:
        yield f"http://127.0.0.1:{dash}", env
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.mark.e2e
def test_pipeline_job_through_ray_job_submit(cluster, tmp_path):
    address, env = cluster
    out = tmp_path / "run"
    submit = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
              "python", "-m", "jobs.pipeline", "--spec", "jobs/specs/smoke.json", "--out", str(out)]
    done = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=900)
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
