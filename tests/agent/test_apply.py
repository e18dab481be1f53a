"""Applying a (briefly trained, real) agent: one network in-process, and a zoo on Ray via `neon-ray prune`."""
from __future__ import annotations

import argparse
import json
import pickle
import shutil

import numpy as np
import pytest
import torch

from neon_ray.agent.apply import apply_agent, prune_one, trained_episode
from neon_ray.agent.algos import LoadedPolicy
from neon_ray.agent.export import POLICY_SUBDIR
from neon_ray.agent.config import AgentTrainConfig, default_agent_episode
from neon_ray.agent.run_dir import RunDir, load_agent
from neon_ray.agent.training import train_agent
from neon_ray.nets.checkpoint import load_network
from neon_ray.cli import prune_cmd
from neon_ray.pruning.episode_config import EpisodeConfig
from neon_ray.pruning.episodes import RunOptions
from neon_ray.errors import ConfigError
from neon_ray.pruning.finetune import FinetuneConfig
from neon_ray.results.store import read_results

pytestmark = pytest.mark.ray
WINE, BC = "sklearn:wine", "sklearn:breast_cancer"
KEEP = (1.0, 0.8, 0.6, 0.4)


@pytest.fixture(scope="module")
def zoo(tiny_zoo):
    return tiny_zoo


@pytest.fixture(scope="module")
def run_dir(zoo, tmp_path_factory):
    """A real protocol-B run (wine held out) after one short A2C update: an untrained-ish policy is enough here."""
    out = tmp_path_factory.mktemp("agent")
    episode = default_agent_episode(keep_rates=KEEP, loops=2, tolerance=(1.0, 50.0),
                                    finetune=FinetuneConfig(max_epochs=1, patience=1))
    cfg = AgentTrainConfig(zoo=str(zoo.root), out=str(out), holdout=(WINE,), episode=episode, episodes=1,
                           warmup_episodes=0, train_batch_size=1)
    train_agent(cfg, progress=False)
    return out


def test_prune_one_follows_the_policy_without_ray_and_leaves_the_input(zoo, run_dir):
    policy, cfg = load_agent(run_dir)
    nid = zoo.network_ids(dataset=WINE)[0]
    model, _ = zoo.load(nid)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    data = zoo.dataset(WINE)
    env = trained_episode(cfg, tolerance=5)
    greedy = [prune_one(policy, model, data, env, network_id=nid) for _ in range(2)]
    sampled = [prune_one(policy, model, data, env, greedy=False, seed=s, network_id=nid) for s in (7, 7)]

    assert env.keep_rates == KEEP and env.loops == 2 and env.tolerance == 5.0
    assert greedy[0].actions == greedy[1].actions and len(greedy[0].actions) == 2 * model.spec.depth
    assert set(greedy[0].actions) <= set(KEEP)
    assert sampled[0].actions == sampled[1].actions and set(sampled[0].actions) <= set(KEEP)
    assert greedy[0].model.spec.depth == model.spec.depth
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_a_tolerance_range_needs_an_explicit_tolerance(run_dir):
    _, cfg = load_agent(run_dir)
    with pytest.raises(ConfigError, match="trained on tolerances 1 to 50 pp: give the tolerance"):
        trained_episode(cfg)


