"""End to end on several nodes: a head and two worker nodes on this machine, and one of them lost.

The cluster (tests/e2e/cluster.py `running_cluster`): each node is its own `ray start` (own
raylet, object store, agents and session folder), all on loopback and free ports, in token
mode; teardown kills exactly the processes it started. Every node has one CPU and every
EnvRunner takes one, so the two EnvRunners of a run sample on two different nodes.

One job, submitted with `neon-ray submit` as a user would, builds a tiny zoo, trains the agent
with two EnvRunners and prunes every network. Once training has done an iteration and both
runners have worked on their nodes, a worker node hosting one of them is killed (SIGKILL to its
whole process group). The tests share that run (one run keeps the e2e suite within minutes):
before the fault, rollouts ran on two nodes; after it, RLlib's restarted runner samples on the
node left, the run reaches its episode count, and the results hold every network once.

Where things ran comes from the head's state API: the EnvRunner actors (node, restarts) and
their finished actor tasks (RLlib's `sample` and weight-sync calls, with the node they ran on).
"""
from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from e2e.cluster import BIN, FAST_NODE_DEATH, Cluster, WorkerNode, cluster_pids, kill_node, listening_ips, running_cluster, state
from neon_ray.results.store import read_results
from neon_ray.runtime.ray_session import descendants

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e

NETWORKS = 6
EPISODES = 200
"""Enough that training outlasts the lost runner's restart (about 12 s after the kill here, the
iterations in between slower while RLlib probes the lost runner) by a wide margin."""


@dataclass
class FaultedRun:
    out: Path
    job: subprocess.CompletedProcess
    runners_at_kill: dict[str, str]
    """{EnvRunner actor ID: node ID} when the node was killed."""
    tasks_at_kill: dict[str, dict[str, int]]
    """{EnvRunner actor ID: {node ID: finished actor tasks}} when the node was killed."""
    rows_at_kill: int
    victim: str
    """The actor ID of the EnvRunner on the lost node."""
    lost: WorkerNode


@pytest.fixture(scope="module")
def cluster():
    # the head declares a killed node dead within seconds, so the lost runner comes back sooner
    with running_cluster(workers=2, head_cpus=1, worker_cpus=1, head_env=FAST_NODE_DEATH) as started:
        yield started


