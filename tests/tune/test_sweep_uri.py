"""Sweeps by URI are refused with one line, before Ray starts or the storage is touched: each trial
writes its agent run directory into Tune's trial folder as files, so a sweep's --out is a path."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from conftest_s3 import bucket, keys, s3, uri  # noqa: F401  (fixtures)
from neon_ray.agent.config import AgentTrainConfig, default_agent_episode
from neon_ray.cli import tune_cmd
from neon_ray.errors import ConfigError
from neon_ray.tune.sweep import SweepConfig, resume_sweep, run_sweep

# nothing listens on port 1: a sweep that contacted this storage would fail with "cannot be reached"
UNREACHABLE = "s3://AKIDEXAMPLE:s3cr3t-value@bucket/sweeps?endpoint_override=127.0.0.1:1&scheme=http"
REFUSED = r"sweeps are stored on a path \(local, or a filesystem every node shares\), not a URI"


def test_a_uri_out_is_refused_before_the_storage_is_contacted():
    base = AgentTrainConfig(zoo="no-such-zoo", episode=default_agent_episode(loops=2))
    cfg = SweepConfig(base=base, out=UNREACHABLE, validation_datasets=("sklearn:wine",))
    refusal = rf"^--out s3://\*\*\*@bucket/sweeps\?.*: {REFUSED}.*neon-ray agent upload"
    with pytest.raises(ConfigError, match=refusal) as refused:
        run_sweep(cfg)
    assert "s3cr3t" not in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(ConfigError, match=rf"^--resume s3://\*\*\*@bucket/sweeps/sweep\?.*: {REFUSED}"):
        resume_sweep(UNREACHABLE.replace("/sweeps?", "/sweeps/sweep?"))


def test_the_tune_command_refuses_a_uri_out_and_writes_nothing(s3, bucket, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser()
    tune_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["tune", "--zoo", str(tmp_path / "zoo"), "--out", uri(s3, f"{bucket}/sweeps"),
                              "--validate-on", "sklearn:wine"])
    with pytest.raises(ConfigError, match=REFUSED):
        args.func(args)
    assert keys(s3, bucket) == [] and list(Path(tmp_path).iterdir()) == []
