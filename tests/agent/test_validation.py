"""Validation settings, the `best` pointer and checkpoint pruning, without Ray (the run itself: test_training.py)."""
from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

from neon_ray.agent.config import AgentTrainConfig
from neon_ray.agent.run_dir import PROGRESS_COLUMNS, RunDir, agent_checkpoint
from neon_ray.agent.training import validation_tolerances
from neon_ray.cli import train_cmd
from neon_ray.errors import CheckpointError, ConfigError
from neon_ray.runtime.files import atomic_write_text


def _manifest() -> pd.DataFrame:
    rows = [{"network_id": f"{d}__s0__n{i:03d}", "dataset": d, "role": "test" if i == 0 else "train", "depth": 1}
            for d in ("a", "b", "c", "d") for i in range(3)]
    return pd.DataFrame(rows)


def test_validation_datasets_are_left_out_of_training_but_not_of_reporting():
    cfg = AgentTrainConfig(zoo="z", holdout=("d",), validation_datasets=("c",), validate_every=5)
    sel = cfg.select(_manifest())
    assert sel.protocol == "B" and sel.train_datasets == ("a", "b") and sel.eval_datasets == ("d",)
    assert not any(i.startswith("c") for i in sel.train_ids) and len(sel.train_ids) == 4
    back = AgentTrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back.validation_datasets == ("c",) and back.validate_every == 5


@pytest.mark.parametrize("kw, message", [
    ({"validation_datasets": ("c",)}, r"needs both validation_datasets \(got \['c'\]\) and validate_every >= 1 \(got 0\)"),
    ({"validate_every": 3}, "needs both validation_datasets"),
    ({"validation_datasets": ("c",), "validate_every": -1}, r"validate_every must be an integer in \[0, inf\)"),
    ({"validation_datasets": ("d",), "validate_every": 1, "holdout": ("d",)}, r"\['d'\] are also in holdout"),
    ({"validation_datasets": ("a",), "validate_every": 1, "datasets": ("a", "b")}, r"\['a'\] are also in datasets"),
    ({"validation_datasets": "a", "validate_every": 1}, "not a single string"),
])
def test_bad_validation_settings_are_config_errors(kw, message):
    with pytest.raises(ConfigError, match=message):
        AgentTrainConfig(zoo="z", **kw)


def test_unknown_or_all_covering_validation_datasets_are_refused():
    with pytest.raises(ConfigError, match=r"validation_datasets: \['zz'\] not in the zoo, which has datasets \['a', 'b', 'c', 'd'\]"):
        AgentTrainConfig(zoo="z", validation_datasets=("zz",), validate_every=1).select(_manifest())
    with pytest.raises(ConfigError, match="cover every training dataset"):
        AgentTrainConfig(zoo="z", holdout=("d",), validation_datasets=("a", "b", "c"), validate_every=1).select(_manifest())


def test_validation_tolerances_are_the_reported_ones_clipped_into_the_range():
    assert validation_tolerances(5.0) == (5.0,)
    assert validation_tolerances((1.0, 50.0)) == (1.0, 5.0, 50.0)
    assert validation_tolerances((2.0, 10.0)) == (2.0, 5.0, 10.0)
    assert validation_tolerances((10.0, 20.0)) == (10.0, 20.0)


def _checkpoints(run: RunDir, *iterations: int) -> None:
    for i in iterations:
        (run.checkpoints / f"iter_{i:06d}").mkdir(parents=True)
    atomic_write_text(run.checkpoints / "latest", json.dumps({"checkpoint": f"iter_{iterations[-1]:06d}",
                                                              "iteration": iterations[-1], "episodes": 1}))


def test_pruning_keeps_the_newest_and_the_best_checkpoint(tmp_path):
    run = RunDir(tmp_path / "run")
    _checkpoints(run, 1, 2, 3, 4)
    assert run.best() is None and agent_checkpoint_path(run) == "iter_000004"
    run.set_best(2, 5, 1.7, keep=2)  # moving best prunes what nothing protects any more
    assert _kept(run) == ["iter_000002", "iter_000003", "iter_000004"]
    _checkpoints(run, 5)
    run._prune(2, "iter_000005")  # as save_checkpoint does
    assert _kept(run) == ["iter_000002", "iter_000004", "iter_000005"]
    assert run.best() == {"checkpoint": "iter_000002", "iteration": 2, "episodes": 5, "val_score": 1.7}
    assert agent_checkpoint_path(run) == "iter_000002"  # best, not latest
    run.set_best(5, 9, 2.0, keep=2)
    assert _kept(run) == ["iter_000004", "iter_000005"]
    with pytest.raises(CheckpointError, match="no such checkpoint to mark as best"):
        run.set_best(1, 1, 3.0, keep=2)
    run.clear_checkpoints()
    assert run.best() is None and run.latest() is None


def agent_checkpoint_path(run: RunDir) -> str:
    atomic_write_text(run.config_path, json.dumps({"config": AgentTrainConfig(zoo="z").to_dict(), "selection": {}}))
    return agent_checkpoint(run.root)[0].name


def _kept(run: RunDir) -> list[str]:
    return sorted(p.name for p in run.checkpoints.glob("iter_*"))


def test_val_score_column_is_added_to_an_old_progress_file(tmp_path):
    run = RunDir(tmp_path / "run")
    old = [c for c in PROGRESS_COLUMNS if c != "val_score"]
    run.root.mkdir()
    run.progress_path.write_text(",".join(old) + "\n" + ",".join("1" for _ in old) + "\n")
    assert pd.read_csv(run.progress_path)["iteration"].tolist() == [1]
    run.append_progress({c: 2 for c in old})
    run.set_val_score(2, 1.25)
    frame = pd.read_csv(run.progress_path)
    assert list(frame.columns) == list(PROGRESS_COLUMNS) and frame["iteration"].tolist() == [1, 2]
    assert pd.isna(frame["val_score"].iloc[0]) and frame["val_score"].iloc[1] == 1.25


def test_cli_flags_set_the_validation_settings():
    parser = argparse.ArgumentParser()
    train_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["train", "--zoo", "z", "--out", "o", "--holdout", "d", "--validate-on", "b,c",
                              "--validate-every", "20"])
    cfg = train_cmd.agent_config_from_args(args, out="o")
    assert cfg.validation_datasets == ("b", "c") and cfg.validate_every == 20 and cfg.holdout == ("d",)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--out", "o", "--validate-every", "0"])
