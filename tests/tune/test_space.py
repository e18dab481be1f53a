"""A sweep's search space, its settings and a trial's roll-back, without Ray."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
from ray import tune

from neon_ray.agent.config import AgentTrainConfig, default_agent_episode
from neon_ray.agent.run_dir import RunDir
from neon_ray.cli import main
from neon_ray.errors import CheckpointError, ConfigError
from neon_ray.tune.space import Dim, RewardVariant, SearchSpace, trial_config, trial_label
from neon_ray.tune.sweep import SweepConfig, _scheduler, _searcher, load_sweep, load_sweep_spec
from neon_ray.tune.table import drop_superseded_reports
from neon_ray.tune.trial import roll_back, window_means

BASE = AgentTrainConfig(zoo="z", episode=default_agent_episode(loops=2), seed=7)


def test_reward_variants_parse_label_and_round_trip():
    v = RewardVariant.parse("composite:w_params=2,penalty=0.5,metric=f1")
    assert v == RewardVariant("composite", {"w_params": 2.0, "penalty": 0.5, "metric": "f1"})
    assert v.label == "composite(metric=f1,penalty=0.5,w_params=2)"
    assert RewardVariant.parse(v.text) == v and RewardVariant.parse("neon").text == "neon"
    assert v.accepts("w_flops", 1.0) and not RewardVariant("neon").accepts("w_params", 1.0)
    with pytest.raises(ConfigError, match="expected NAME or NAME:key=value"):
        RewardVariant.parse("composite:w_params")
    with pytest.raises(ConfigError, match="unknown reward 'neo'"):
        RewardVariant.parse("neo")


def test_dimensions_parse_choices_and_ranges():
    assert Dim.parse("loops=2,4") == Dim("loops", (2, 4))
    assert Dim.parse("lr=1e-4:1e-2:log") == Dim("lr", low=1e-4, high=1e-2, log=True)
    assert Dim.parse("algo=a2c,ppo").values == ("a2c", "ppo")
    assert Dim.parse(Dim.parse("entropy=0:0.05").text) == Dim("entropy", low=0.0, high=0.05)
    for text, message in [("gamma=0.9,0.99", "expected one of"), ("loops=0,2", "integers >= 1"),
                          ("lr=0,1e-3", "> 0"), ("lr=1e-2:1e-4", "LO < HI"), ("entropy=0:1:log", "LO > 0"),
                          ("algo=a2c,dqn", "not one of"), ("algo=1:2", "not a range"), ("loops=2,2", "repeat"),
                          ("loops", "expected NAME=V1")]:
        with pytest.raises(ConfigError, match=message):
            Dim.parse(text)


def test_grid_param_space_repeats_every_configuration_with_a_seed_axis():
    space = SearchSpace((5.0, (1.0, 50.0)), (RewardVariant("neon"), RewardVariant("composite", {"w_params": 2.0})),
                        (Dim.parse("loops=2,4"), Dim.parse("lr=0.001")))
    params = space.param_space("grid", samples=2)
    assert params["tolerance"] == {"grid_search": ["5.0", "1.0:50.0"]}
    assert params["reward"] == {"grid_search": ["neon", "composite:w_params=2.0"]}
    assert params["loops"] == {"grid_search": [2, 4]} and params["lr"] == 0.001
    assert params["repeat"] == {"grid_search": [0, 1]}
    assert space.varied(2) == ("tolerance", "reward", "loops", "seed")
    with pytest.raises(ConfigError, match="needs --search random or optuna"):
        SearchSpace(dims=(Dim.parse("lr=1e-4:1e-2:log"),)).param_space("grid", 1)


def test_random_and_optuna_spaces_sample_ranges():
    space = SearchSpace((5.0,), (RewardVariant("composite", {"w_params": 1.0}),),
                        (Dim.parse("lr=1e-4:1e-2:log"), Dim.parse("loops=1:3"), Dim.parse("reward.w_params=0.5:4")))
    rnd = space.param_space("random", samples=3)
    assert isinstance(rnd["lr"], tune.search.sample.Float) and isinstance(rnd["loops"], tune.search.sample.Integer)
    assert rnd["loops"].lower == 1 and rnd["loops"].upper == 4  # randint excludes its upper end
    assert isinstance(rnd["reward_params"]["w_params"], tune.search.sample.Float)
    assert rnd["repeat"] == {"grid_search": [0, 1, 2]} and rnd["tolerance"] == "5.0"
    assert "repeat" not in space.param_space("optuna", samples=3)  # Tune's Repeater numbers Optuna's repeats
    with pytest.raises(ConfigError, match="none of the rewards"):
        SearchSpace(rewards=(RewardVariant("neon"),), dims=(Dim.parse("reward.w_params=1,2"),))


def test_trial_config_applies_the_params_and_the_seed_offset():
    params = {"tolerance": "1.0:50.0", "reward": "composite:w_params=1.0", "loops": 3, "lr": 0.003, "entropy": 0.02,
              "algo": "ppo", "batch_episodes": 6, "reward_params": {"w_params": 2.5}, "repeat": 2}
    cfg, batch_episodes = trial_config(AgentTrainConfig(zoo="z", warmup_episodes=10, seed=7), params)
    assert cfg.episode.tolerance == (1.0, 50.0) and cfg.episode.reward == "composite"
    assert cfg.episode.reward_params == {"w_params": 2.5} and cfg.episode.loops == 3
    assert (cfg.lr, cfg.entropy_coeff, cfg.algo, cfg.seed) == (0.003, 0.02, "ppo", 9)
    assert cfg.warmup_episodes is None and batch_episodes == 6.0  # PPO has no warm-up
    neon, _ = trial_config(BASE, {"tolerance": "5.0", "reward": "neon", "reward_params": {"w_params": 2.5},
                                  "__trial_index__": 1})
    assert neon.episode.reward_params is None and neon.seed == 8 and neon.episode.loops == 2
    assert trial_label(params, ("tolerance", "reward.w_params", "seed")) == "tol=1-50_w_params=2.5_s2"


def _sweep(**kw) -> SweepConfig:
    return SweepConfig(base=BASE, out="o", validation_datasets=("v",), **kw)


@pytest.mark.parametrize("kw, message", [
    ({"tolerances": ()}, "tolerances is empty"),
    ({"tolerances": (-1.0,)}, "tolerance must be a number >= 0"),
    ({"rewards": ()}, "rewards is empty"),
    ({"iterations": 0}, "iterations must be an integer >= 1"),
    ({"iterations": 15, "report_every": 10}, "multiple of report_every"),
    ({"samples": 0}, "samples must be an integer >= 1"),
    ({"search": "bayes"}, "search must be one of"),
    ({"scheduler": "pbt"}, "scheduler must be one of"),
    ({"name": "a/b"}, "must use letters, digits"),
    ({"dims": (Dim.parse("lr=1e-4:1e-2"),)}, "a grid takes choices only"),
    ({"final_tolerances": (200.0,)}, "final tolerance must be"),
    ({"max_failures": -1}, "max_failures must be an integer"),
    ({"final_baselines": ("random", "best")}, r"final baselines \[.best.\] unknown"),
    ({"final_baselines": "random"}, "final_baselines must be a list"),
])
def test_bad_sweeps_are_config_errors(kw, message):
    with pytest.raises(ConfigError, match=message):
        _sweep(**kw)


def test_trial_base_validates_every_report_and_needs_validation_datasets():
    cfg = _sweep(iterations=6, report_every=10, samples=2)
    base = cfg.trial_base()
    assert base.validation_datasets == ("v",) and base.validate_every == base.checkpoint_every == 6
    assert base.episodes > 10**9  # iterations, not episodes, end a trial
    assert cfg.trial_count() == 3 * 3 * 2
    with pytest.raises(ConfigError, match="give validation_datasets"):
        SweepConfig(base=BASE, out="o").trial_base()
    with pytest.raises(ConfigError, match="keep_checkpoints must be >= 2"):
        SweepConfig(base=AgentTrainConfig(zoo="z", keep_checkpoints=1), out="o")


def test_sweep_settings_round_trip_through_sweep_json(tmp_path):
    cfg = SweepConfig(base=BASE, out=str(tmp_path), name="s", tolerances=(5.0, (1.0, 50.0)), search="random", trials=3,
                      samples=2, dims=(Dim.parse("lr=1e-4:1e-2:log"), Dim.parse("algo=a2c,ppo")), scheduler="asha",
                      validation_datasets=("v",), final_baselines=("random-guard",))
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "sweep.json").write_text(json.dumps(cfg.to_dict()))
    back = load_sweep(tmp_path / "s")
    assert back.to_dict() == cfg.to_dict() and back.space == cfg.space and back.trial_count() == 6
    assert back.base.zoo == str(Path("z").resolve())  # absolute: a resume works from any directory
    with pytest.raises(ConfigError, match="not a sweep directory"):
        load_sweep(tmp_path)


def test_searchers_and_scheduler():
    assert _searcher(_sweep()) == (None, 1)
    generator, samples = _searcher(_sweep(search="random", trials=5))
    assert isinstance(generator, tune.search.BasicVariantGenerator) and samples == 5
    pytest.importorskip("optuna")
    repeater, samples = _searcher(_sweep(search="optuna", trials=4, samples=2))
    assert isinstance(repeater, tune.search.Repeater) and samples == 8
    asha = _scheduler(_sweep(scheduler="asha", iterations=20, report_every=5, grace_reports=2))
    assert isinstance(asha, tune.schedulers.ASHAScheduler) and _scheduler(_sweep()) is None


def test_window_means_weight_iterations_by_episodes():
    rows = [{"episodes": "2", "return_mean": "1.0", "reduction_mean": "2.0", "acc_change_pp_mean": "-1.0"},
            {"episodes": "6", "return_mean": "3.0", "reduction_mean": "4.0", "acc_change_pp_mean": "nan"},
            {"episodes": "0", "return_mean": "nan", "reduction_mean": "nan", "acc_change_pp_mean": "nan"}]
    means = window_means(rows)
    assert means["return_mean"] == pytest.approx(2.5) and means["reduction_mean"] == pytest.approx(3.5)
    assert means["acc_change_pp_mean"] == -1.0 and math.isnan(window_means([])["return_mean"])


def _checkpoint(run: RunDir, iteration: int) -> dict:
    (run.checkpoints / f"iter_{iteration:06d}").mkdir(parents=True)
    return {"checkpoint": f"iter_{iteration:06d}", "iteration": iteration, "episodes": 2 * iteration}


def test_roll_back_returns_to_the_last_report(tmp_path):
    run = RunDir(tmp_path / "agent")
    reported = {"latest": _checkpoint(run, 4), "best": {**_checkpoint(run, 2), "val_score": 1.5}}
    newer = _checkpoint(run, 6)  # saved after the last report, before the kill
    for kind, pointer in (("latest", newer), ("best", {**newer, "val_score": 2.0})):
        (run.checkpoints / kind).write_text(json.dumps(pointer))
    assert roll_back(run, reported) == 4
    assert run.latest()["iteration"] == 4 and run.best()["iteration"] == 2
    assert sorted(p.name for p in run.checkpoints.glob("iter_*")) == ["iter_000002", "iter_000004"]
    reported["best"] = {**reported["best"], "checkpoint": "iter_000001"}  # pruned since: dropped
    roll_back(run, reported)
    assert run.best() is None
    with pytest.raises(CheckpointError, match="last report is missing"):
        roll_back(RunDir(tmp_path / "other"), reported)


@pytest.mark.parametrize("argv, message", [
    (["tune", "--resume", "x", "--samples", "2"], "drop --samples"),
    (["tune", "--zoo", "z", "--out", "o"], "needs --zoo, --out and --validate-on"),
    (["tune", "--zoo", "z"], "needs --out"),
    (["tune", "--spec", "s.json", "--out", "o", "--samples", "3"], "drop --samples"),
    (["tune", "--zoo", "z", "--out", "o", "--validate-on", "v", "--lr", "0.1", "--space", "lr=0.1,0.2"],
     "--lr fixes what --space lr=0.1,0.2 searches"),
    (["tune", "--zoo", "z", "--out", "o", "--validate-on", "v", "--space", "lr=1e-4:1e-2"], "a grid takes choices"),
])
def test_tune_cli_refuses_contradictions(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_tune_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    out = capsys.readouterr().out
    for flag in ("--resume", "--validate-on", "--report-every", "--space", "--search", "--samples", "--scheduler",
                 "--runners", "--cpus-per-runner", "--max-failures", "--final-tolerances", "exit status"):
        assert flag in out or flag in out.lower()
    from neon_ray.cli import build_parser

    tune_parser = build_parser()._subparsers._group_actions[0].choices["tune"]
    undocumented = [a.option_strings for a in tune_parser._actions if not a.help]
    assert not undocumented


REPO = Path(__file__).resolve().parents[2]


def test_shipped_sweep_specs_load_and_keep_validation_apart():
    specs = sorted((REPO / "jobs" / "specs").glob("sweep_*.json"))
    assert specs
    for path in specs:
        cfg = load_sweep_spec(path, out="o", zoo="z")
        base = cfg.trial_base()
        assert cfg.trial_count() >= 8 and base.holdout and base.validation_datasets
        assert not set(base.validation_datasets) & (set(base.holdout) | set(base.datasets or ()))
        assert cfg.to_dict()["base"]["zoo"] == str(Path("z").resolve()) and cfg.out == "o"


def test_a_bad_spec_names_its_file(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"base": {}, "validation_datasets": ["v"], "samples": 2, "colour": "red"}))
    with pytest.raises(ConfigError, match=r"s.json: sweep settings: unknown key\(s\) \['colour'\]"):
        load_sweep_spec(path, out="o", zoo="z")
    path.write_text(json.dumps({"base": {}, "validation_datasets": ["v"]}))
    with pytest.raises(ConfigError, match="no zoo"):
        load_sweep_spec(path, out="o")
    assert load_sweep_spec(path, out="o", zoo="z", name="n").name == "n"


def test_the_sweep_job_is_the_tune_command(capsys):
    spec = importlib.util.spec_from_file_location("jobs_sweep", REPO / "jobs" / "sweep.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    with pytest.raises(SystemExit) as exc:
        job.main(["--help"])
    assert exc.value.code == 0 and "usage: neon-ray tune" in capsys.readouterr().out


def test_superseded_reports_of_a_resumed_trial_are_dropped(tmp_path):
    trial = tmp_path / "trial"
    trial.mkdir()
    rows = [{"training_iteration": 1, "score": 1.0}, {"training_iteration": 2, "score": 2.0},
            {"training_iteration": 2, "score": 2.5}, {"training_iteration": 3, "score": 3.0}]
    (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert drop_superseded_reports([trial, tmp_path / "never-started"]) == 1
    kept = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    assert [(r["training_iteration"], r["score"]) for r in kept] == [(1, 1.0), (2, 2.5), (3, 3.0)]
    assert drop_superseded_reports([trial]) == 0