@pytest.fixture(scope="module")
def run(cluster, tmp_path_factory) -> FaultedRun:
    out = tmp_path_factory.mktemp("multinode")
    job = subprocess.Popen(_submit_command(cluster, _pipeline(out)), env=cluster.head.client_env(), cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        runners_at_kill, tasks_at_kill, rows, victim, lost = _kill_a_runner_node(cluster, out, job)
        stdout, stderr = job.communicate(timeout=600)
    finally:
        if job.poll() is None:
            job.send_signal(signal.SIGINT)  # `neon-ray submit` stops the job on the cluster
            try:
                job.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                job.kill()
                job.communicate()
    done = subprocess.CompletedProcess(job.args, job.returncode, stdout, stderr)
    return FaultedRun(out, done, runners_at_kill, tasks_at_kill, rows, victim, lost)


def test_every_node_is_its_own_raylet_on_loopback_only(cluster):
    nodes = {n["node_id"]: n for n in state(cluster.head, "nodes") if n["state"] == "ALIVE"}
    assert len(nodes) == 3 and {w.node_id for w in cluster.workers} < set(nodes)
    assert {n["node_ip"] for n in nodes.values()} == {"127.0.0.1"}
    ips = listening_ips(cluster_pids(cluster))
    assert ips and all(ip.is_loopback for ip in ips), sorted(map(str, ips))
    for node in cluster.workers:  # each worker node runs a raylet (and so an object store) of its own
        assert "raylet" in _process_names(descendants(node.process.pid)), node.name


def _process_names(pids) -> set[str]:
    names = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            names.add(Path(f"/proc/{pid}/comm").read_text().strip())
    return names


def test_rollouts_ran_on_two_nodes(run):
    assert run.rows_at_kill >= 1
    assert len(run.runners_at_kill) == 2
    assert len(set(run.runners_at_kill.values())) == 2, "both EnvRunners were placed on one node"
    # each runner had answered RLlib's calls (sample, weight sync) on its own node
    for actor, node in run.runners_at_kill.items():
        assert run.tasks_at_kill[actor].get(node, 0) >= 1, run.tasks_at_kill


def test_training_goes_on_after_losing_a_worker_node(cluster, run):
    assert run.job.returncode == 0, run.job.stdout[-3000:] + run.job.stderr[-3000:]
    progress = pd.read_csv(run.out / "agent" / "progress.csv")
    assert len(progress) > run.rows_at_kill, "no training iteration after the node was lost"
    assert progress["episodes_total"].iloc[-1] >= EPISODES
    assert run.lost.process.returncode is not None
    assert any(n["node_id"] == run.lost.node_id and n["state"] == "DEAD" for n in state(cluster.head, "nodes"))
    record = _runners(cluster)[run.victim]
    assert int(record["num_restarts"]) >= 1 and record["node_id"] != run.lost.node_id, record
    # the restarted runner was back in the run: RLlib's calls finished on its new node
    assert _finished_tasks(cluster, [run.victim])[run.victim].get(record["node_id"], 0) >= 1


def test_results_hold_every_network_exactly_once(run):
    assert run.job.returncode == 0, run.job.stdout[-3000:] + run.job.stderr[-3000:]
    manifest = pd.concat(pd.read_parquet(p) for p in (run.out / "zoo").glob("*/manifest.parquet"))
    results = read_results(run.out / "results")
    assert len(manifest) == NETWORKS
    assert sorted(results["network_id"]) == sorted(manifest["network_id"])
    assert (results["params_after"] <= results["params_before"]).all()


def _pipeline(out: Path) -> str:
    zoo, agent = out / "zoo", out / "agent"
    return " && ".join((
        f"neon-ray zoo build --datasets sklearn:iris,sklearn:wine --networks {NETWORKS // 2} --test-networks 1 "
        f"--widths 8,16 --max-layers 2 --max-epochs 5 --out {zoo}",
        f"neon-ray train --zoo {zoo} --out {agent} --runners 2 --episodes {EPISODES} --warmup 2 --loops 1 "
        "--finetune-epochs 1 --tolerance 5 --checkpoint-every 1000",
        f"neon-ray prune --agent {agent} --role all --no-timing --results {out / 'results'}",
    ))


def _submit_command(cluster: Cluster, shell: str) -> list[str]:
    return [str(BIN / "neon-ray"), "submit", "--address", cluster.head.address, "--working-dir", str(REPO),
            "--", "sh", "-c", shell]


def _runners(cluster: Cluster) -> dict[str, dict]:
    """{actor ID: state API record} of every EnvRunner actor the cluster has had."""
    return {a["actor_id"]: a for a in state(cluster.head, "actors") if a["class_name"].endswith("EnvRunner")}


def _finished_tasks(cluster: Cluster, actor_ids) -> dict[str, dict[str, int]]:
    """{actor ID: {node ID: finished actor tasks}} of those actors (their calls, not their creation)."""
    found: dict[str, dict[str, int]] = {a: {} for a in actor_ids}
    for task in state(cluster.head, "tasks", filters=(("type", "=", "ACTOR_TASK"), ("state", "=", "FINISHED"))):
        if task.get("actor_id") in found and task.get("node_id"):
            per_node = found[task["actor_id"]]
            per_node[task["node_id"]] = per_node.get(task["node_id"], 0) + 1
    return found


def _kill_a_runner_node(cluster: Cluster, out: Path, job: subprocess.Popen, timeout: float = 300):
    """Once training has done an iteration and both runners have worked: SIGKILL a worker node hosting one.

    Returns (runners, their tasks, progress rows, the lost runner's actor ID, the node), all as at the kill."""
    progress = out / "agent" / "progress.csv"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert job.poll() is None, "the job ended before training got going:\n" + job.communicate()[1][-3000:]
        rows = len(pd.read_csv(progress)) if progress.is_file() else 0
        placed = {a: r["node_id"] for a, r in _runners(cluster).items() if r["state"] == "ALIVE"} if rows else {}
        tasks = _finished_tasks(cluster, placed) if len(placed) == 2 else {}
        worked = tasks and all(tasks[a].get(node, 0) >= 1 for a, node in placed.items())
        on_workers = [(a, n) for n in cluster.workers for a, where in placed.items() if where == n.node_id]
        if worked and on_workers:
            victim, node = on_workers[0]
            kill_node(node)
            return placed, tasks, rows, victim, node
        time.sleep(0.5)
    raise TimeoutError(f"training did not get going within {timeout:.0f} s")
