"""Agent training on a tiny real zoo: it learns, it checkpoints and resumes, runners split the datasets."""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from neon_ray.agent.protocols import select_networks
from neon_ray.agent.config import AgentTrainConfig, default_agent_episode
from neon_ray.agent.run_dir import RunDir, agent_checkpoint, load_agent
from neon_ray.agent.callbacks import iteration_means
from neon_ray.agent.training import _lost_runners, algo_config, runner_cpus, train_agent
from neon_ray.cli import train_cmd
from neon_ray.errors import ConfigError
from neon_ray.pruning.finetune import FinetuneConfig
from neon_ray.nets.spec import SamplerConfig
from neon_ray.nets.training import TrainConfig
from neon_ray.zoo.build import build_zoo
from neon_ray.zoo.config import ZooConfig
from neon_ray.zoo.store import open_zoo

WINE, BC = "sklearn:wine", "sklearn:breast_cancer"
TINY_FINETUNE = FinetuneConfig(max_epochs=1, patience=1, max_train_rows=128, max_val_rows=256)


@pytest.fixture(scope="module")
def zoo(tiny_zoo):
    return tiny_zoo


def _cfg(zoo, out=None, episode=None, **kw) -> AgentTrainConfig:
    """A config for the tiny zoo; `episode` changes the episode's settings."""
    episode = default_agent_episode(**{"tolerance": 50.0, "keep_rates": (1.0, 0.6), "finetune": TINY_FINETUNE,
                                       **(episode or {})})
    base = dict(zoo=str(zoo.root), out=str(out) if out else None, episode=episode, warmup_episodes=0)
    return AgentTrainConfig(**{**base, **kw})


# ---------------------------------------------------------------------------- no Ray


def _manifest() -> pd.DataFrame:
    rows = [{"network_id": f"{d}__s0__n{i:03d}", "dataset": d, "role": "test" if i == 0 else "train", "depth": 1 + i % 2}
            for d in ("a", "b") for i in range(4)]
    return pd.DataFrame(rows)


def test_resolve_fills_neon_defaults():
    cfg = AgentTrainConfig(zoo="z", episode=default_agent_episode(loops=4, reward="neon"))
    assert AgentTrainConfig(zoo="z").resolve(select_networks(_manifest()), _manifest()).episode.reward_params == {}
    sel = select_networks(_manifest())
    res = cfg.resolve(sel, _manifest())
    n = len(sel.train_ids)  # 6 (depths 2,1,2 per dataset)
    assert res.warmup_episodes == min(2 * n, 500) == 12
    assert res.episodes == 10 * n + 12
    assert res.train_batch_size == round(4 * 4 * (5 / 3))  # 4 episodes of loops x mean depth
    assert res.episode.reward_params == {"scale": 64000.0}  # (100 * (1 - 0.6))^3: the largest |neon reward| becomes 1
    ppo = replace(cfg, algo="ppo").resolve(sel, _manifest())
    assert ppo.warmup_episodes == 0 and ppo.episodes == 10 * n
    given = replace(cfg, episodes=7, warmup_episodes=2, train_batch_size=9,
                    episode=replace(cfg.episode, reward_params={"scale": 1.0}))
    assert given.resolve(sel, _manifest()) == given


def test_config_round_trips_through_json():
    episode = default_agent_episode(tolerance=(1.0, 50.0), keep_rates=(1.0, 0.5), reward="composite",
                                    reward_params={"w_params": 2.0}, finetune=TINY_FINETUNE)
    cfg = AgentTrainConfig(zoo="runs/../runs/zoo", out="r", holdout=("b",), episode=episode, hidden=(8,))
    back = AgentTrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == replace(cfg, zoo=str(Path("runs/zoo").resolve()))
    assert back.identity() == cfg.identity() and "episodes" not in cfg.identity()


