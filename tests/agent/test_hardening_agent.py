"""Hostile-user review (issue 9) of the agent: safe policy format, run directories, bad values.

Unit tests build a policy module and a run directory by hand (no Ray, no training); the Ray
tests use the shared tiny zoo and do at most one very short training run.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from neon_ray.agent.algos import LoadedPolicy, load_policy
from neon_ray.agent.export import POLICY_SUBDIR, SPEC_FILE, WEIGHTS_FILE, export_policy, module_class, read_policy
from neon_ray.agent.protocols import Selection
from neon_ray.agent.callbacks import iteration_means, progress_row
from neon_ray.agent.config import AgentTrainConfig, default_agent_episode
from neon_ray.agent.run_dir import RunDir, check_run, load_agent, prepare_run
from neon_ray.agent.training import train_agent
from neon_ray.cli import prune_cmd, train_cmd
from neon_ray.pruning.episode_config import EnvConfig
from neon_ray.errors import CheckpointError, ConfigError
from neon_ray.pruning.observation import CLIP, OBS_SIZE
from neon_ray.pruning.finetune import FinetuneConfig

WINE, BC = "sklearn:wine", "sklearn:breast_cancer"
KEEP = (1.0, 0.6)
TINY_FINETUNE = FinetuneConfig(max_epochs=1, patience=1, max_train_rows=64, max_val_rows=64)


class Payload:
    """Unpickling this writes `marker`: a stand-in for an attacker's code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def _module(seed: int = 0, n_actions: int = len(KEEP), obs_size: int = OBS_SIZE):
    """A policy module of the class training uses, with non-trivial random weights."""
    torch.manual_seed(seed)
    module = module_class()(
        observation_space=gym.spaces.Box(-CLIP, CLIP, shape=(obs_size,), dtype=np.float32),
        action_space=gym.spaces.Discrete(n_actions), inference_only=False,
        model_config={"fcnet_hiddens": [16, 8], "fcnet_activation": "tanh", "vf_share_layers": False})
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.5)
    return module


def _fake_run(root: Path, zoo: str = "zoo", rllib: bool = True, export: bool = True, **kw) -> RunDir:
    """A run directory as training leaves it: config.json, checkpoints/latest, iter_000001 with
    RLlib's checkpoint of the policy (pickles) and the safe export."""
    episode = default_agent_episode(keep_rates=KEEP, loops=1, tolerance=5.0, finetune=TINY_FINETUNE)
    cfg = AgentTrainConfig(**{"zoo": zoo, "out": str(root), "holdout": (WINE,), "episode": episode, "episodes": 1,
                              "warmup_episodes": 0, "train_batch_size": 1, **kw})
    run = RunDir(root)
    run.write_config(cfg, Selection("B", (BC,), (WINE,), (f"{BC}__s0__n001",), (f"{WINE}__s0__n000",)))
    run.write_progress([])
    ckpt = run.checkpoints / "iter_000001"
    module = _module()
    if rllib:
        module.save_to_path(ckpt / POLICY_SUBDIR)
    if export:
        export_policy(module, ckpt, "a2c")
    ckpt.mkdir(parents=True, exist_ok=True)
    (run.checkpoints / "latest").write_text(json.dumps({"checkpoint": "iter_000001", "iteration": 1, "episodes": 1}))
    return run


def _tamper(root: Path, marker: Path) -> list[Path]:
    """Replace every .pkl under root with the payload; returns them."""
    pickles = sorted(root.rglob("*.pkl"))
    for path in pickles:
        path.write_bytes(pickle.dumps(Payload(marker)))
    return pickles


def _observations(n: int = 200) -> np.ndarray:
    return np.random.default_rng(0).uniform(-CLIP, CLIP, (n, OBS_SIZE)).astype(np.float32)


# ---------------------------------------------------------------------------- 5: safe policy format


