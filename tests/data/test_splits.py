"""SplitConfig, Dataset, and the three disjoint, stratified, seeded splits."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from neon_ray.data.datasets import load_dataset
from neon_ray.data.splits import SplitConfig, cap_rows, split_indices
from neon_ray.errors import ConfigError
from toy_tables import toy_frame, write_csv


# ---------------------------------------------------------------------------------------------
# SplitConfig and Dataset


@pytest.mark.parametrize(
    "kwargs",
    [{"val_fraction": 0}, {"test_fraction": 1.0}, {"val_fraction": -0.1}, {"val_fraction": 0.5, "test_fraction": 0.5},
     {"val_fraction": "0.1"}, {"test_fraction": True}],
)
def test_split_config_rejects_bad_fractions(kwargs):
    with pytest.raises(ConfigError, match="SplitConfig"):
        SplitConfig(**kwargs)


def test_dataset_split_accessor_and_descriptors(tmp_path):
    ds = load_dataset(write_csv(tmp_path, toy_frame()))
    assert ds.split("val")[0] is ds.X_val and ds.split("test")[1] is ds.y_test
    assert ds.descriptors() == {"rows": 200, "features": 2, "classes": 2}
    with pytest.raises(ConfigError, match="'validation'"):
        ds.split("validation")


# ---------------------------------------------------------------------------------------------
# Splits


def rid_sets(ds) -> list[set[float]]:
    return [set(ds.split(w)[0][:, 0].tolist()) for w in ("train", "val", "test")]


def test_splits_are_disjoint_and_cover_every_row(tmp_path):
    ds = load_dataset(write_csv(tmp_path, toy_frame(1000)))
    train, val, test = rid_sets(ds)
    assert (len(train), len(val), len(test)) == (700, 150, 150)
    assert not (train & val or train & test or val & test)
    assert len(train | val | test) == 1000


def test_same_seed_same_splits_other_seed_other_splits(tmp_path):
    path = write_csv(tmp_path, toy_frame(500))
    a, b, c = load_dataset(path, seed=3), load_dataset(path, seed=3), load_dataset(path, seed=4)
    for which in ("train", "val", "test"):
        assert torch.equal(a.split(which)[0], b.split(which)[0])
        assert torch.equal(a.split(which)[1], b.split(which)[1])
    assert rid_sets(a)[2] != rid_sets(c)[2]


def test_splits_are_stratified():
    y = np.repeat([0, 1, 2], [850, 120, 30])
    test, val, train = split_indices(y, [0.15, 0.15], seed=11)
    for part, fraction in ((test, 0.15), (val, 0.15), (train, 0.70)):
        counts = np.bincount(y[part], minlength=3)
        assert np.all(np.abs(counts - fraction * np.array([850, 120, 30])) <= 2), counts


def test_tiny_class_is_placed_at_random_while_the_others_stay_stratified():
    y = np.repeat([0, 1, 2], [600, 398, 2])
    seen_in_first_part = 0
    for seed in range(40):
        first, rest = split_indices(y, [0.2], seed=seed)
        counts = np.bincount(y[first], minlength=3)
        assert abs(counts[0] - 120) <= 2 and abs(counts[1] - 79.6) <= 2, counts
        assert sorted(np.concatenate([first, rest]).tolist()) == list(range(1000))
        seen_in_first_part += counts[2]
    # Both tiny-class rows are placed independently: 2 * 40 draws at p = 0.2 each.
    assert 4 <= seen_in_first_part <= 30


def test_split_without_stratify_is_a_plain_permutation():
    y = np.repeat([0, 1], [900, 100])
    counts = [np.bincount(y[split_indices(y, [0.1], seed=s, stratify=False)[0]], minlength=2)[1] for s in range(20)]
    assert len(set(counts)) > 1  # not forced to exactly 10 per draw


def test_split_sizes_are_rounded_with_at_least_one_row():
    parts = split_indices(np.arange(10) % 2, [0.01, 0.25], seed=0)
    assert [len(p) for p in parts] == [1, 2, 7]


def test_cap_rows_keeps_class_proportions_and_is_seeded():
    y = np.repeat([0, 1, 2], [600, 300, 100])
    kept = cap_rows(y, 200, seed=3)
    assert len(kept) == 200 and np.all(np.diff(kept) > 0)
    assert np.bincount(y[kept]).tolist() == [120, 60, 20]
    assert np.array_equal(kept, cap_rows(y, 200, seed=3))
    assert not np.array_equal(kept, cap_rows(y, 200, seed=4))
    assert cap_rows(y, 1000, seed=3) is None and cap_rows(y, None, seed=3) is None


@pytest.mark.parametrize("bad", [0, 99, 2.5, True, "300"])
def test_split_config_refuses_a_bad_row_cap(bad):
    with pytest.raises(ConfigError, match="max_rows"):
        SplitConfig(max_rows=bad)


def test_a_capped_table_dataset_is_split_from_its_sample(tmp_path):
    path = write_csv(tmp_path, toy_frame(n=900))
    full = load_dataset(str(path), seed=0)
    capped = load_dataset(str(path), seed=0, split=SplitConfig(max_rows=300))
    assert full.n_rows == 900 and capped.n_rows == 300
    assert len(capped.y_train) + len(capped.y_val) + len(capped.y_test) == 300
    assert len(capped.y_val) == 45 and len(capped.y_test) == 45