def test_config_of_a_run_from_before_the_nested_episode_still_reads():
    cfg = AgentTrainConfig(zoo="/z", episode=default_agent_episode(loops=2, remove_layer_action=True))
    flat = {k: v for k, v in cfg.to_dict().items() if k != "episode"}
    old = {k: v for k, v in cfg.episode.to_dict().items()
           if k in ("tolerance", "tolerance_sampling", "loops", "keep_rates", "reward", "reward_params", "finetune", "importance")}
    assert AgentTrainConfig.from_dict({**flat, **old, "remove_layer": True}) == cfg
    with pytest.raises(ConfigError, match=r"keys \['loops'\] belong inside 'episode'"):
        AgentTrainConfig.from_dict({**cfg.to_dict(), "loops": 2})


@pytest.mark.parametrize("kw, message", [
    ({"algo": "dqn"}, "algo must be one of"),
    ({"algo": "ppo", "warmup_episodes": 5}, "warm-up is an A2C option"),
    ({"episode": {"loops": 0}}, r"loops must be an integer in \[1, inf\), got 0"),
    ({"episode": {"tolerance": (50.0, 1.0)}}, r"tolerance must be a number >= 0 and <= 100 .* or a pair"),
    ({"episode": {"keep_rates": (1.0, 1.5)}}, "keep_rates must be a non-empty list of numbers in"),
    ({"episode": {"reward": "composite", "reward_params": {"w_parms": 1.0}}}, r"unknown parameter\(s\) \['w_parms'\]"),
    ({"holdout": "wine"}, "not a single string"),
    ({"hidden": ()}, "hidden must be a non-empty list"),
])
def test_bad_settings_are_config_errors(kw, message):
    with pytest.raises(ConfigError, match=message):
        AgentTrainConfig(zoo="z", **{k: default_agent_episode(**v) if k == "episode" else v for k, v in kw.items()})


def test_runner_cpus_fit_two_runners_on_two_cpus():
    assert runner_cpus(2, 2) == 0.75 and runner_cpus(2, 1) == 1.0 and runner_cpus(16, 4) == 1.0
    with pytest.raises(ConfigError, match="40 EnvRunners do not fit on 2 CPUs"):
        runner_cpus(2, 40)


def test_algo_config_for_both_algorithms():
    sel = select_networks(_manifest())
    for algo in ("a2c", "ppo"):
        cfg = AgentTrainConfig(zoo="z", algo=algo).resolve(sel, _manifest())
        config = algo_config(cfg, sel.train_ids, cpu_budget=2.0)
        assert config.algo_class.__name__ == algo.upper()
        assert config.env_config["networks"] == list(sel.train_ids) and config.sample_timeout_s >= 600
        assert config.restart_failed_env_runners and not config.ignore_env_runner_failures  # a lost runner comes back
        config.validate()
    with pytest.raises(ConfigError, match="needs a resolved AgentTrainConfig"):
        algo_config(AgentTrainConfig(zoo="z"), sel.train_ids)


# ---------------------------------------------------------------------------- on Ray


@pytest.mark.ray
def test_a2c_agent_learns_to_prune(zoo, tmp_path):
    """Tolerance 50 pp and a reward of 'parameters removed' make 'always prune 40%' the best policy.

    A random policy prunes at half the steps; the trained agent's mean return must clearly beat the
    first iterations' (measured: about 0.64 -> 0.77), and so must its parameter reduction.
    """
    cfg = _cfg(zoo, tmp_path / "run", episode={"reward": "composite", "reward_params": {"w_params": 1.0}}, episodes=120,
               lr=3e-3, checkpoint_every=1000)
    result = train_agent(cfg, progress=False)
    h = result.history
    first, last = h.head(3), h.tail(5)
    assert result.episodes >= 120 and h["episodes_total"].iloc[-1] == result.episodes
    assert last["return_mean"].mean() > first["return_mean"].mean() + 0.06, h[["return_mean", "reduction_mean"]]
    assert last["reduction_mean"].mean() > first["reduction_mean"].mean()
    assert (h["reduction_mean"] >= 1.0).all() and np.isfinite(h["acc_change_pp_mean"]).all()
    policy, loaded = load_agent(result.run_dir)
    assert loaded.episodes == 120 and loaded.episode.reward == "composite"
    probs = policy.action_probs(np.zeros(policy.module.observation_space.shape, np.float32))
    assert probs.shape == (2,)