def test_exported_policy_gives_identical_action_probabilities(tmp_path):
    module = _module(seed=3)
    export_policy(module, tmp_path, "a2c")
    spec = json.loads((tmp_path / SPEC_FILE).read_text())
    assert (spec["format"], spec["version"], spec["algo"]) == ("neon-ray-policy", 1, "a2c")
    assert (spec["observation_size"], spec["num_actions"]) == (OBS_SIZE, len(KEEP))
    assert spec["model_config"] == {"fcnet_hiddens": [16, 8], "fcnet_activation": "tanh", "vf_share_layers": False}

    loaded = load_policy(tmp_path)
    original = LoadedPolicy(module)
    obs = _observations()
    np.testing.assert_array_equal(np.stack([loaded.action_probs(o) for o in obs]),
                                  np.stack([original.action_probs(o) for o in obs]))
    assert [loaded(o) for o in obs] == [original(o) for o in obs]
    assert type(loaded.module) is type(module) and loaded.module.action_space.n == len(KEEP)


def test_tampered_rllib_pickles_are_never_executed_by_load_agent(tmp_path):
    marker = tmp_path / "marker"
    run = _fake_run(tmp_path / "run")
    assert _tamper(run.root, marker), "the fake run should hold RLlib's pickles"

    policy, cfg = load_agent(run.root)
    assert policy(_observations(1)[0]) in range(len(KEEP)) and cfg.holdout == (WINE,)
    assert not marker.exists()

    # control: the trap is real, RLlib's own loader runs the payload
    from ray.rllib.core.rl_module.rl_module import RLModule
    try:
        RLModule.from_checkpoint(str(run.checkpoints / "iter_000001" / POLICY_SUBDIR))
    except Exception:
        pass
    assert marker.exists()


def test_a_checkpoint_without_the_safe_export_is_refused_not_unpickled(tmp_path):
    marker = tmp_path / "marker"
    run = _fake_run(tmp_path / "run", export=False)
    _tamper(run.root, marker)
    with pytest.raises(CheckpointError, match=r"iter_000001 holds an RLlib checkpoint but no safe policy export"):
        load_agent(run.root)
    assert not marker.exists()


def test_a_pickle_in_place_of_the_weights_is_refused(tmp_path):
    marker = tmp_path / "marker"
    export_policy(_module(), tmp_path, "a2c")
    weights = tmp_path / WEIGHTS_FILE
    torch.save({"x": Payload(marker)}, weights)  # a torch file with an object that runs code
    spec = json.loads((tmp_path / SPEC_FILE).read_text())
    import hashlib
    spec["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()  # the attacker fixes the checksum
    (tmp_path / SPEC_FILE).write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match=rf"{WEIGHTS_FILE}: not a readable tensor file"):
        load_policy(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(format="rllib"), "format is 'rllib'"),
    (lambda s: s.update(version=2), "version 2 is not supported"),
    (lambda s: s.update(module="os.system"), "module 'os.system' is not"),
    (lambda s: s["model_config"].update(fcnet_hiddens=[10**9]), "fcnet_hiddens .* expected at most"),
    (lambda s: s["model_config"].update(fcnet_kernel_initializer="x"), r"keys \['fcnet_kernel_initializer'\] are not accepted"),
    (lambda s: s["model_config"].update(fcnet_activation="eval"), "fcnet_activation 'eval' is not one of"),
    (lambda s: s.update(num_actions=3), r"does not fit the policy"),
    (lambda s: s.update(observation_size=True), "observation_size True is not an integer"),
])
def test_bad_policy_descriptions_are_checkpoint_errors(tmp_path, change, message):
    export_policy(_module(), tmp_path, "a2c")
    spec = json.loads((tmp_path / SPEC_FILE).read_text())
    change(spec)
    (tmp_path / SPEC_FILE).write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match=message):
        read_policy(tmp_path)


# ---------------------------------------------------------------------------- 10: corrupt files, relative paths


