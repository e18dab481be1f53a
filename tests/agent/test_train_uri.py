"""Training into a URI: a real S3-compatible server on loopback (tests/conftest_s3.py). The run is
trained in a local staging copy and published as it goes (checkpoints whole, then the run's files,
pointers last; pruned checkpoints deleted there), resumed from the URI, and read back by prune."""
from __future__ import annotations

import argparse
import json
import shutil
import uuid
from dataclasses import replace

import pandas as pd
import pytest

from conftest_s3 import bucket, keys, s3, uri  # noqa: F401  (fixtures)
from neon_ray.agent.config import AgentTrainConfig, default_agent_episode
from neon_ray.agent.export import SPEC_FILE
from neon_ray.agent.run_dir import RunDir, load_agent, publish_run, upload_run
from neon_ray.agent.published import staged_run
from neon_ray.agent.training import train_agent
from neon_ray.cli import prune_cmd, train_cmd
from neon_ray.errors import CheckpointError, ConfigError
from neon_ray.results.store import read_results
from neon_ray.tune.trial import roll_back
from test_hardening_agent import TINY_FINETUNE, WINE, _fake_run


def _cli(module, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return args.func(args)


def _checkpoints(found: list[str]) -> set[str]:
    return {k.split("/")[1] for k in found if k.startswith("checkpoints/iter_")}


def test_publishing_moves_pointers_last_and_deletes_what_the_staging_copy_pruned(s3, bucket, tmp_path):
    run = _fake_run(tmp_path / "run")
    where = uri(s3, f"{bucket}/run")
    done: set[str] = set()
    publish_run(run, where, done)
    assert done == {"iter_000001"} and _checkpoints(keys(s3, f"{bucket}/run")) == {"iter_000001"}
    assert any(k.endswith(".pkl") for k in keys(s3, f"{bucket}/run"))  # RLlib's checkpoint too: resumable
    # a second checkpoint whose export is broken: refused before any of it is written, the old pointer stays
    shutil.copytree(run.checkpoints / "iter_000001", run.checkpoints / "iter_000002")
    (run.checkpoints / "iter_000002" / SPEC_FILE).write_text("{")
    (run.checkpoints / "latest").write_text(json.dumps({"checkpoint": "iter_000002", "iteration": 2, "episodes": 2}))
    with pytest.raises(CheckpointError):
        publish_run(run, where, done)
    assert RunDir(where).latest()["checkpoint"] == "iter_000001" and load_agent(where)[1] == run.read_config()
    assert _checkpoints(keys(s3, f"{bucket}/run")) == {"iter_000001"}
    # repaired, and the first pruned locally: published, pointer moved, the old one deleted there
    shutil.copy2(run.checkpoints / "iter_000001" / SPEC_FILE, run.checkpoints / "iter_000002" / SPEC_FILE)
    shutil.rmtree(run.checkpoints / "iter_000001")
    publish_run(run, where, done)
    assert done == {"iter_000002"} and _checkpoints(keys(s3, f"{bucket}/run")) == {"iter_000002"}
    assert RunDir(where).latest()["iteration"] == 2 and not [k for k in keys(s3, bucket) if "/." in k or k[0] == "."]


def test_a_trial_rolled_back_in_its_staging_copy_is_rolled_back_at_the_uri(s3, bucket, tmp_path):
    """What a restored sweep trial does with a URI storage (tune/trial.py): fetch, roll back to its last report, publish."""
    run = _fake_run(tmp_path / "run")
    shutil.copytree(run.checkpoints / "iter_000001", run.checkpoints / "iter_000002")
    reported = {"checkpoint": "iter_000001", "iteration": 1, "episodes": 1}
    (run.checkpoints / "latest").write_text(json.dumps({"checkpoint": "iter_000002", "iteration": 2, "episodes": 2}))
    (run.checkpoints / "best").write_text(json.dumps({"checkpoint": "iter_000002", "iteration": 2, "episodes": 2,
                                                      "val_score": 1.5}))
    where = uri(s3, f"{bucket}/trial/agent")
    publish_run(run, where, set())
    assert _checkpoints(keys(s3, f"{bucket}/trial/agent")) == {"iter_000001", "iter_000002"}
    with staged_run(where, tmp_path / "work", fetch=True) as staged:
        assert staged.done == {"iter_000001", "iter_000002"}
        assert roll_back(staged, {"latest": reported, "best": None}) == 1
        staged.publish()
    assert _checkpoints(keys(s3, f"{bucket}/trial/agent")) == {"iter_000001"}
    assert RunDir(where).latest() == reported and RunDir(where).best() is None
    assert list((tmp_path / "work").iterdir()) == []


@pytest.mark.ray
def test_resuming_a_run_uploaded_without_rllibs_checkpoint_is_refused(s3, bucket, tiny_zoo, tmp_path):
    run = _fake_run(tmp_path / "run", zoo=str(tiny_zoo.root))
    selection = run.read_config().select(tiny_zoo)
    run.write_config(run.read_config().resolve(selection, tiny_zoo.manifest()), selection)  # as training saves it
    where = upload_run(run.root, uri(s3, f"{bucket}/uploaded"))  # the policy only
    cfg = replace(run.read_config(), out=where)
    with pytest.raises(ConfigError, match="already holds a training run"):
        train_agent(cfg, progress=False)
    with pytest.raises(CheckpointError, match="holds the agent's policy only .* only a run trained into a URI resumes"):
        train_agent(cfg, resume=True, progress=False, work_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the staging copy is gone


# ---------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def trained(tiny_zoo, s3, tmp_path_factory):
    """A validated run trained into a URI; the URI carries the credentials so that Ray's workers (started
    before this module set them in the environment) read it too."""
    name = f"neon-{uuid.uuid4().hex[:12]}"
    s3[0].create_dir(name)
    where = f"s3://testing:testing@{name}/agents/run?{s3[1]}"
    work = tmp_path_factory.mktemp("work")
    episode = default_agent_episode(tolerance=50.0, keep_rates=(1.0, 0.6), loops=1, finetune=TINY_FINETUNE)
    cfg = AgentTrainConfig(zoo=str(tiny_zoo.root), out=where, episode=episode, warmup_episodes=0, episodes=6,
                           train_batch_size=3, checkpoint_every=1, keep_checkpoints=2, validation_datasets=(WINE,),
                           validate_every=2)
    return name, where, work, train_agent(cfg, progress=False, work_dir=work)


@pytest.mark.ray
def test_a_run_trained_into_a_uri_is_published_there_whole(s3, trained):
    name, where, work, result = trained
    found = keys(s3, f"{name}/agents/run")
    run = RunDir(where)
    latest, best = run.latest(), run.best()
    assert result.run_dir == where and result.checkpoint == f"s3://testing:testing@{name}/agents/run/checkpoints/" \
        f"{latest['checkpoint']}?{s3[1]}" and latest["iteration"] == result.iterations >= 2
    newest = {f"iter_{i:06d}" for i in (result.iterations - 1, result.iterations)}
    assert _checkpoints(found) == newest | {best["checkpoint"]}  # keep_checkpoints=2, plus the best: pruned there too
    assert {"config.json", "progress.csv", "checkpoints/latest", "checkpoints/best"} <= set(found)
    assert any(k.startswith("tensorboard/events.out.tfevents") for k in found) and not any("/." in k for k in found)
    rows = run.progress_rows()
    assert [int(r["iteration"]) for r in rows] == list(range(1, result.iterations + 1))
    assert pd.to_numeric(pd.Series([r["val_score"] for r in rows])).notna().sum() >= result.iterations // 2
    assert "testing:testing" not in s3[0].open_input_file(f"{name}/agents/run/config.json").read().decode()
    assert list(work.iterdir()) == []  # the staging copy is deleted
    policy, cfg = load_agent(where)
    assert cfg.validation_datasets == (WINE,) and policy.module.action_space.n == 2


@pytest.mark.ray
def test_a_run_by_uri_resumes_from_the_uri_and_prune_reads_it(s3, tiny_zoo, trained, capsys):
    name, where, work, first = trained
    with pytest.raises(ConfigError, match=r"s3://\*\*\*@.*already holds a training run; pass --resume"):
        _cli(train_cmd, "train", "--zoo", str(tiny_zoo.root), "--out", where)
    assert _cli(train_cmd, "train", "--out", where, "--resume", "--episodes", str(first.episodes + 3),
                "--work-dir", str(work), "--quiet") == 0
    assert f"checkpoint: s3://***@{name}/agents/run/checkpoints/iter_" in capsys.readouterr().out
    run = RunDir(where)
    latest, rows = run.latest(), run.progress_rows()
    assert latest["iteration"] > first.iterations and latest["episodes"] >= first.episodes + 3
    assert [int(r["iteration"]) for r in rows] == list(range(1, latest["iteration"] + 1))
    found = keys(s3, f"{name}/agents/run")
    assert len([k for k in found if k.startswith("tensorboard/events.out.tfevents")]) == 2
    assert f"iter_{latest['iteration']:06d}" in _checkpoints(found) and len(_checkpoints(found)) <= 3
    assert list(work.iterdir()) == []
    results = uri(s3, f"{name}/results")
    assert _cli(prune_cmd, "prune", "--agent", where, "--tolerance", "50", "--results", results, "--no-timing") == 0
    stored = read_results(results)
    assert sorted(stored["network_id"]) == sorted(tiny_zoo.network_ids(role="test")) and "testing:testing" not in stored.to_csv()
    assert json.loads(stored["config"].iloc[0])["checkpoint"] == run.best()["checkpoint"]