def test_prune_command_prunes_the_holdout_on_ray_and_saves_networks(zoo, run_dir, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    prune_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["prune", "--agent", str(run_dir), "--tolerance", "5", "--results", str(tmp_path / "res"),
                              "--save-networks", str(tmp_path / "nets"), "--no-timing"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "neon-a2c" in out and "mean_x" in out  # the summary table

    frame = read_results(tmp_path / "res")
    assert sorted(frame["network_id"]) == sorted(zoo.network_ids(dataset=WINE))  # protocol B: all held-out networks
    assert set(frame["method"]) == {"neon-a2c"} and set(frame["tolerance"]) == {5.0}
    assert (frame["params_after"] <= frame["params_before"]).all() and set(frame["loops"]) == {2}
    for row in frame.itertuples():
        pruned, meta = load_network(tmp_path / "nets" / "sklearn_wine" / row.network_id)
        assert pruned.spec.describe() == row.arch_after and meta["method"] == "neon-a2c"
        assert set(json.loads(row.actions)) <= set(KEEP)
    assert json.loads(frame["config"].iloc[0])["greedy"] is True
    # the guard is on by default: the returned network is one the episode visited, within 5 pp on val
    assert frame["guard"].all() and set(frame["config_label"]) == {"a=5 loops=2 guard"}
    for row in frame.itertuples():
        assert 0 <= row.returned_step <= len(json.loads(row.actions))
        assert 100 * (row.val_acc_after - row.val_acc_before) >= -5 - 1e-9


def test_apply_with_a_role_override_and_a_mismatched_action_set(zoo, run_dir):
    frame = apply_agent(run_dir, datasets=[BC], role="test", tolerance=1, progress=False, guard=False,
                        options=RunOptions(timing=False))
    assert list(frame["network_id"]) == zoo.network_ids(dataset=BC, role="test")
    assert not frame["guard"].any()  # unguarded: the last step's network
    assert [r.returned_step for r in frame.itertuples()] == [len(json.loads(a)) for a in frame["actions"]]

    policy, cfg = load_agent(run_dir)
    nid = zoo.network_ids(dataset=WINE)[0]
    with pytest.raises(ConfigError, match="policy has 4 actions but the env has 5"):
        prune_one(policy, zoo.load(nid)[0], zoo.dataset(WINE), EpisodeConfig(keep_rates=(1.0, 0.9, 0.8, 0.7, 0.6)))


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def test_trained_run_exports_the_policy_and_prune_never_unpickles(zoo, run_dir, tmp_path):
    """A real run's export equals RLlib's module; with every RLlib pickle replaced, loading and pruning
    still work and the attacker's code never runs."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    checkpoint = RunDir(run_dir).latest_checkpoint()
    assert (checkpoint / "policy.json").is_file() and (checkpoint / "policy.pt").is_file()
    policy, _ = load_agent(run_dir)
    rllib = LoadedPolicy(RLModule.from_checkpoint(str(checkpoint / POLICY_SUBDIR)))  # our own, trusted file
    obs = np.random.default_rng(1).uniform(-10, 10, (100, policy.module.observation_space.shape[0])).astype(np.float32)
    np.testing.assert_array_equal([policy.action_probs(o) for o in obs], [rllib.action_probs(o) for o in obs])

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    marker = tmp_path / "marker"
    pickles = sorted(copy.rglob("*.pkl"))
    assert pickles
    for path in pickles:
        path.write_bytes(pickle.dumps(_Payload(marker)))
    policy, cfg = load_agent(copy)
    nid = zoo.network_ids(dataset=WINE)[0]
    pruned = prune_one(policy, zoo.load(nid)[0], zoo.dataset(WINE), trained_episode(cfg, tolerance=5), network_id=nid)
    assert set(pruned.actions) <= set(KEEP)
    frame = apply_agent(copy, datasets=[BC], role="test", tolerance=1, progress=False, options=RunOptions(timing=False))
    assert len(frame) == 1
    assert not marker.exists()


def test_resuming_a_run_from_before_the_export_adds_it(run_dir, tmp_path):
    """Migration path for runs trained before the safe format: prune refuses them, a (trusted) resume exports."""
    from dataclasses import replace

    from neon_ray.errors import CheckpointError

    copy = tmp_path / "old"
    shutil.copytree(run_dir, copy)
    checkpoint = RunDir(copy).latest_checkpoint()
    (checkpoint / "policy.json").unlink()
    (checkpoint / "policy.pt").unlink()
    with pytest.raises(CheckpointError, match="holds an RLlib checkpoint but no safe policy export"):
        load_agent(copy)
    cfg = replace(RunDir(copy).read_config(), out=str(copy))
    broken = tmp_path / "broken"
    shutil.copytree(copy, broken)
    for path in broken.rglob("*.pkl"):  # truncated: resuming says so in one line, naming the checkpoint
        path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(CheckpointError, match=r"iter_\d+: RLlib could not restore this checkpoint"):
        train_agent(replace(cfg, out=str(broken)), resume=True, progress=False)
    train_agent(cfg, resume=True, progress=False)
    assert RunDir(copy).latest_checkpoint() == checkpoint and (checkpoint / "policy.json").is_file()
    assert load_agent(copy)[0].module.action_space.n == len(KEEP)