def test_truncated_or_corrupt_agent_files_are_checkpoint_errors_naming_the_file(tmp_path):
    run = _fake_run(tmp_path / "run")
    ckpt = run.checkpoints / "iter_000001"
    weights = ckpt / WEIGHTS_FILE
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"{weights}: contents do not match the SHA-256"):
        load_agent(run.root)
    weights.write_bytes(data)
    (ckpt / SPEC_FILE).write_text('{"format": "neon-ray-pol')
    with pytest.raises(CheckpointError, match=rf"{ckpt / SPEC_FILE}: not a readable policy description"):
        load_agent(run.root)
    (run.checkpoints / "latest").write_text('{"checkpoint": "../../etc", "iteration": 1}')
    with pytest.raises(CheckpointError, match="cannot be used as a file name"):
        load_agent(run.root)
    run.config_path.write_text("{not json")
    with pytest.raises(CheckpointError, match=rf"{run.config_path}: not a readable agent run configuration"):
        load_agent(run.root)


def test_load_agent_takes_a_relative_path(tmp_path, monkeypatch):
    _fake_run(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    policy, _ = load_agent("run")
    assert policy.module.action_space.n == len(KEEP)


# ---------------------------------------------------------------------------- 8, 9: run directories


def test_a_run_without_a_completed_checkpoint_starts_again_and_has_nothing_to_resume(tmp_path):
    run = _fake_run(tmp_path / "run")
    cfg = run.read_config()
    sel = Selection("B", (BC,), (WINE,), ("a",), ("b",))
    # a completed checkpoint: a new run is refused, resume is allowed
    with pytest.raises(ConfigError, match="already holds a training run; pass --resume"):
        check_run(run, cfg, resume=False)
    assert check_run(run, cfg, resume=True)["checkpoint"] == "iter_000001"

    # what a run that failed before its first checkpoint leaves: config.json, progress.csv, a half-written checkpoint
    (run.checkpoints / "latest").unlink()
    (run.checkpoints / ".iter_000002.tmp").mkdir()
    with pytest.raises(ConfigError, match="--resume: nothing to resume from: .* has no completed checkpoint; "
                                          "run without --resume to start it again from scratch"):
        check_run(run, cfg, resume=True)
    assert check_run(run, cfg, resume=False) is None
    assert prepare_run(run, cfg, sel, resume=False) is None
    assert sorted(p.name for p in run.checkpoints.iterdir()) == []  # stale checkpoints cleared
    assert run.progress_rows() == [] and run.read_config() == cfg


def _train_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    train_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["train", *argv])
    return args.func(args)


def _prune_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    prune_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["prune", *argv])
    return args.func(args)


def test_train_out_that_is_a_file_is_refused_before_any_work(tmp_path):
    out = tmp_path / "run"
    out.write_text("not a directory")
    with pytest.raises(ConfigError, match=rf"run directory \(--out\) {out} exists and is not a directory"):
        _train_cli("--zoo", str(tmp_path / "no-zoo"), "--out", str(out))
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        train_agent(AgentTrainConfig(zoo=str(tmp_path / "no-zoo"), out=str(out)), progress=False)
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        _train_cli("--out", str(out), "--resume")
    assert out.read_text() == "not a directory"


# ---------------------------------------------------------------------------- 12: numeric values


@pytest.mark.parametrize("argv", [
    ["--tolerance", "150"], ["--tolerance", "nan"], ["--tolerance", "1:150"], ["--lr", "0"], ["--lr", "inf"],
    ["--lr", "nan"], ["--gamma", "0"], ["--gamma", "1.5"], ["--entropy", "-1"], ["--entropy", "inf"],
    ["--runners", "-1"], ["--episodes", "0"], ["--loops", "0"], ["--checkpoint-every", "0"],
    ["--keep-checkpoints", "0"], ["--keep-rates", "1.0,1.5"], ["--keep-rates", "nan"], ["--hidden", "0"],
    ["--finetune-epochs", "0"], ["--finetune-rows", "1"], ["--warmup", "-1"], ["--batch-steps", "0"],
    ["--seed", "-1"], ["--seed", str(2**32)],
])
def test_train_refuses_out_of_range_numbers_at_the_cli(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        _train_cli("--zoo", "z", "--out", "o", *argv)
    assert exc.value.code == 2 and f"argument {argv[0]}" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--tolerance", "150"], ["--tolerance", "-1"], ["--tolerance", "nan"],
                                  ["--seed", "-1"]])
