"""End to end: the pipeline job of a spec, submitted with `neon-ray submit` to a real `ray start --head`.

The head (tests/e2e/cluster.py) runs in token mode on loopback and free ports and is torn down by
stopping exactly the processes it started (never `ray stop`, which ends every Ray process on the
machine). The job is submitted right after the dashboard answers; `neon-ray submit` retries while
the head's job agent is still starting.
"""
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from e2e.cluster import BIN, head_pids, listening_ips
from neon_ray.agent.evaluate import GUARD_SUFFIX
from neon_ray.pipeline import load_spec

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def test_the_test_cluster_listens_on_loopback_only(head):
    ips = listening_ips(head_pids(head))
    assert ips, "no listening socket found for the head's processes"
    assert all(ip.is_loopback for ip in ips), sorted(map(str, ips))


def test_pipeline_job_through_neon_ray_submit(head, tmp_path):
    out = tmp_path / "run"
    command = [str(BIN / "neon-ray"), "submit", "jobs/specs/smoke.json", "--address", head.address, "--out", str(out)]
    done = subprocess.run(command, env=head.client_env(), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "succeeded" in done.stderr

    spec = load_spec(REPO / "jobs/specs/smoke.json", out=str(out))
    manifest = pd.concat(pd.read_parquet(p) for p in (out / "zoo").glob("*/manifest.parquet"))
    held_out = sorted(manifest[manifest["dataset"].isin(spec.holdout)]["network_id"])
    results = pd.read_parquet(out / "results")
    results["method"] = results["method"].astype(str)
    agent_rows = results[results["method"].str.startswith("neon-")]
    assert set(agent_rows["tolerance"]) == set(spec.tolerances)
    # a guarded baseline writes its rows under the baseline's name, at each tolerance
    assert set(results["method"]) == {agent_rows["method"].iloc[0], *(b.removesuffix(GUARD_SUFFIX) for b in spec.baselines)}
    # every held-out network pruned exactly once by each method at each of its tolerances, matched by ID
    for (method, tolerance), rows in results.groupby(["method", "tolerance"], dropna=False):
        assert sorted(rows["network_id"]) == held_out, (method, tolerance)
    assert (agent_rows["params_after"] <= agent_rows["params_before"]).all()
    assert (out / "agent" / "config.json").is_file()
    for tolerance in spec.tolerances:  # one report per tolerance
        assert (out / "report" / f"a{tolerance:g}" / "report.md").is_file()