@pytest.fixture(scope="module")
def short_run(zoo, tmp_path_factory):
    """Two EnvRunners, 8 episodes, a checkpoint after every iteration, the newest two kept."""
    out = tmp_path_factory.mktemp("short") / "run"
    cfg = _cfg(zoo, out, num_env_runners=2, episodes=8, checkpoint_every=1, keep_checkpoints=2, train_batch_size=8)
    return cfg, train_agent(cfg, progress=False)


@pytest.mark.ray
def test_run_directory_holds_config_progress_and_checkpoints(zoo, short_run):
    cfg, result = short_run
    run = RunDir(result.run_dir)
    doc = json.loads(run.config_path.read_text())
    saved = AgentTrainConfig.from_dict(doc["config"])
    assert saved.train_batch_size == 8 and saved.episodes == 8 and saved.warmup_episodes == 0
    assert saved.episode.reward == "guarded" and saved.episode.reward_params == {}  # resolved, not None
    train_ids = pd.concat(zoo.manifest(d, "train") for d in zoo.datasets)["network_id"]
    assert doc["selection"]["protocol"] == "A" and sorted(doc["selection"]["train_ids"]) == sorted(train_ids)
    rows = pd.read_csv(run.progress_path)
    assert list(rows["iteration"]) == list(range(1, result.iterations + 1))
    assert rows["episodes_total"].is_monotonic_increasing and rows["episodes_total"].iloc[-1] == result.episodes >= 8
    assert (rows["episodes"] > 0).all() and (rows["env_steps"] > 0).all()
    kept = sorted(p.name for p in run.checkpoints.glob("iter_*"))
    assert kept == [f"iter_{i:06d}" for i in range(max(1, result.iterations - 1), result.iterations + 1)]
    for name in kept:  # every kept checkpoint carries the pickle-free policy export
        assert (run.checkpoints / name / "policy.json").is_file() and (run.checkpoints / name / "policy.pt").is_file()
    assert run.latest() == {"checkpoint": f"iter_{result.iterations:06d}", "iteration": result.iterations,
                            "episodes": result.episodes}
    assert result.checkpoint == run.checkpoints / f"iter_{result.iterations:06d}"


@pytest.mark.ray
def test_run_directory_holds_tensorboard_events(short_run):
    cfg, result = short_run
    run = RunDir(result.run_dir)
    assert list(run.tensorboard.glob("events.out.tfevents.*"))
    board = EventAccumulator(str(run.tensorboard), size_guidance={"scalars": 0})
    board.Reload()
    tags = set(board.Tags()["scalars"])
    for tag in ("episodes/return_mean", "episodes/reduction_mean", "episodes/acc_change_pp_mean", "bands/tol_gt_10/count",
                "actions/keep_0.60", "learner/vf_loss", "learner/entropy", "learner/total_loss", "learner/vf_explained_var"):
        assert tag in tags, sorted(tags)
    steps = [e.step for e in board.Scalars("episodes/return_mean")]
    assert steps[:result.iterations] == list(range(1, result.iterations + 1))  # one step per iteration (resume may add)
    assert "histograms" in board.Tags() and "actions/keep_rate" in board.Tags()["histograms"]