def test_prune_refuses_out_of_range_numbers_at_the_cli(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        _prune_cli("--agent", "a", "--results", "r", *argv)
    assert exc.value.code == 2 and f"argument {argv[0]}" in capsys.readouterr().err


@pytest.mark.parametrize("kw, message", [
    ({"episode": {"tolerance": 150.0}}, r"tolerance .* <= 100 .* got 150.0"),
    ({"episode": {"tolerance": (1.0, 150.0)}}, r"tolerance .* <= 100"),
    ({"episode": {"tolerance": math.nan}}, r"tolerance .* finite"),
    ({"episode": {"tolerance": math.inf}}, r"tolerance .* finite"),
    ({"lr": math.inf}, r"AgentTrainConfig.lr must be a finite number in \(0, inf\), got inf"),
    ({"lr": math.nan}, r"AgentTrainConfig.lr must be a finite number"),
    ({"gamma": math.nan}, r"AgentTrainConfig.gamma must be a finite number in \(0, 1\], got nan"),
    ({"entropy_coeff": math.nan}, r"AgentTrainConfig.entropy_coeff must be a finite number in \[0, inf\), got nan"),
    ({"entropy_coeff": math.inf}, r"AgentTrainConfig.entropy_coeff"),
    ({"seed": 2**32}, r"seed must be an integer in \[0, 4294967295\]"),
    ({"episode": {"keep_rates": (1.0, math.nan)}}, "keep_rates must be a non-empty list of numbers in"),
])
def test_agent_config_refuses_out_of_range_numbers(kw, message):
    with pytest.raises(ConfigError, match=message):
        AgentTrainConfig(zoo="z", **{k: default_agent_episode(**v) if k == "episode" else v for k, v in kw.items()})


@pytest.mark.parametrize("kw, message", [
    ({"tolerance": 101}, "tolerance must be a number >= 0"),
    ({"tolerance": [1, math.inf]}, "tolerance must be a number >= 0"),
    ({"probe_rows": 2.5}, r"probe_rows must be an integer in \[2, inf\), got 2.5"),
    ({"latency_repeats": 0}, r"latency_repeats must be an integer in \[1, inf\)"),
    ({"seed": -1}, r"seed must be an integer in \[0, 4294967295\]"),
])
def test_env_config_refuses_out_of_range_numbers(kw, message):
    with pytest.raises(ConfigError, match=message):
        EnvConfig.from_dict({"zoo": "z", **kw})


@pytest.mark.parametrize("kw, message", [
    ({"lr": math.nan}, r"FinetuneConfig.lr must be a finite number in \(0, inf\), got nan"),
    ({"lr": math.inf}, r"FinetuneConfig.lr must be a finite number"),
    ({"lr": 0}, r"FinetuneConfig.lr must be a finite number"),
    ({"seed": -1}, r"FinetuneConfig.seed must be an integer in \[0, 4294967295\]"),
])
def test_finetune_config_refuses_out_of_range_numbers(kw, message):
    with pytest.raises(ConfigError, match=message):
        FinetuneConfig(**kw)


# ---------------------------------------------------------------------------- issue 8: empty iterations


@pytest.mark.parametrize("runners", [
    {"neon_episodes": math.nan, "neon_return_sum": math.nan, "num_env_steps_sampled": math.nan},
    {"neon_episodes": 0.0},
    {},
])
def test_an_iteration_without_finished_episodes_does_not_crash(runners):
    means = iteration_means({"env_runners": runners})
    assert means["episodes"] == 0
    assert all(math.isnan(means[k]) for k in ("return_mean", "reduction_mean", "reduction_geomean", "acc_change_pp_mean"))
    row = progress_row({"env_runners": runners}, 3, 10, 1.0, 5.0)
    assert (row["episodes"], row["env_steps"]) == (0, 0)
    assert iteration_means({})["episodes"] == 0


# ---------------------------------------------------------------------------- on Ray


@pytest.mark.ray
def test_prune_with_a_relative_agent_path_never_runs_the_rllib_pickles(tiny_zoo, tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    run = _fake_run(tmp_path / "run", zoo=str(tiny_zoo.root))
    assert _tamper(run.root, marker)
    monkeypatch.chdir(tmp_path)
    assert _prune_cli("--agent", "run", "--results", "res", "--no-timing") == 0
    assert not marker.exists()
    from neon_ray.results.store import read_results
    frame = read_results(tmp_path / "res")
    assert sorted(frame["network_id"]) == sorted(tiny_zoo.network_ids(dataset=WINE))


@pytest.mark.ray
def test_prune_selecting_no_network_is_a_config_error(tiny_zoo, tmp_path):
    import shutil

    import pandas as pd
    # a copy of the zoo whose networks all have the 'train' role: protocol A has nothing to report on
    zoo = tmp_path / "zoo"
    shutil.copytree(tiny_zoo.root, zoo)
    for manifest in zoo.rglob("manifest.parquet"):
        frame = pd.read_parquet(manifest)
        frame["role"] = "train"
        frame.to_parquet(manifest)
    run = _fake_run(tmp_path / "run", zoo=str(zoo), holdout=())
    with pytest.raises(ConfigError, match="no network to prune in zoo .*choose other --datasets or --role"):
        _prune_cli("--agent", str(run.root), "--results", str(tmp_path / "res"))
    with pytest.raises(ConfigError, match="no network"):
        _prune_cli("--agent", str(run.root), "--datasets", WINE, "--role", "test", "--results", str(tmp_path / "res"))
    assert not (tmp_path / "res").exists()


@pytest.mark.ray
def test_a_refused_or_failed_run_leaves_a_directory_the_next_run_accepts(tiny_zoo, tmp_path, monkeypatch):
    from neon_ray.agent import training

    out = tmp_path / "run"
    base = ("--zoo", str(tiny_zoo.root), "--out", str(out), "--datasets", BC, "--tolerance", "50", "--keep-rates", "1.0,0.6",
            "--loops", "1", "--episodes", "1", "--warmup", "0", "--batch-steps", "1", "--finetune-epochs", "1",
            "--finetune-rows", "64", "--hidden", "8", "--quiet")
    with pytest.raises(ConfigError, match="50 EnvRunners do not fit on 2 CPUs"):
        _train_cli(*base, "--runners", "50")
    assert not out.exists()  # refused before anything was written

    def crash(*args, **kwargs):
        raise ConfigError("simulated failure before the first checkpoint")

    monkeypatch.setattr(training, "train_loop", crash)
    with pytest.raises(ConfigError, match="simulated failure"):
        _train_cli(*base)
    monkeypatch.undo()
    assert (out / "config.json").is_file() and not (out / "checkpoints" / "latest").exists()
    with pytest.raises(ConfigError, match="nothing to resume from.*run without --resume"):
        _train_cli("--out", str(out), "--resume")
    assert _train_cli(*base) == 0  # starts again from scratch
    run = RunDir(out)
    ckpt = run.latest_checkpoint()
    assert (ckpt / SPEC_FILE).is_file() and (ckpt / WEIGHTS_FILE).is_file()
    assert load_agent(out)[0].module.action_space.n == 2
    assert os.path.isdir(ckpt / POLICY_SUBDIR)  # RLlib's own checkpoint stays, for --resume
