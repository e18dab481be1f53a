"""Agents by URI: a run uploaded to a real S3-compatible server on loopback (tests/conftest_s3.py),
then read back through pyarrow by `load_agent` and, on Ray, by every prune task; the safe format
(checksum, then torch.load(weights_only=True) of the bytes) holds there as on disk."""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil

import numpy as np
import pytest
import torch

from conftest_s3 import bucket, keys, s3, uri  # noqa: F401  (fixtures)
from neon_ray.agent.apply import apply_agent
from neon_ray.agent.export import SPEC_FILE, WEIGHTS_FILE
from neon_ray.agent.run_dir import RunDir, check_run, load_agent, upload_run
from neon_ray.cli import agent_cmd, evaluate_cmd, prune_cmd
from neon_ray.errors import CheckpointError, ConfigError
from neon_ray.results.store import read_results
from test_hardening_agent import KEEP, WINE, Payload, _fake_run, _observations

UPLOADED = ["checkpoints/iter_000001/policy.json", "checkpoints/iter_000001/policy.pt", "checkpoints/latest",
            "config.json", "progress.csv"]


@pytest.fixture()
def remote_run(s3, bucket, tmp_path):
    """(local run, its URI): a run as training leaves it (RLlib pickles included), uploaded."""
    run = _fake_run(tmp_path / "run")
    return run, upload_run(run.root, uri(s3, f"{bucket}/agents/run"))


def test_upload_copies_only_what_applying_reads_and_loading_by_uri_gives_the_same_agent(s3, bucket, remote_run):
    run, where = remote_run
    assert where == uri(s3, f"{bucket}/agents/run")
    assert keys(s3, f"{bucket}/agents/run") == UPLOADED  # no RLlib pickles, no temporary keys
    remote, remote_cfg = load_agent(where)
    local, local_cfg = load_agent(run.root)
    obs = _observations(50)
    np.testing.assert_array_equal(np.stack([remote.action_probs(o) for o in obs]),
                                  np.stack([local.action_probs(o) for o in obs]))
    assert remote_cfg == local_cfg and remote.spec == local.spec and remote.module.action_space.n == len(KEEP)


