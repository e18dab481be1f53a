"""The shared episode runner: one row per network, real pruning, seeding, saving, Deep Compression."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from neon_ray.nets.checkpoint import load_network
from neon_ray.pruning.batch import run_episode, run_networks, zoo_networks
from neon_ray.pruning.episodes import (
    EpisodePruner, FixedChooser, RandomChooser, RunOptions, prune_episode,
)
from neon_ray.errors import ConfigError
from neon_ray.pruning.episode_config import EpisodeConfig
from neon_ray.pruning.finetune import FinetuneConfig
from neon_ray.results.store import read_results

pytestmark = pytest.mark.ray
FAST_EPISODE = EpisodeConfig(finetune=FinetuneConfig(max_epochs=2, patience=1))
NO_TIMING = RunOptions(timing=False)


@pytest.fixture(scope="module")
def zoo(tiny_zoo):
    return tiny_zoo


def _uniform(rate: float) -> EpisodePruner:
    return EpisodePruner("uniform", f"keep={rate}", replace(FAST_EPISODE, keep_rates=(rate,), loops=1), FixedChooser(0))


def test_uniform_half_on_ray_gives_one_row_per_network_and_halves_widths(zoo, tmp_path):
    networks = zoo_networks(zoo, None, "all")
    frame = run_networks(zoo, _uniform(0.5), networks, run_id="u50", results=tmp_path / "res",
                         options=RunOptions(timing=False, save_dir=str(tmp_path / "nets")), progress=False)

    assert sorted(frame["network_id"]) == sorted(zoo.manifest()["network_id"])
    assert (frame["params_after"] <= frame["params_before"]).all() and (frame["params_after"] < frame["params_before"]).all()
    assert set(frame["method"]) == {"uniform"} and set(frame["run_id"]) == {"u50"}
    for row in frame.itertuples():
        original, _ = zoo.load(row.network_id)
        pruned, meta = load_network(tmp_path / "nets" / row.dataset.replace(":", "_") / row.network_id)
        assert pruned.spec.hidden == tuple(math.ceil(w / 2) for w in original.spec.hidden)
        assert pruned.spec.describe() == row.arch_after and original.spec.describe() == row.arch_before
        assert json.loads(row.actions) == [0.5] * original.spec.depth
        assert meta["source_network_id"] == row.network_id and meta["dataset"] == row.dataset
        assert meta["data_dir"] == zoo.data_dir and meta["seed"] == zoo.seed
    # written per dataset, readable back, matched by network ID
    back = read_results(tmp_path / "res")
    assert sorted(back["network_id"]) == sorted(frame["network_id"])
    assert len(list((tmp_path / "res").rglob("*.parquet"))) == 2


def test_random_agent_is_seeded_per_network(zoo):
    nid = zoo.network_ids(role="train")[0]
    pruner = lambda seed: EpisodePruner("random", "loops=4", replace(FAST_EPISODE, loops=4), RandomChooser(seed), seed=seed)
    first, again, other = (run_episode(zoo, nid, pruner(s), options=NO_TIMING)[0] for s in (3, 3, 4))

    depth = zoo.load(nid)[0].spec.depth
    assert len(json.loads(first["actions"])) == 4 * depth
    assert set(json.loads(first["actions"])) <= {1.0, 0.9, 0.8, 0.7, 0.6}
    for key in ("actions", "arch_after", "params_after", "test_acc_after", "val_acc_after"):
        assert first[key] == again[key]
    assert first["actions"] != other["actions"]
    assert first["loops"] == 4 and first["test_acc_before"] == pytest.approx(zoo.row(nid)["test_acc"])


def test_prune_episode_leaves_the_original_alone(zoo):
    nid = zoo.network_ids()[0]
    model, _ = zoo.load(nid)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    data = zoo.dataset(zoo.row(nid)["dataset"])
    pruned = prune_episode(model, data, nid, replace(FAST_EPISODE, keep_rates=(0.25,), loops=1), lambda _obs: 0)

    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert pruned.model.spec.hidden == tuple(math.ceil(w / 4) for w in model.spec.hidden)
    assert pruned.actions == [0.25] * model.spec.depth and pruned.seconds > 0


def test_deep_compression_adds_a_dc_row_with_the_real_file_size(zoo, tmp_path):
    from neon_ray.deepcomp.pipeline import DeepCompConfig
    from neon_ray.nets.training import TrainConfig

    nid = zoo.network_ids(dataset="sklearn:wine")[0]
    dc = DeepCompConfig(q_schedule=(0.5, 1.0), prune_retrain=TrainConfig(max_epochs=1, batch_size=128), share_retrain=TrainConfig(max_epochs=1, batch_size=128))
    options = RunOptions(timing=False, compress=True, deepcomp=dc, save_dir=str(tmp_path))
    rows = run_episode(zoo, nid, _uniform(0.5), run_id="dc", options=options)

    assert [r["method"] for r in rows] == ["uniform", "uniform+dc"]
    plain, dc_row = rows
    file = tmp_path / "sklearn_wine" / f"{nid}.nrdc"
    assert dc_row["bytes_after"] == file.stat().st_size < plain["bytes_after"]
    assert dc_row["params_after"] < plain["params_after"]  # non-zeros after magnitude pruning
    assert dc_row["arch_after"] == plain["arch_after"] and "deepcomp" in json.loads(dc_row["config"])


def test_env_config_mistakes_fail_before_any_work(zoo):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['networks', 'zoo'\]"):
        EpisodeConfig.from_dict({"zoo": "x", "networks": "all"})  # the runner sets those per network
    with pytest.raises(ConfigError, match="unknown key"):
        EpisodeConfig.from_dict({"loop": 4})
    with pytest.raises(ConfigError, match="must be an EpisodeConfig, got dict"):
        EpisodePruner("random", "x", {"loops": 4}, RandomChooser())
    with pytest.raises(ConfigError, match="role must be"):
        zoo_networks(zoo, None, "holdout")
    with pytest.raises(ConfigError, match=r"\['nope'\] are not in the zoo"):
        zoo_networks(zoo, ["nope"], "all")
