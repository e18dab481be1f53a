"""A real 2 tolerances x 2 rewards x 2 seeds sweep on the tiny zoo: stopped by SIGTERM, resumed, ranked, its best agent.

One sweep serves every test here (it is the slow part): `neon-ray tune` runs in a driver
subprocess joined to the session's Ray, is sent SIGTERM once the first trial reported, and is
then resumed in this process.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from neon_ray.agent.config import AgentTrainConfig, default_agent_episode
from neon_ray.agent.run_dir import RunDir, load_agent
from neon_ray.pruning.finetune import FinetuneConfig
from neon_ray.runtime.ray_session import LOOPBACK
from neon_ray.tune.sweep import (
    SUMMARY_COLUMNS, Dim, RewardVariant, SweepConfig, evaluate_best, format_trials, load_sweep, read_summary,
    resume_sweep, run_sweep,
)
from neon_ray.tune.table import BEST_SOURCE
from neon_ray.tune.trial import AGENT_DIR

WINE, BC = "sklearn:wine", "sklearn:breast_cancer"
ITERATIONS = 2
SWEEP_ARGS = ["--name", "t", "--validate-on", BC, "--tolerances", "5,50", "--grid-reward", "neon",
              "--grid-reward", "composite:w_params=2", "--samples", "2", "--iterations", str(ITERATIONS),
              "--report-every", "1", "--keep-rates", "1.0,0.6", "--loops", "1", "--warmup", "0", "--batch-steps", "2",
              "--finetune-epochs", "1", "--finetune-rows", "128"]
CLI = "import sys; from neon_ray.cli import main; sys.exit(main(sys.argv[1:]))"

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def killed(ray_session, tiny_zoo, tmp_path_factory):
    """The sweep's first run: a driver subprocess on the session's Ray, sent SIGTERM after the first report."""
    out = tmp_path_factory.mktemp("sweeps")
    # the session's Ray listens on loopback only: Ray must not swap 127.0.0.1 for the machine's outward
    # address when the driver joins (ray_session's module docstring)
    port = ray_session.get_runtime_context().gcs_address.rsplit(":", 1)[1]
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    argv = [sys.executable, "-c", CLI, "tune", "--zoo", str(tiny_zoo.root), "--out", str(out), *SWEEP_ARGS,
            "--address", f"{LOOPBACK}:{port}"]
    with open(out / "stdout", "w") as stdout, open(out / "stderr", "w") as stderr:
        driver = subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=env)
        try:
            _wait_for(lambda: any((out / "t").glob("*/checkpoint_000000")) or driver.poll() is not None, 180)
            driver.send_signal(signal.SIGTERM)
            code = driver.wait(timeout=120)
        finally:
            if driver.poll() is None:
                driver.kill()
    return code, (out / "stdout").read_text(), (out / "stderr").read_text(), out / "t"


def _wait_for(condition, seconds: float) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def resumed(killed):
    return resume_sweep(killed[3], progress=False)


def test_a_stopped_sweep_says_which_trials_are_unfinished(killed):
    code, stdout, stderr, experiment = killed
    table = pd.read_parquet(experiment / "summary.parquet")
    unfinished = table.loc[table["status"] == "unfinished", "trial"]
    assert code == 130, stderr
    assert len(table) == 8 and len(unfinished) >= 1  # trials that never started are listed too
    assert f"{len(unfinished)} trial(s) unfinished" in stdout and all(t in stdout for t in unfinished)
    assert f"neon-ray tune --resume {experiment}" in stdout
    assert f"TensorBoard: tensorboard --logdir {experiment}" in stderr
    assert "score x" in stderr and "reduction x" in stderr and "dacc" in stderr  # a progress line per report


def test_the_resumed_sweep_finishes_every_trial_with_each_iteration_once(resumed):
    table = resumed.table
    assert list(table.columns) == list(SUMMARY_COLUMNS) and len(table) == 8
    assert (table["status"] == "finished").all() and (table["iterations"] == ITERATIONS).all()
    configurations = table.groupby(["tolerance", "reward_params"])["seed"].apply(sorted)
    assert len(configurations) == 4 and all(seeds == [0, 1] for seeds in configurations)
    for trial_dir in table["trial_dir"]:
        tune_rows = [json.loads(line) for line in (Path(trial_dir) / "result.json").read_text().splitlines()]
        assert [r["iteration"] for r in tune_rows] == list(range(1, ITERATIONS + 1)), trial_dir
        assert [r["training_iteration"] for r in tune_rows] == list(range(1, ITERATIONS + 1))
        run = RunDir(Path(trial_dir) / AGENT_DIR)
        assert [int(r["iteration"]) for r in run.progress_rows()] == list(range(1, ITERATIONS + 1))
        assert any(Path(trial_dir).glob("events.out.tfevents*")) and any(run.tensorboard.glob("events.out.tfevents*"))
    pd.testing.assert_frame_equal(read_summary(resumed.experiment_dir), table)
    assert format_trials(table).splitlines()[1].startswith(table["trial"].iloc[0][:56])


def test_tune_ranks_trials_by_the_validation_score(resumed):
    best = resumed.grid.get_best_result()  # metric and mode come from the sweep's TuneConfig
    assert best.metrics["score"] >= 1.0 and "reduction_mean" in best.metrics
    assert resumed.table["score"].iloc[0] == pytest.approx(resumed.table["score"].max())
    assert resumed.grid.get_best_result(metric="score", mode="max", scope="all").metrics["score"] \
        == pytest.approx(resumed.table["score"].max())


def test_the_best_trials_agent_is_a_run_directory_prune_accepts(resumed, tmp_path):
    best = resumed.best
    source = json.loads((best / BEST_SOURCE).read_text())
    assert best == resumed.experiment_dir / "best" and source["trial"] == resumed.table["trial"].iloc[0]
    policy, cfg = load_agent(best)
    assert cfg.episode.loops == 1 and policy.spec["format"] == "neon-ray-policy"
    assert not list(best.rglob("*.pkl"))  # the copy holds no pickle
    sweep = load_sweep(resumed.experiment_dir)
    # the tiny zoo has no third dataset to hold out: the evaluation's mechanics, on wine
    held_out = replace(sweep, base=replace(sweep.base, holdout=(WINE,)), final_tolerances=(50.0,), final_baselines=())
    evaluation = evaluate_best(held_out, best)
    assert evaluation.out == resumed.experiment_dir / "heldout" and (evaluation.out / "evaluation.json").is_file()
    assert evaluation.tables[50.0]["networks"].iloc[0] == 3


def test_optuna_suggests_and_asha_stops_trials_of_half_a_cpu(ray_session, tiny_zoo, tmp_path):
    pytest.importorskip("optuna")
    episode = default_agent_episode(keep_rates=(1.0, 0.6), loops=1, finetune=FinetuneConfig(
        max_epochs=1, patience=1, max_train_rows=128, max_val_rows=128))
    base = AgentTrainConfig(zoo=str(tiny_zoo.root), episode=episode, warmup_episodes=0, train_batch_size=2)
    cfg = SweepConfig(base=base, out=str(tmp_path), name="o", tolerances=(50.0,), rewards=(RewardVariant("neon"),),
                      dims=(Dim.parse("lr=1e-4:1e-2:log"),), search="optuna", trials=2, scheduler="asha",
                      grace_reports=1, iterations=2, report_every=1, validation_datasets=(BC,),
                      cpus_per_trial=0.5)
    result = run_sweep(cfg, progress=False)
    table = result.table
    assert len(table) == 2 and table["status"].isin(["finished", "stopped early"]).all()
    assert table["lr"].between(1e-4, 1e-2).all() and table["lr"].nunique() == 2
    assert result.grid.get_best_result().metrics["score"] == pytest.approx(table["score"].max())
    resources = [json.loads((Path(d) / "params.json").read_text()) for d in table["trial_dir"]]
    assert all(set(r) == {"tolerance", "reward", "lr"} for r in resources)  # Optuna's draws, no repeat axis
