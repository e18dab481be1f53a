"""Reward trade-off sweeps with Ray Tune: grid, labels, a real 2-trial sweep with its table and TensorBoard files."""
from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from neon_ray.agent.config import AgentTrainConfig, default_agent_episode
from neon_ray.errors import ConfigError
from neon_ray.pruning.episode_config import EpisodeConfig
from neon_ray.pruning.finetune import FinetuneConfig
from neon_ray.nets.spec import SamplerConfig
from neon_ray.nets.training import TrainConfig
from neon_ray.tune.sweep import (
    SUMMARY_COLUMNS,
    RewardVariant,
    SweepConfig,
    format_trials,
    read_summary,
    run_sweep,
    trial_label,
)
from neon_ray.zoo.build import build_zoo
from neon_ray.zoo.config import ZooConfig

WINE = "sklearn:wine"


def test_reward_variants_parse_and_label():
    v = RewardVariant.parse("composite:w_params=2,penalty=0.5,metric=f1")
    assert v == RewardVariant("composite", {"w_params": 2.0, "penalty": 0.5, "metric": "f1"})
    assert v.label == "composite(metric=f1,penalty=0.5,w_params=2)"
    assert RewardVariant.parse("neon") == RewardVariant("neon", {})
    with pytest.raises(ConfigError, match="expected NAME or NAME:key=value"):
        RewardVariant.parse("composite:w_params")
    with pytest.raises(ConfigError, match="unknown reward 'neo'"):
        RewardVariant.parse("neo")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['w'\]"):
        RewardVariant.parse("composite:w=1")


def test_trial_labels_show_what_the_grid_varies():
    assert trial_label(EpisodeConfig(tolerance=5.0, reward="neon", reward_params={"scale": 64000.0})) == "tol=5_neon"
    assert trial_label(EpisodeConfig(tolerance=[1.0, 50.0], reward="composite", reward_params={"w_params": 3.0})) \
        == "tol=1-50_composite(w_params=3)"


def test_grid_is_tolerance_times_reward():
    base = AgentTrainConfig(zoo="z", episode=default_agent_episode(finetune=FinetuneConfig(max_epochs=1)))
    cfg = SweepConfig(base=base, out="o", tolerances=(1.0, (1.0, 50.0)),
                      rewards=(RewardVariant("neon"), RewardVariant("composite", {"w_params": 2.0})))
    grid = cfg.trial_configs()
    assert [(c.episode.tolerance, c.episode.reward, c.episode.reward_params) for c in grid] == [
        (1.0, "neon", None), (1.0, "composite", {"w_params": 2.0}),
        ((1.0, 50.0), "neon", None), ((1.0, 50.0), "composite", {"w_params": 2.0})]
    assert all(c.episode.finetune == base.episode.finetune for c in grid)


@pytest.mark.parametrize("kw, message", [
    ({"tolerances": ()}, "tolerances is empty"),
    ({"tolerances": (-1.0,)}, "tolerance must be a number >= 0"),
    ({"rewards": ()}, "rewards is empty"),
    ({"iterations": 0}, "iterations must be an integer >= 1"),
    ({"name": "a/b"}, "must use letters, digits"),
])
def test_bad_sweeps_are_config_errors(kw, message):
    with pytest.raises(ConfigError, match=message):
        SweepConfig(base=AgentTrainConfig(zoo="z"), out="o", **kw)


@pytest.fixture(scope="module")
def zoo_dir(tiny_zoo):
    return str(tiny_zoo.root)


@pytest.mark.ray
def test_two_trial_sweep_writes_table_and_tensorboard_files(zoo_dir, tmp_path, caplog):
    episode = default_agent_episode(keep_rates=(1.0, 0.6), loops=1,
                                    finetune=FinetuneConfig(max_epochs=1, patience=1, max_train_rows=128, max_val_rows=128))
    base = AgentTrainConfig(zoo=zoo_dir, episode=episode, warmup_episodes=0, train_batch_size=2)
    cfg = SweepConfig(base=base, out=str(tmp_path / "sweeps"), name="t", tolerances=(50.0,),
                      rewards=(RewardVariant("neon"), RewardVariant("composite", {"w_params": 2.0})), iterations=1)
    caplog.set_level(logging.INFO, logger="neon_ray")
    result = run_sweep(cfg)
    out = format_trials(result.table)

    table = result.table
    assert list(table.columns) == list(SUMMARY_COLUMNS) and len(table) == 2
    assert (table["status"] == "ok").all() and (table["iterations"] == 1).all() and (table["episodes"] >= 1).all()
    assert sorted(table["reward"]) == ["composite", "neon"]
    assert table["reduction_mean"].ge(1.0).all() and table["return_mean"].notna().all()
    assert json.loads(table.loc[table["reward"] == "composite", "reward_params"].iloc[0]) == {"w_params": 2.0}
    pd.testing.assert_frame_equal(read_summary(result.experiment_dir), table)

    assert result.experiment_dir == (tmp_path / "sweeps" / "t").resolve()
    for trial_dir in table["trial_dir"]:
        files = {p.name for p in (tmp_path / "sweeps" / "t" / trial_dir.split("/")[-1]).iterdir()}
        assert any(name.startswith("events.out.tfevents") for name in files), files
        assert {"params.json", "result.json", "progress.csv"} <= files
    assert f"tensorboard --logdir {result.experiment_dir}" in caplog.text
    assert "tol=50_neon" in out and "tol=50_composite_w_params=2" in out
    assert out.splitlines()[0].startswith("trial")

    with pytest.raises(ConfigError, match="exists already"):
        run_sweep(cfg)