@pytest.mark.ray
def test_mismatched_or_missing_runs_are_refused(zoo, short_run, tmp_path):
    cfg, result = short_run
    with pytest.raises(ConfigError, match=r"other settings \(episode.tolerance: saved 50.0, now 5.0\)"):
        train_agent(replace(cfg, episode=replace(cfg.episode, tolerance=5.0), episodes=20), resume=True, progress=False)
    with pytest.raises(ConfigError, match="already holds a training run; pass --resume"):
        train_agent(cfg, progress=False)
    with pytest.raises(ConfigError, match="holds no training run"):
        train_agent(replace(cfg, out=str(tmp_path / "none")), resume=True, progress=False)
    with pytest.raises(ConfigError, match=r"other settings \(episode.finetune.max_epochs: saved 1, now 2; "
                                          r"episode.loops: saved 4, now 1\)"):
        _cli("--out", cfg.out, "--resume", "--loops", "1", "--finetune-epochs", "2")
    with pytest.raises(ConfigError, match="--zoo is required to start a run"):
        _cli("--out", str(tmp_path / "new"))


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    train_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["train", *argv])
    return args.func(args)


@pytest.mark.ray
def test_cli_resume_continues_iterations_and_episode_count(zoo, short_run, capsys, caplog):
    cfg, first = short_run
    caplog.set_level(logging.INFO, logger="neon_ray")
    # only --out is needed: the settings come from RUN/config.json; fewer runners and more episodes may change
    assert _cli("--out", cfg.out, "--resume", "--episodes", str(first.episodes + 6), "--runners", "0") == 0
    out, logged = capsys.readouterr().out, caplog.text
    assert f"resuming at iteration {first.iterations}, episode {first.episodes}" in logged
    assert " iter  episodes    return reduction   acc pp" in logged and "checkpoint: " in out
    run = RunDir(cfg.out)
    latest, h = run.latest(), pd.read_csv(run.progress_path)
    assert list(h["iteration"]) == list(range(1, latest["iteration"] + 1)) and latest["iteration"] > first.iterations
    resumed = h[h["iteration"] > first.iterations]
    assert resumed["episodes_total"].iloc[0] == first.episodes + resumed["episodes"].iloc[0]
    assert latest["episodes"] == h["episodes_total"].iloc[-1] >= first.episodes + 6
    assert h["episodes_total"].is_monotonic_increasing
    assert run.read_config().episodes == first.episodes + 6 and run.read_config().num_env_runners == 0
    board = EventAccumulator(str(run.tensorboard), size_guidance={"scalars": 0})
    board.Reload()  # a second event file continues the step sequence, each iteration once
    assert len(list(run.tensorboard.glob("events.out.tfevents.*"))) == 2
    assert [e.step for e in board.Scalars("episodes/count")] == list(range(1, latest["iteration"] + 1))


@pytest.mark.ray
def test_env_runners_split_the_datasets_and_load_each_once(zoo):
    sel = select_networks(zoo)
    cfg = _cfg(zoo, num_env_runners=2, episodes=4, train_batch_size=4).resolve(sel, zoo.manifest())
    algo = algo_config(cfg, sel.train_ids, cpu_budget=2.0, num_cpus_per_env_runner=runner_cpus(2, 2)).build_algo()

    def env_state(runner):
        env = runner.env.unwrapped.envs[0].unwrapped
        return runner.worker_index, id(env), sorted(env.catalogue.order), sorted(env.catalogue.datasets)

    try:
        algo.train()
        before = sorted(algo.env_runner_group.foreach_env_runner(env_state, local_env_runner=False))
        algo.train()
        after = sorted(algo.env_runner_group.foreach_env_runner(env_state, local_env_runner=False))
    finally:
        algo.stop()
    assert [(w, order) for w, _, order, _ in before] == [(1, [BC]), (2, [WINE])]
    assert before == after  # same env objects, each with only its own dataset loaded, once
    assert all(loaded == order for _, _, order, loaded in after)


