"""The pruning environment on a tiny zoo built in-process (no Ray): API, episode shape, info, errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from neon_ray.nets.checkpoint import save_network
from neon_ray.pruning.catalogue import STEP_OVERHEAD, assign_datasets, dataset_costs, step_shares
from neon_ray.pruning.env import PruningEnv
from neon_ray.pruning.episode_config import EnvConfig
from neon_ray.errors import ConfigError, DataError, NeonRayError
from neon_ray.pruning.observation import OBS_NAMES, OBS_SIZE
from neon_ray.nets.metrics import count_params
from neon_ray.nets.spec import ArchSpec, SamplerConfig, build_mlp
from neon_ray.nets.training import TrainConfig
from neon_ray.data.datasets import load_dataset
from neon_ray.zoo.build import plan_networks, train_planned
from neon_ray.zoo.config import ZooConfig, dataset_slug
from neon_ray.zoo.store import open_zoo, write_manifest, write_zoo_file

BC, WINE = "sklearn:breast_cancer", "sklearn:wine"
# hidden widths and pre-layers per network, in index order; roles come from the zoo's seeded split
LAYOUTS = {
    BC: [((12,), ("none",)), ((10, 8), ("batchnorm", "dropout")), ((12, 9, 6), ("none", "batchnorm", "none"))],
    WINE: [((8, 6), ("dropout", "batchnorm")), ((7,), ("batchnorm",))],
}
FAST = {"max_epochs": 2, "patience": 1, "batch_size": 64}


def _build_tiny_zoo(root) -> None:
    """A real zoo directory (zoo.json, manifests, networks) with chosen architectures, trained briefly."""
    cfg = ZooConfig(out=str(root), datasets=tuple(LAYOUTS), networks=3, test_networks=1,
                    sampler=SamplerConfig(max_layers=3), train=TrainConfig(max_epochs=3, patience=2))
    write_zoo_file(cfg)
    for name, layouts in LAYOUTS.items():
        data = load_dataset(name, None, seed=cfg.seed, split=cfg.split)
        plans = plan_networks(name, data.n_features, data.n_classes, cfg)[: len(layouts)]
        for plan, (hidden, pre) in zip(plans, layouts):
            plan["spec"] = ArchSpec(data.n_features, data.n_classes, hidden, ("relu",) * len(hidden), pre).to_dict()
            state, row = train_planned(plan, data, cfg.train)
            model = build_mlp(ArchSpec.from_dict(plan["spec"]))
            model.load_state_dict(state)
            save_network(model, root / dataset_slug(name) / "networks" / plan["network_id"], meta=row)
        write_manifest(root, name)


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    _build_tiny_zoo(root)
    return root


@pytest.fixture(scope="module")
def ids(zoo_dir):
    frame = open_zoo(zoo_dir).manifest()
    return {(row.dataset, row.depth): row.network_id for row in frame.itertuples()}


def make_env(zoo_dir, **kw) -> PruningEnv:
    return PruningEnv({"zoo": str(zoo_dir), "networks": "all", "finetune": FAST, **kw})


def run_episode(env, policy=lambda step: 2, seed=None):
    obs, info = env.reset(seed=seed)
    infos, rewards, done = [], [], False
    while not done:
        obs, reward, done, truncated, info = env.step(policy(len(infos)))
        assert obs.shape == (OBS_SIZE,) and env.observation_space.contains(obs) and not truncated
        infos.append(info)
        rewards.append(reward)
    return infos, rewards


def test_check_env_passes(zoo_dir):
    env = make_env(zoo_dir, info_timings=False, remove_layer_action=True, tolerance=[1, 50])
    check_env(env, skip_render_check=True)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_one_loop_visits_every_hidden_layer_once_including_the_last(zoo_dir, ids, depth):
    env = make_env(zoo_dir, networks=[ids[(BC, depth)]], loops=1)
    infos, _ = run_episode(env)
    assert [i["layer"] for i in infos] == list(range(depth))
    assert env.current_model().spec.hidden == tuple(int(np.ceil(0.8 * w - 1e-9)) for w in LAYOUTS[BC][depth - 1][0])


def test_four_loops_take_four_times_depth_steps_and_cycle(zoo_dir, ids):
    env = make_env(zoo_dir, networks=[ids[(BC, 2)]], loops=4)
    infos, _ = run_episode(env, policy=lambda step: 0)  # keep everything: fast
    assert [i["layer"] for i in infos] == [0, 1] * 4
    assert [i["loop"] for i in infos] == [0, 1, 1, 2, 2, 3, 3, 4]
    assert infos[-1]["actions"] == [0] * 8


def test_info_contents_and_pruning_progress(zoo_dir, ids):
    nid = ids[(WINE, 2)]
    env = make_env(zoo_dir, networks=[nid], loops=1, tolerance=5.0)
    _, reset_info = env.reset()
    orig = env.current_model()
    assert reset_info["network_id"] == nid and reset_info["dataset"] == WINE and reset_info["tolerance"] == 5.0
    infos, rewards = run_episode(env, policy=lambda step: [4, 3][step])
    first, last = infos
    for key in ("network_id", "dataset", "step", "layer", "keep_rate", "val_acc", "val_acc_orig", "params", "params_orig",
                "arch", "actions", "seconds", "finetune_epochs", "tolerance", "loop"):
        assert key in first, key
    assert (first["step"], first["layer"], first["keep_rate"]) == (1, 0, 0.6)
    assert (last["step"], last["layer"], last["keep_rate"]) == (2, 1, 0.7)
    assert last["actions"] == [4, 3]
    assert last["params_orig"] == count_params(orig) > first["params"] > last["params"] == count_params(env.current_model())
    assert first["arch"] == "13-[do]5relu-[bn]6relu-3" and last["arch"] == "13-[do]5relu-[bn]5relu-3"
    assert set(first["seconds"]) == {"compress", "finetune", "eval", "observe"} and first["finetune_epochs"] >= 1
    assert 0.0 <= last["val_acc"] <= 1.0 and last["val_acc_orig"] == first["val_acc_orig"]
    # NEON's reward: s = 40, then 10; the sign follows the accuracy change against a = 5
    d = 100 * (first["val_acc"] - first["val_acc_orig"])
    assert rewards[0] == pytest.approx(-(40.0**3) if d < -5 else 40.0**3 if d > 0 else 40.0)
    assert orig.spec.hidden == (8, 6)  # the zoo's network itself is never modified


def test_keep_rate_one_is_free_and_changes_nothing(zoo_dir, ids):
    env = make_env(zoo_dir, networks=[ids[(BC, 3)]])
    env.reset()
    model = env.current_model()
    _, reward, _, _, info = env.step(0)
    assert reward == 0.0 and env.current_model() is model
    assert info["finetune_epochs"] == 0 and info["seconds"]["finetune"] == 0.0 and info["val_acc"] == info["val_acc_orig"]


def test_keep_rate_that_keeps_every_neuron_is_a_no_op(zoo_dir, ids):
    env = make_env(zoo_dir, networks=[ids[(WINE, 2)]], loops=1)
    env.reset()
    env.step(4)  # layer 0: 8 -> 5
    model = env.current_model()
    _, reward, _, _, info = env.step(1)  # layer 1: ceil(0.9 * 6) = 6, nothing to remove
    assert env.current_model() is model and reward == 0.0
    assert info["keep_rate"] == 0.9 and not info["changed"] and info["finetune_epochs"] == 0


def test_remove_layer_action_shrinks_depth_and_keeps_cycling(zoo_dir, ids):
    env = make_env(zoo_dir, networks=[ids[(BC, 3)]], loops=1, remove_layer_action=True)
    assert env.action_space.n == 6
    infos, rewards = run_episode(env, policy=lambda step: 5)
    # layer 0 merged away -> the old layer 1 is now layer 0, removed too -> one layer left: no-op
    assert [i["layer"] for i in infos] == [0, 0, 0]
    assert [i["removed_layer"] for i in infos] == [True, True, False]
    assert [i["action_valid"] for i in infos] == [True, True, False]
    assert env.current_model().spec.depth == 1 and rewards[2] == 0.0
    assert infos[0]["params"] < infos[0]["params_orig"]


def test_remove_last_layer_wraps_to_the_first(zoo_dir, ids):
    env = make_env(zoo_dir, networks=[ids[(BC, 2)]], loops=2, remove_layer_action=True)
    infos, _ = run_episode(env, policy=lambda step: [0, 5, 0, 0][step])
    assert [i["layer"] for i in infos] == [0, 1, 0, 0]
    assert [i["loop"] for i in infos] == [0, 1, 2, 3]
    assert env.current_model().spec.depth == 1


def test_seeded_runs_repeat_and_networks_cycle_over_datasets(zoo_dir):
    def episodes(env, n):
        out = []
        for _ in range(n):
            infos, rewards = run_episode(env, policy=lambda step: 3)
            out.append((infos[0]["network_id"], infos[0]["dataset"], rewards, infos[-1]["val_acc"]))
        return out

    cfg = dict(loops=1, seed=3, tolerance=[1.0, 50.0])
    a, b = episodes(make_env(zoo_dir, **cfg), 6), episodes(make_env(zoo_dir, **cfg), 6)
    assert a == b
    assert [e[1] for e in a] == [BC, WINE] * 3
    assert {e[0] for e in a if e[1] == BC} == set(open_zoo(zoo_dir).network_ids(BC))


def test_tolerance_range_is_sampled_per_episode(zoo_dir):
    env = make_env(zoo_dir, tolerance=[1, 50], seed=0)
    tols = [env.reset()[1]["tolerance"] for _ in range(8)]
    assert all(1 <= t <= 50 for t in tols) and len(set(tols)) == 8
    with pytest.raises(ConfigError, match="log-uniform sampling needs lo > 0"):
        make_env(zoo_dir, tolerance=[0, 5])
    assert 0 <= make_env(zoo_dir, tolerance=[0, 5], tolerance_sampling="uniform").reset()[1]["tolerance"] <= 5


def test_role_filter(zoo_dir):
    env = PruningEnv({"zoo": str(zoo_dir), "networks": "test", "datasets": [BC]})
    manifest = open_zoo(zoo_dir).manifest(BC)
    expected = set(manifest.loc[manifest["role"] == "test", "network_id"])
    assert {env.reset()[1]["network_id"] for _ in range(4)} <= expected


def test_accuracy_on_test_split(zoo_dir, ids):
    nid = ids[(BC, 2)]
    env = make_env(zoo_dir, networks=[nid], loops=1)
    run_episode(env)
    row = open_zoo(zoo_dir).row(nid)
    assert env.test_accuracy(original=True) == pytest.approx(row["test_acc"])
    assert 0.0 <= env.test_accuracy() <= 1.0


def test_composite_reward_gets_its_measurements(zoo_dir, ids):
    env = make_env(zoo_dir, networks=[ids[(BC, 2)]], loops=1, reward="composite",
                   reward_params={"w_params": 1.0, "w_flops": 1.0, "w_metric": 0.0, "penalty": 0.0, "penalty_per_pp": 0.0})
    env.reset()
    _, reward, _, _, info = env.step(4)
    params_share = (info["params_orig"] - info["params"]) / info["params_orig"]
    assert reward > params_share > 0  # the FLOPs share adds to it


def test_datasets_are_spread_over_workers():
    names = ["d", "a", "c", "b", "e"]
    assert assign_datasets(names, 0, 2) == ["a", "b", "c", "d", "e"]  # local worker: all
    assert assign_datasets(names, 1, 0) == ["a", "b", "c", "d", "e"]
    assert assign_datasets(names, 1, 2) == ["a", "c", "e"] and assign_datasets(names, 2, 2) == ["b", "d"]
    assert [assign_datasets(["a", "b"], w, 5) for w in range(1, 6)] == [["a"], ["b"], ["a"], ["b"], ["a"]]


class _EnvContext(dict):
    """What RLlib passes to an env creator: the config dict plus worker attributes."""

    def __init__(self, config, worker_index, num_workers):
        super().__init__(config)
        self.worker_index, self.num_workers, self.vector_index = worker_index, num_workers, 0


def test_env_context_worker_attributes_pick_datasets(zoo_dir):
    envs = [PruningEnv(_EnvContext({"zoo": str(zoo_dir), "networks": "all"}, w, 2)) for w in (1, 2)]
    seen = [{env.reset()[1]["dataset"] for _ in range(3)} for env in envs]
    assert seen == [{BC}, {WINE}]
    assert envs[0].config.worker_index == 1 and envs[0].config.num_workers == 2


def test_bad_inputs_are_clear_errors(zoo_dir, ids, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown reward 'fancy'"):
        make_env(zoo_dir, reward="fancy")
    with pytest.raises(ConfigError, match=r"unknown network ID\(s\) \['nope__s0__n000'\]"):
        make_env(zoo_dir, networks=["nope__s0__n000"])
    with pytest.raises(ConfigError, match=r"datasets \['sklearn:iris'\] are not in the zoo"):
        make_env(zoo_dir, datasets=["sklearn:iris"])
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['loop'\]"):
        make_env(zoo_dir, loop=2)
    with pytest.raises(ConfigError, match="needs 'zoo'"):
        PruningEnv({})
    with pytest.raises(ConfigError, match="unknown key"):
        make_env(zoo_dir, finetune={"epochs": 1})
    env = make_env(zoo_dir, networks=[ids[(BC, 1)]])
    with pytest.raises(NeonRayError, match="reset"):
        env.step(0)
    env.reset()
    for bad in (5, -1, 1.5, "x"):
        with pytest.raises(ConfigError, match=r"action .* expected .*0\.\.4"):
            env.step(bad)


def test_zoo_without_networks_is_refused(tmp_path):
    (tmp_path / "zoo.json").write_text(json.dumps({"identity": {"seed": 0, "data_dir": None, "split": {}}, "datasets": []}))
    with pytest.raises(ConfigError, match="has no networks"):
        PruningEnv({"zoo": str(tmp_path)})
    with pytest.raises(NeonRayError, match="not a neon-ray zoo"):
        PruningEnv({"zoo": str(tmp_path / "missing")})


def test_network_that_does_not_fit_its_dataset_is_named(zoo_dir, tmp_path):
    import shutil

    root = tmp_path / "zoo"
    shutil.copytree(zoo_dir, root)
    folder = root / dataset_slug(WINE) / "networks"
    bad_id = "sklearn_wine__s0__n099"
    meta = {**json.loads(next(folder.glob("*.json")).read_text())["meta"], "network_id": bad_id, "index": 99}
    save_network(build_mlp(ArchSpec(5, 3, (4,), ("relu",), ("none",))), folder / bad_id, meta=meta)
    write_manifest(root, WINE)
    env = PruningEnv({"zoo": str(root), "networks": [bad_id]})
    with pytest.raises(DataError, match=rf"network {bad_id} expects 5 input features .* 13 features"):
        env.reset()


def test_env_config_parsing_defaults():
    cfg = EnvConfig.from_dict({"zoo": "z", "keep_rates": [1.0, 0.5], "tolerance": [1, 5]})
    assert cfg.episode.keep_rates == (1.0, 0.5) and cfg.episode.tolerance == (1.0, 5.0) and cfg.episode.loops == 4
    assert EnvConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="keep_rates"):
        EnvConfig.from_dict({"zoo": "z", "keep_rates": [0.0]})
    with pytest.raises(ConfigError, match="loops"):
        EnvConfig.from_dict({"zoo": "z", "loops": 0})


def test_costly_datasets_are_packed_longest_first_so_runners_finish_together():
    costs = {"big": 10.0, "mid": 6.0, "small1": 3.0, "small2": 1.0}
    one, two = (assign_datasets(list(costs), w, 2, costs) for w in (1, 2))
    assert one == ["big"] and two == ["mid", "small1", "small2"]
    assert sorted(one + two) == sorted(costs)
    assert assign_datasets(["a", "b", "c"], 1, 2, {"a": 1.0, "b": 1.0, "c": 1.0}) == ["a", "c"]  # equal costs: round robin


def test_guarded_reward_follows_the_smallest_network_within_tolerance(zoo_dir, ids):
    tolerance = 2.0
    env = make_env(zoo_dir, networks=[ids[(BC, 2)]], loops=3, reward="guarded", reward_params={"penalty": 0.5},
                   tolerance=tolerance)
    infos, rewards = run_episode(env, policy=lambda step: 4, seed=0)
    best, total = infos[0]["params_orig"], 0.0
    for info, reward in zip(infos, rewards):
        within = 100 * (info["val_acc"] - info["val_acc_orig"]) >= -tolerance
        shrink = math.log(best / info["params"]) if within and info["params"] < best else 0.0
        best = info["params"] if shrink else best
        assert reward == pytest.approx(shrink - (0.0 if within else 0.5))
        total += reward
    names = list(OBS_NAMES)
    obs = env._observe()
    assert obs[names.index("best_removed")] == pytest.approx(1 - best / infos[0]["params_orig"], abs=1e-6)
    assert obs[names.index("within_tolerance")] == float(100 * (infos[-1]["val_acc"] - infos[-1]["val_acc_orig"]) >= -tolerance)


def test_distilling_fine_tuning_runs_in_the_env(zoo_dir, ids):
    env = make_env(zoo_dir, networks=[ids[(BC, 2)]], loops=1, finetune={**FAST, "targets": "original"})
    infos, _ = run_episode(env, policy=lambda step: 2, seed=0)
    assert all(info["changed"] for info in infos) and env._episode.targets is not None


def test_step_shares_make_runners_with_dear_steps_sample_fewer():
    import pandas as pd

    rows = [("cheap", 1e5, 2), ("cheap", 1e5, 2), ("dear", 4e6, 2), ("mid", 1e6, 3)]
    manifest = pd.DataFrame(rows, columns=["dataset", "flops", "depth"]).assign(train_rows=1000)
    costs = dataset_costs(manifest, None)
    assert step_shares(manifest, 2, None) == {1: 0.5, 2: 0.5}  # no figures: equal
    assert step_shares(manifest, 1, costs) == {1: 1.0}
    shares = step_shares(manifest, 2, costs)
    assert math.isclose(sum(shares.values()), 1.0)
    per_step = {}
    for w in (1, 2):
        mine = assign_datasets(sorted(costs), w, 2, costs)
        depth = sum(manifest[manifest["dataset"] == d]["depth"].mean() for d in mine)
        per_step[w] = sum(costs[d] for d in mine) / depth + STEP_OVERHEAD
    assert math.isclose(shares[1] * per_step[1], shares[2] * per_step[2])  # both finish together
    assert (shares[1] < shares[2]) == (per_step[1] > per_step[2])


def test_each_remote_env_knows_its_share_of_a_batch(zoo_dir):
    envs = [PruningEnv(_EnvContext({"zoo": str(zoo_dir), "networks": "all"}, w, 2)) for w in (1, 2)]
    assert math.isclose(sum(env.batch_share for env in envs), 1.0) and all(0 < env.batch_share < 1 for env in envs)
    assert PruningEnv({"zoo": str(zoo_dir), "networks": "all"}).batch_share == 1.0  # the local worker samples it all
