"""The pipeline: specs (old and new fields) and one real tiny run whose last stage is `evaluate`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from neon_ray.agent.evaluate import DEFAULT_BASELINES, EvaluateConfig
from neon_ray.errors import ConfigError
from neon_ray.pipeline import PipelineConfig, agent_config, evaluate_config, load_spec, run_pipeline, zoo_config
from neon_ray.zoo.store import open_zoo

REPO = Path(__file__).resolve().parents[1]


def _spec(tmp_path, doc: dict) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(doc))
    return path


def test_an_old_spec_with_a_scalar_tolerance_still_loads(tmp_path):
    old = {"out": "o", "tolerance": 2.5, "baselines": ["random", "uniform", "magnitude"], "uniform_rate": 0.6,
           "magnitude_rate": 0.9}
    cfg = load_spec(_spec(tmp_path, old))
    assert cfg.tolerances == (2.5,) and cfg.baselines == ("random", "uniform", "magnitude")
    ev = evaluate_config(cfg)
    assert ev.tolerances == (2.5,) and (ev.uniform_rate, ev.magnitude_rate) == (0.6, 0.9)
    assert ev.datasets == cfg.holdout and ev.results == str(cfg.root / "results")
    # a command-line override replaces the old key as it replaces the new one
    assert load_spec(_spec(tmp_path, old), tolerances=(1.0, 50.0)).tolerances == (1.0, 50.0)


@pytest.mark.parametrize("doc, message", [
    ({"tolerance": 5, "tolerances": [1, 5]}, r"either tolerances .* or the older scalar tolerance, not both"),
    ({"tolerance": [1, 5]}, r"older scalar key\) must be one number; use tolerances"),
    ({"tolerance": 101}, r"PipelineConfig\.tolerances\[0\] must be a finite number in \[0, 100\], got 101"),
    ({"tolerances": []}, r"tolerances must be a non-empty list"),
    ({"tolerances": [5, 5.0]}, r"tolerances repeat a value"),
    ({"tolerances": 5}, r"tolerances must be a JSON list, got 5"),
    ({"baselines": ["random", "random"]}, r"baselines: .* repeated"),
    ({"baselines": ["uniform-search-guard"]}, r"baselines: unknown \['uniform-search-guard'\]"),
    ({"samples": -1}, r"PipelineConfig\.samples must be an integer in \[0, 1000\], got -1"),
    ({"max_rows": 50}, r"PipelineConfig\.max_rows must be an integer in \[100, inf\), got 50"),
    ({"seed": 2**32 - 1}, r"PipelineConfig\.seed must be an integer in \[0, "),
])
def test_new_spec_fields_are_checked(tmp_path, doc, message):
    with pytest.raises(ConfigError, match=message):
        load_spec(_spec(tmp_path, {"out": "o", **doc}))


def test_evaluate_refuses_a_bad_baseline_rate_before_work():
    base = dict(agent="a", datasets=("sklearn:wine",), tolerances=(5,), results="r")
    with pytest.raises(ConfigError, match=r"uniform --rate is the keep-rate of every layer, in \(0, 1\]; got 0"):
        EvaluateConfig(**base, uniform_rate=0)
    with pytest.raises(ConfigError, match=r"magnitude --rate is the fraction of weights removed, in \[0, 1\); got 1.5"):
        EvaluateConfig(**base, magnitude_rate=1.5)


def test_defaults_and_max_rows_reach_the_zoo(tmp_path):
    cfg = PipelineConfig(out="o")
    assert cfg.tolerances == (1.0, 5.0, 50.0) and cfg.baselines == DEFAULT_BASELINES and cfg.samples == 0
    assert zoo_config(cfg).split.max_rows is None
    capped = load_spec(_spec(tmp_path, {"out": "o", "max_rows": 2000, "samples": 3}))
    assert zoo_config(capped).split.max_rows == 2000 and evaluate_config(capped).samples == 3


def test_shipped_specs_use_the_new_fields():
    for path in sorted((REPO / "jobs" / "specs").glob("*.json")):
        if path.name.startswith("sweep_"):  # Tune sweep specs (jobs/sweep.py), not pipeline specs
            continue
        doc = json.loads(path.read_text())
        assert "tolerance" not in doc and doc["tolerances"], path
        cfg = load_spec(path, out="o")
        assert evaluate_config(cfg).baselines == cfg.baselines


@pytest.mark.ray
def test_a_tiny_pipeline_ends_with_the_evaluation_tables(ray_session, tmp_path):
    cfg = PipelineConfig(out=str(tmp_path / "run"), datasets=("sklearn:breast_cancer", "sklearn:wine"),
                         holdout=("sklearn:wine",), networks=2, test_networks=1, widths=(8,), max_layers=1,
                         zoo_epochs=2, episodes=2, loops=1, finetune_epochs=1, tolerances=(5.0, 50.0), max_rows=150)
    result = run_pipeline(cfg, progress=False)

    zoo = open_zoo(result.root / "zoo")
    manifest = zoo.manifest()
    assert (manifest["train_rows"] < 150 * 0.75).all()  # the cap reached the data (569 and 178 rows otherwise)
    assert zoo.split.max_rows == 150  # what the agent and the evaluation load the data with
    wine = sorted(zoo.network_ids(dataset="sklearn:wine"))
    assert set(result.evaluation.tables) == {5.0, 50.0}
    for tol, table in result.evaluation.tables.items():
        assert set(table["method"]) == {"neon-a2c", *DEFAULT_BASELINES}, tol
        assert (table["networks"] == len(wine)).all() and (table["score"] >= 1.0).all(), tol
        assert table.loc[table["method"] == "neon-a2c", "config_label"].item() == f"a={tol:g} loops=1 guard"
        assert table.loc[table["method"] == "magnitude", "config_label"].item() == "remove=0.8"  # magnitude_rate
        assert sorted(result.evaluation.frames[tol].query("method == 'neon-a2c'")["network_id"]) == wine
        assert result.reports[tol] == result.root / "report" / f"a{tol:g}" / "report.md" and result.reports[tol].is_file()
    doc = json.loads((result.results / "_evaluation" / "evaluation.json").read_text())
    assert set(doc["tolerances"]) == {"5", "50"} and doc["datasets"] == ["sklearn:wine"]
    assert json.loads((result.root / "pipeline.json").read_text())["tolerances"] == [5.0, 50.0]


@pytest.mark.parametrize("argv", [
    ["pipeline", "--spec", "jobs/specs/smoke.json", "--tolerances", "5,nan"],
    ["demo", "--tolerances", "5,200"],
], ids=lambda argv: argv[0])
def test_cli_tolerances_are_checked_before_work(argv, tmp_path, capsys, monkeypatch):
    from neon_ray.cli import main

    monkeypatch.chdir(REPO)
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    assert "PipelineConfig.tolerances[1] must be a finite number in [0, 100]" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_spec_chooses_the_agents_actions_reward_and_fine_tuning_targets(tmp_path):
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"keep_rates": [1.0, 0.5, 0.25], "reward": "guarded", "reward_params": {"penalty": 0.2},
                                "finetune_targets": "original", "finetune_epochs": 4}))
    episode = agent_config(load_spec(spec, out=str(tmp_path / "run"))).episode
    assert episode.keep_rates == (1.0, 0.5, 0.25) and (episode.reward, episode.reward_params) == ("guarded", {"penalty": 0.2})
    assert (episode.finetune.targets, episode.finetune.max_epochs) == ("original", 4)
    with pytest.raises(ConfigError, match="agent episode.*targets"):
        PipelineConfig(out=str(tmp_path / "run"), finetune_targets="teacher")
