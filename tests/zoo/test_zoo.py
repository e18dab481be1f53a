"""Zoo building on the shared local Ray: contents, stable IDs, roles, resumability."""
import json

import pandas as pd
import pytest
import torch

from neon_ray.nets.checkpoint import load_network
from neon_ray.errors import ConfigError, NeonRayError
from neon_ray.nets.spec import SamplerConfig
from neon_ray.nets.training import TrainConfig
from neon_ray.zoo.build import assign_roles, build_zoo, plan_networks
from neon_ray.zoo.config import ZooConfig, network_id, zoo_train_config
from neon_ray.zoo.store import open_zoo

TINY = dict(
    datasets=("sklearn:wine", "sklearn:breast_cancer"),
    networks=3,
    test_networks=1,
    sampler=SamplerConfig(max_layers=2, widths=(8, 16)),
    train=TrainConfig(max_epochs=3, patience=2),
)


def test_ids_roles_and_plans_are_stable():
    cfg = ZooConfig(out="unused", networks=30, test_networks=6, **{k: v for k, v in TINY.items() if k not in ("networks", "test_networks")})
    assert network_id("sklearn:wine", 0, 7) == "sklearn_wine__s0__n007"
    roles = assign_roles("phoneme", cfg)
    assert roles.count("test") == 6 and roles == assign_roles("phoneme", cfg)
    assert plan_networks("phoneme", 5, 2, cfg) == plan_networks("phoneme", 5, 2, cfg)


@pytest.mark.ray
def test_build_is_complete_resumable_and_crash_safe(tmp_path, ray_session):
    cfg = ZooConfig(out=str(tmp_path / "zoo"), **TINY)
    manifest = build_zoo(cfg, progress=False)
    assert len(manifest) == 6
    assert manifest.groupby("dataset")["role"].apply(lambda r: (r == "test").sum()).tolist() == [1, 1]
    zoo = open_zoo(tmp_path / "zoo")
    assert sorted(zoo.network_ids()) == sorted(manifest["network_id"])
    nid = manifest["network_id"].iloc[0]
    model, meta = zoo.load(nid)
    data = zoo.dataset(meta["dataset"])
    assert model(data.X_val[:4]).shape == (4, data.n_classes)

    first = {p: p.stat().st_mtime_ns for p in (tmp_path / "zoo").rglob("*.pt")}
    again = build_zoo(cfg, progress=False)  # nothing to do
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "zoo").rglob("*.pt")} == first
    pd.testing.assert_frame_equal(again.sort_values("network_id").reset_index(drop=True),
                                  manifest.sort_values("network_id").reset_index(drop=True))

    # A crash after writing weights but before the description leaves an incomplete network:
    # it must not be listed, and the next build retrains exactly that one.
    stem = zoo.stem(nid)
    stem.with_suffix(".json").unlink()
    (stem.parent / ".junk.tmp").write_bytes(b"half")
    from neon_ray.nets.checkpoint import network_exists
    from neon_ray.zoo.store import write_manifest

    assert not network_exists(stem)
    assert nid not in write_manifest(tmp_path / "zoo", meta["dataset"])["network_id"].tolist()
    rebuilt = build_zoo(cfg, progress=False)
    assert len(rebuilt) == 6
    assert {p for p, t in first.items() if p.stat().st_mtime_ns != t} == {stem.with_suffix(".pt")}
    retrained, _ = load_network(stem)
    assert all(torch.equal(a, b) for a, b in zip(retrained.state_dict().values(), model.state_dict().values()))


@pytest.mark.ray
def test_other_settings_cannot_write_into_an_existing_zoo(tmp_path, ray_session):
    cfg = ZooConfig(out=str(tmp_path / "zoo"), **{**TINY, "datasets": ("sklearn:wine",), "networks": 1, "test_networks": 0})
    build_zoo(cfg, progress=False)
    other = ZooConfig(out=str(tmp_path / "zoo"), seed=1, **{**TINY, "datasets": ("sklearn:wine",), "networks": 1, "test_networks": 0})
    with pytest.raises(ConfigError, match="other settings"):
        build_zoo(other, progress=False)


def test_opening_a_non_zoo_is_a_clear_error(tmp_path):
    with pytest.raises(NeonRayError, match="not a neon-ray zoo"):
        open_zoo(tmp_path)


def test_a_zoo_written_before_new_training_settings_stays_extendable(tmp_path):
    """Settings added to TrainConfig later (optimizer, schedule, settle phase) default to the old behaviour."""
    import json

    from neon_ray.zoo.store import ZOO_FILE, check_zoo_file, write_zoo_file

    cfg = ZooConfig(out=str(tmp_path), datasets=("sklearn:wine",), networks=2, test_networks=1, train=TrainConfig())
    write_zoo_file(cfg)
    path = tmp_path / ZOO_FILE
    doc = json.loads(path.read_text())
    for key in ("optimizer", "momentum", "lr_schedule", "lr_factor", "lr_drops", "settle_epochs"):
        doc["identity"]["train"].pop(key)
    path.write_text(json.dumps(doc))
    (tmp_path / "sklearn_wine" / "networks").mkdir(parents=True)
    (tmp_path / "sklearn_wine" / "networks" / "sklearn_wine__s0__n000.json").write_text("{}")
    assert check_zoo_file(cfg)["identity"] == json.loads(json.dumps(cfg.identity()))


def test_zoo_training_ends_with_a_settle_phase_recorded_in_the_manifest(tmp_path):
    assert zoo_train_config().settle_epochs == 100 and zoo_train_config(max_epochs=5).settle_epochs == 5
    assert zoo_train_config(max_epochs=5, settle_epochs=0).settle_epochs == 0
    dropout = SamplerConfig(max_layers=1, widths=(8,), pre_probs={"dropout": 1.0}, act_probs={"relu": 1.0})
    cfg = ZooConfig(out=str(tmp_path), datasets=("sklearn:wine",), networks=1, test_networks=0, sampler=dropout,
                    train=zoo_train_config(max_epochs=4, patience=2))
    row = build_zoo(cfg, progress=False, in_process=True).iloc[0]
    assert 1 <= row["settle_epochs"] <= 4 and 0 <= row["settle_best_epoch"] <= row["settle_epochs"]