def test_the_checksum_guards_the_uploaded_weights(s3, bucket, remote_run):
    fs = s3[0]
    weights = f"{bucket}/agents/run/checkpoints/iter_000001/{WEIGHTS_FILE}"
    data = fs.open_input_file(weights).read()
    with fs.open_output_stream(weights) as out:
        out.write(data[: len(data) // 2])
    secret = f"s3://AKIDEXAMPLE:s3cr3t-value@{bucket}/agents/run?{s3[1]}"
    tampered = r"s3://\*\*\*@.*/iter_000001/policy.pt\?.*: contents do not match the SHA-256"
    with pytest.raises(CheckpointError, match=tampered) as refused:
        load_agent(secret)
    assert "s3cr3t" not in str(refused.value)


def test_a_pickle_uploaded_as_the_weights_is_refused_even_with_its_checksum_fixed(s3, bucket, remote_run, tmp_path):
    marker = tmp_path / "marker"
    fs, folder = s3[0], f"{bucket}/agents/run/checkpoints/iter_000001"
    buffer = io.BytesIO()
    torch.save({"x": Payload(marker)}, buffer)  # a torch file with an object that runs code
    spec = json.loads(fs.open_input_file(f"{folder}/{SPEC_FILE}").read())
    spec["weights_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    for name, data in ((WEIGHTS_FILE, buffer.getvalue()), (SPEC_FILE, json.dumps(spec).encode())):
        with fs.open_output_stream(f"{folder}/{name}") as out:
            out.write(data)
    with pytest.raises(CheckpointError, match="policy.pt.*: not a readable tensor file"):
        load_agent(remote_run[1])
    assert not marker.exists()


def test_missing_runs_and_dangling_pointers_by_uri_are_checkpoint_errors(s3, bucket, remote_run):
    with pytest.raises(CheckpointError, match=rf"s3://{bucket}/nothing-here\?.*: no such agent run directory"):
        load_agent(uri(s3, f"{bucket}/nothing-here"))
    with s3[0].open_output_stream(f"{bucket}/agents/run/checkpoints/latest") as out:
        out.write(json.dumps({"checkpoint": "iter_000009", "iteration": 9, "episodes": 9}).encode())
    with pytest.raises(CheckpointError, match="points to 'iter_000009', which is not in"):
        load_agent(remote_run[1])


def test_a_run_by_uri_is_checked_like_a_path_and_uploading_an_unfinished_run_is_refused(s3, bucket, remote_run):
    run, where = remote_run
    with pytest.raises(ConfigError, match=r"^s3://.*/agents/run\?.*already holds a training run; pass --resume"):
        check_run(RunDir(where), run.read_config(), resume=False)
    assert check_run(RunDir(where), run.read_config(), resume=True) == run.latest()
    with pytest.raises(ConfigError, match=r"--resume: s3://.*/agents/none\?.* holds no training run"):
        check_run(RunDir(uri(s3, f"{bucket}/agents/none")), run.read_config(), resume=True)
    (run.checkpoints / "latest").unlink()
    with pytest.raises(CheckpointError, match="no completed checkpoint yet"):
        upload_run(run.root, uri(s3, f"{bucket}/agents/unfinished"))
    assert keys(s3, f"{bucket}/agents/unfinished") == []


def test_agent_upload_command(s3, bucket, tmp_path, capsys):
    run = _fake_run(tmp_path / "run")
    parser = argparse.ArgumentParser()
    agent_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["agent", "upload", str(run.root), uri(s3, f"{bucket}/cli-run")])
    assert args.func(args) == 0
    assert f"neon-ray prune --agent {uri(s3, f'{bucket}/cli-run')}" in capsys.readouterr().out
    assert keys(s3, f"{bucket}/cli-run") == UPLOADED


@pytest.mark.ray
def test_prune_tasks_read_the_agent_through_its_uri(tiny_zoo, s3, bucket, tmp_path):
    """The local run is gone: every task reads the agent from the URI. Ray's workers started before this
    module set the credentials, so the URI carries them (KEY:SECRET@), which no row or message shows."""
    run = _fake_run(tmp_path / "run", zoo=str(tiny_zoo.root))
    where = f"s3://testing:testing@{bucket}/agents/run?{s3[1]}"
    upload_run(run.root, where)
    shutil.rmtree(run.root)
    frame = apply_agent(where, tolerance=5, results=uri(s3, f"{bucket}/res"), progress=False)
    assert sorted(frame["network_id"]) == sorted(tiny_zoo.network_ids(dataset=WINE))
    assert set(frame["run_id"]) == {"neon-a2c__run__a5_loops1_guard"}
    stored = read_results(uri(s3, f"{bucket}/res"))
    assert sorted(stored["network_id"]) == sorted(frame["network_id"])
    config = json.loads(stored["config"].iloc[0])
    assert config["agent"] == f"s3://***@{bucket}/agents/run?{s3[1]}" and config["checkpoint"] == "iter_000001"
    assert "testing:testing" not in stored.to_csv()
    parser = argparse.ArgumentParser()
    prune_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["prune", "--agent", where, "--tolerance", "5", "--results", uri(s3, f"{bucket}/res2"),
                              "--no-timing"])
    assert args.func(args) == 0 and len(read_results(uri(s3, f"{bucket}/res2"))) == len(frame)


@pytest.mark.ray
def test_evaluate_reads_the_agent_through_its_uri(tiny_zoo, s3, bucket, tmp_path):
    run = _fake_run(tmp_path / "run", zoo=str(tiny_zoo.root))
    where = f"s3://testing:testing@{bucket}/agents/eval-run?{s3[1]}"
    upload_run(run.root, where)
    shutil.rmtree(run.root)
    parser = argparse.ArgumentParser()
    evaluate_cmd.register(parser.add_subparsers())
    res = tmp_path / "res"
    args = parser.parse_args(["evaluate", "--agent", where, "--zoo", str(tiny_zoo.root), "--datasets", WINE,
                              "--tolerances", "5", "--results", str(res), "--baselines", "random", "--no-timing"])
    assert args.func(args) == 0
    doc = json.loads((res / "_evaluation" / "evaluation.json").read_text())
    assert doc["agent"] == f"s3://***@{bucket}/agents/eval-run?{s3[1]}" and doc["networks"] == 3
    assert sorted(read_results(res).query("method == 'neon-a2c'")["network_id"]) == sorted(tiny_zoo.network_ids(dataset=WINE))
