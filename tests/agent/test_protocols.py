"""Protocol A / B network selection on a hand-made zoo manifest (no Ray, no torch)."""
from __future__ import annotations

import pandas as pd
import pytest

from neon_ray.agent.protocols import eval_network_ids, select_networks, train_network_ids
from neon_ray.errors import ConfigError

# dataset -> roles of networks n000, n001, ...
ROLES = {
    "alpha": ["train", "test", "train", "train"],
    "beta": ["train", "train", "test"],
    "gamma": ["test", "train", "train", "train", "test"],
}


def _manifest(roles=ROLES, shuffle_seed: int | None = 3) -> pd.DataFrame:
    rows = [{"network_id": f"{d}__s0__n{i:03d}", "dataset": d, "role": r, "params": 100 + i}
            for d, rs in roles.items() for i, r in enumerate(rs)]
    frame = pd.DataFrame(rows)
    return frame.sample(frac=1.0, random_state=shuffle_seed) if shuffle_seed is not None else frame


def _ids(dataset: str, *indices: int) -> list[str]:
    return [f"{dataset}__s0__n{i:03d}" for i in indices]


def test_protocol_a_trains_on_train_roles_and_reports_on_test_roles():
    sel = select_networks(_manifest())
    assert sel.protocol == "A"
    assert sel.train_datasets == sel.eval_datasets == ("alpha", "beta", "gamma")
    assert list(sel.train_ids) == _ids("alpha", 0, 2, 3) + _ids("beta", 0, 1) + _ids("gamma", 1, 2, 3)
    assert list(sel.eval_ids) == _ids("alpha", 1) + _ids("beta", 2) + _ids("gamma", 0, 4)
    assert not set(sel.train_ids) & set(sel.eval_ids)


def test_protocol_a_on_chosen_datasets():
    assert train_network_ids(_manifest(), datasets=["gamma", "beta"]) == _ids("beta", 0, 1) + _ids("gamma", 1, 2, 3)
    assert eval_network_ids(_manifest(), datasets=["beta"]) == _ids("beta", 2)


def test_protocol_b_holds_datasets_out_and_reports_on_all_their_networks():
    sel = select_networks(_manifest(), holdout=["gamma"])
    assert sel.protocol == "B"
    assert sel.train_datasets == ("alpha", "beta") and sel.eval_datasets == ("gamma",)
    assert list(sel.train_ids) == _ids("alpha", 0, 2, 3) + _ids("beta", 0, 1)
    assert list(sel.eval_ids) == _ids("gamma", 0, 1, 2, 3, 4)
    assert not any(nid.startswith("gamma") for nid in sel.train_ids)


def test_protocol_b_with_chosen_datasets_and_several_holdouts():
    # the holdout need not be among the training datasets; it must only be in the zoo
    sel = select_networks(_manifest(), datasets=["alpha"], holdout=["gamma", "beta"])
    assert list(sel.train_ids) == _ids("alpha", 0, 2, 3)
    assert list(sel.eval_ids) == _ids("beta", 0, 1, 2) + _ids("gamma", 0, 1, 2, 3, 4)
    # a holdout also listed in datasets is removed from training
    assert select_networks(_manifest(), datasets=["alpha", "gamma"], holdout=["gamma"]).train_datasets == ("alpha",)


def test_order_is_stable_whatever_the_manifest_order():
    a = select_networks(_manifest(shuffle_seed=None), holdout=["beta"])
    b = select_networks(_manifest(shuffle_seed=11), holdout=["beta"])
    assert a == b


def test_accepts_a_zoo_like_object():
    class FakeZoo:
        def manifest(self):
            return _manifest()

    assert train_network_ids(FakeZoo(), holdout=["alpha", "beta"]) == _ids("gamma", 1, 2, 3)


def test_holdout_not_in_the_zoo_is_named():
    with pytest.raises(ConfigError, match=r"holdout: \['delta'\] not in the zoo, which has datasets \['alpha', 'beta', 'gamma'\]"):
        select_networks(_manifest(), holdout=["delta"])


def test_unknown_dataset_is_named():
    with pytest.raises(ConfigError, match=r"datasets: \['phoneme'\] not in the zoo"):
        select_networks(_manifest(), datasets=["alpha", "phoneme"])


def test_holdout_covering_every_dataset_is_refused():
    with pytest.raises(ConfigError, match="covers every chosen dataset"):
        select_networks(_manifest(), holdout=["alpha", "beta", "gamma"])
    with pytest.raises(ConfigError, match="covers every chosen dataset"):
        select_networks(_manifest(), datasets=["beta"], holdout=["beta"])


def test_no_training_networks_is_refused():
    only_test = {"alpha": ["test", "test"], "beta": ["train", "test"]}
    with pytest.raises(ConfigError, match=r"no training networks: datasets \['alpha'\] have no 'train'-role networks"):
        select_networks(_manifest(only_test), datasets=["alpha"])
    assert train_network_ids(_manifest(only_test)) == _ids("beta", 0)


def test_bad_inputs_are_config_errors():
    with pytest.raises(ConfigError, match="list of dataset names, got the string 'gamma'"):
        select_networks(_manifest(), holdout="gamma")
    with pytest.raises(ConfigError, match="the list is empty"):
        select_networks(_manifest(), datasets=[])
    with pytest.raises(ConfigError, match="the zoo has no networks"):
        select_networks(_manifest().iloc[:0])
    with pytest.raises(ConfigError, match=r"lacks column\(s\) \['role'\]"):
        select_networks(_manifest().drop(columns=["role"]))
