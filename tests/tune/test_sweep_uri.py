"""Sweeps stored by URI, on a real S3-compatible server on loopback (tests/conftest_s3.py): Tune's
experiment state, every trial's agent run (published from the trial's staging copy) and neon-ray's
own files go there; a sweep stopped after its first report resumes from the URI, its trial rolled
back to that report; the best agent, its held-out evaluation and the report read it back."""
from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from conftest_s3 import keys, s3, uri  # noqa: F401  (fixtures)
from neon_ray.agent.config import AgentTrainConfig, default_agent_episode
from neon_ray.agent.run_dir import RunDir, load_agent
from neon_ray.cli import report_cmd, tune_cmd
from neon_ray.errors import ConfigError
from neon_ray.pruning.finetune import FinetuneConfig
from neon_ray.runtime.files import join, read_bytes
from neon_ray.tune.sweep import RewardVariant, SweepConfig, evaluate_best, load_sweep, read_summary, resume_sweep, run_sweep

WINE, BC = "sklearn:wine", "sklearn:breast_cancer"
ITERATIONS = 3
# nothing listens on port 1: a sweep that contacted this storage fails with "cannot be reached"
UNREACHABLE = "s3://AKIDEXAMPLE:s3cr3t-value@bucket/sweeps?endpoint_override=127.0.0.1:1&scheme=http"


def _base(zoo: str) -> AgentTrainConfig:
    episode = default_agent_episode(keep_rates=(1.0, 0.6), loops=1, finetune=FinetuneConfig(
        max_epochs=1, patience=1, max_train_rows=128, max_val_rows=128))
    return AgentTrainConfig(zoo=zoo, episode=episode, warmup_episodes=0, train_batch_size=2)


def test_an_unreachable_uri_is_refused_in_one_line_without_its_secret(tmp_path):
    cfg = SweepConfig(base=_base(str(tmp_path)), out=UNREACHABLE, validation_datasets=(WINE,))
    with pytest.raises(ConfigError, match=r"^sweep output directory s3://\*\*\*@bucket/sweeps\?.*cannot be reached") \
            as refused:
        run_sweep(cfg)
    assert "s3cr3t" not in str(refused.value) and "\n" not in str(refused.value)


def _stop_after_first_report(s3, prefix: str, stop: threading.Event) -> None:
    """SIGUSR1 to this process (Tune's own stop signal, as SIGTERM becomes in a sweep) once a trial reported."""
    while not stop.is_set():
        if any("/checkpoint_000000/" in k for k in keys(s3, prefix)):
            os.kill(os.getpid(), signal.SIGUSR1)
            return
        time.sleep(0.2)


@pytest.fixture(scope="module")
def sweep(ray_session, tiny_zoo, s3, tmp_path_factory):
    """One trial of ITERATIONS, stopped after its first report, then resumed; the URIs carry the credentials
    so that Ray's workers (started before this module set them in the environment) reach the store too."""
    name = f"neon-{uuid.uuid4().hex[:12]}"
    s3[0].create_dir(name)
    out = f"s3://testing:testing@{name}/sweeps?{s3[1]}"
    work = tmp_path_factory.mktemp("work")
    cfg = SweepConfig(base=_base(str(tiny_zoo.root)), out=out, name="u", tolerances=(50.0,),
                      rewards=(RewardVariant("neon"),), iterations=ITERATIONS, report_every=1, validation_datasets=(BC,))
    stop, handler = threading.Event(), signal.getsignal(signal.SIGUSR1)
    stopper = threading.Thread(target=_stop_after_first_report, args=(s3, f"{name}/sweeps/u", stop), daemon=True)
    stopper.start()
    try:
        first = run_sweep(cfg, progress=False, work_dir=work)
    finally:
        stop.set()
        stopper.join()
        signal.signal(signal.SIGUSR1, handler)
    resumed = resume_sweep(f"s3://testing:testing@{name}/sweeps/u?{s3[1]}", progress=False, work_dir=work)
    return name, work, first, resumed