@pytest.mark.ray
def test_a_killed_env_runner_is_restarted_and_sampling_goes_on(zoo):
    """A lost runner (e.g. a memory kill) makes iterations empty while it is down, never an error (measured: back after ~8 s)."""
    sel = select_networks(zoo)
    cfg = _cfg(zoo, num_env_runners=1, episodes=4, train_batch_size=4).resolve(sel, zoo.manifest())
    config = algo_config(cfg, sel.train_ids, cpu_budget=2.0, num_cpus_per_env_runner=runner_cpus(2, 1))
    algo = config.fault_tolerance(delay_between_env_runner_restarts_s=0.5).build_algo()
    try:
        assert iteration_means(algo.train())["episodes"] > 0 and _lost_runners(algo) == 0
        ray.kill(algo.env_runner_group._worker_manager._actors[1], no_restart=False)
        seen, deadline = [], time.monotonic() + 120
        while time.monotonic() < deadline:
            means = iteration_means(algo.train())  # the progress row of an empty iteration is all NaN/0, no crash
            seen.append((means["episodes"], _lost_runners(algo)))
            if means["episodes"]:
                break
            time.sleep(0.5)
    finally:
        algo.stop()
    assert seen[-1][0] > 0 and seen[-1][1] == 0, seen


@pytest.mark.ray
def test_rollout_benchmark_measures_one_and_two_runners(zoo, tmp_path, capsys):
    from neon_ray.cli import bench_rollout as rollout

    parser = argparse.ArgumentParser()
    rollout.register(parser.add_subparsers())
    out = tmp_path / "rollout.json"
    args = parser.parse_args(["rollout", "--zoo", str(zoo.root), "--out", str(out), "--iterations", "1",
                              "--batch-episodes", "2", "--loops", "1", "--finetune-epochs", "1"])
    assert args.func(args) == 0
    figures = json.loads(out.read_text())
    assert set(figures["by_runners"]) == {"1", "2"} and figures["speedup_runners"] == [1, 2]
    for n, fig in figures["by_runners"].items():
        assert fig["env_steps"] > 0 and fig["episodes"] > 0 and fig["steps_per_s"] > 0
        assert len(fig["runner_cpu_share"]) == int(n)
    assert figures["speedup"] == pytest.approx(figures["by_runners"]["2"]["steps_per_s"] / figures["by_runners"]["1"]["steps_per_s"])
    assert "speed-up 2 vs 1 runners" in capsys.readouterr().out


@pytest.mark.ray
def test_validation_scores_checkpoints_and_keeps_the_best_as_the_agent(zoo, tmp_path, caplog):
    """Validated on wine every iteration: wine is left out of training, every row has a val_score,
    and `best` (kept through pruning to one checkpoint) is the highest-scoring one, which load_agent loads."""
    caplog.set_level(logging.INFO, logger="neon_ray")
    cfg = _cfg(zoo, tmp_path / "run", episodes=5, train_batch_size=8, checkpoint_every=100, keep_checkpoints=1,
               validation_datasets=(WINE,), validate_every=1)
    result = train_agent(cfg, progress=True)
    run = RunDir(result.run_dir)
    selection = json.loads(run.config_path.read_text())["selection"]
    assert selection["train_datasets"] == [BC] and selection["train_ids"] == zoo.network_ids(dataset=BC, role="train")
    h = pd.read_csv(run.progress_path)
    assert np.isfinite(h["val_score"]).all() and (h["val_score"] >= 1.0).all() and len(h) == result.iterations
    best = run.best()
    assert best["val_score"] == pytest.approx(h["val_score"].max())
    assert best["iteration"] == int(h.loc[h["val_score"].idxmax(), "iteration"])
    kept = {p.name for p in run.checkpoints.glob("iter_*")}
    assert kept == {best["checkpoint"], run.latest()["checkpoint"]}  # keep_checkpoints=1, plus the best
    assert result.best == run.checkpoints / best["checkpoint"] == agent_checkpoint(run.root)[0]
    policy, loaded = load_agent(run.root)
    assert loaded.validation_datasets == (WINE,) and policy.module.action_space.n == 2
    assert "validation at iteration 1: score x" in caplog.text and "networks of sklearn:wine at a=50 pp" in caplog.text