@pytest.mark.ray
def test_a_sweep_by_uri_stops_and_resumes_with_each_iteration_once(s3, sweep):
    name, work, first, resumed = sweep
    assert first.unfinished == list(first.table["trial"]), first.table  # stopped after its first report
    table = resumed.table
    assert len(table) == 1 and (table["status"] == "finished").all() and (table["iterations"] == ITERATIONS).all()
    trial = table["trial"].iloc[0]
    assert table["trial_dir"].iloc[0] == f"s3://{name}/sweeps/u/{trial}?{s3[1]}"  # no credentials kept
    run = RunDir(f"s3://testing:testing@{name}/sweeps/u/{trial}/agent?{s3[1]}")
    assert [int(r["iteration"]) for r in run.progress_rows()] == list(range(1, ITERATIONS + 1))
    tune_rows = [json.loads(line) for line in read_bytes(uri(s3, f"{name}/sweeps/u/{trial}/result.json")).decode().splitlines()]
    assert [r["iteration"] for r in tune_rows] == list(range(1, ITERATIONS + 1))
    found = keys(s3, f"{name}/sweeps/u")
    for expected in ("sweep.json", "summary.parquet", "tuner.pkl", f"{trial}/agent/config.json", f"{trial}/agent/checkpoints/best",
                     "best/sweep_trial.json", "best/checkpoints/latest"):
        assert expected in found, sorted(found)
    assert any(k.startswith("experiment_state") for k in found)
    agent = {k.split("/")[3] for k in found if k.startswith(f"{trial}/agent/checkpoints/iter_")}
    assert f"iter_{ITERATIONS:06d}" in agent and len(agent) <= 3 and run.latest()["iteration"] == ITERATIONS
    assert not [k for k in found if "/." in k and "validate_storage_marker" not in k]  # no temporary key left
    for key in ("sweep.json", "summary.parquet", f"{trial}/agent/config.json"):
        assert b"testing:testing" not in s3[0].open_input_file(f"{name}/sweeps/u/{key}").read()
    assert list(work.iterdir()) == []  # every staging copy is gone
    assert load_sweep(resumed.experiment_dir).name == "u"
    policy, cfg = load_agent(resumed.best)
    assert cfg.episode.loops == 1 and policy.spec["format"] == "neon-ray-policy"
    assert read_summary(resumed.experiment_dir)["score"].iloc[0] == pytest.approx(table["score"].iloc[0])


@pytest.mark.ray
def test_the_best_agent_by_uri_is_evaluated_and_reported(s3, sweep, tmp_path, monkeypatch):
    """With the credentials in the URI only: the table's URIs keep none, so they are read under the sweep's."""
    name, work, first, resumed = sweep
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    loaded = load_sweep(resumed.experiment_dir)
    held_out = replace(loaded, base=replace(loaded.base, holdout=(WINE,)), final_tolerances=(50.0,), final_baselines=())
    evaluation = evaluate_best(held_out, resumed.best, work_dir=work)
    assert evaluation.out == join(resumed.experiment_dir, "heldout") and evaluation.tables[50.0]["networks"].iloc[0] == 3
    assert "heldout/evaluation.json" in keys(s3, f"{name}/sweeps/u") and list(work.iterdir()) == []
    parser = argparse.ArgumentParser()
    report_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["report", f"s3://testing:testing@{name}/sweeps/u?{s3[1]}", "--out", str(tmp_path / "report")])
    assert args.func(args) == 0
    page = (tmp_path / "report" / "report.html").read_text()
    assert resumed.table["trial"].iloc[0] in page and "The best agent on the held-out datasets" in page


@pytest.mark.ray
def test_the_tune_command_takes_a_uri_out_and_refuses_an_existing_sweep(s3, sweep, tiny_zoo, tmp_path):
    name = sweep[0]
    parser = argparse.ArgumentParser()
    tune_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["tune", "--zoo", str(tiny_zoo.root), "--out", uri(s3, f"{name}/sweeps"), "--name", "u",
                              "--validate-on", BC, "--work-dir", str(tmp_path)])
    with pytest.raises(ConfigError, match=rf"^s3://{name}/sweeps/u\?.* exists already; .*--resume s3://{name}/sweeps/u"):
        args.func(args)
    assert Path(tmp_path).is_dir() and list(Path(tmp_path).iterdir()) == []
