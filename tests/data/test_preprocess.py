"""Preprocessing fit on the training rows only, and label encoding."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from neon_ray.data.datasets import load_dataset
from neon_ray.data.preprocess import MAX_ONE_HOT_LEVELS
from toy_tables import split_rows, toy_frame, write_csv, write_parquet


# ---------------------------------------------------------------------------------------------
# Preprocessing is fit on the training rows only


def test_numeric_scaling_uses_train_min_max_only(tmp_path):
    frame = toy_frame(300)
    test_rows, _, _ = split_rows(frame)
    spiked = frame.copy()
    spiked.loc[test_rows[0], "x"] = 1000.0
    plain_ds = load_dataset(write_csv(tmp_path, frame, "plain.csv"))
    spiked_ds = load_dataset(write_csv(tmp_path, spiked, "spiked.csv"))
    assert torch.equal(plain_ds.X_train, spiked_ds.X_train)
    assert torch.equal(plain_ds.X_val, spiked_ds.X_val)
    x_train = spiked_ds.X_train[:, 1]
    assert x_train.min() == 0 and x_train.max() == 1
    assert spiked_ds.X_test[:, 1].max() > 500


def test_constant_train_column_maps_to_zero(tmp_path):
    frame = toy_frame(300).assign(c=7.0)
    test_rows, _, _ = split_rows(frame)
    frame.loc[test_rows[0], "c"] = 9.0
    ds = load_dataset(write_csv(tmp_path, frame))
    col = ds.feature_names.index("c")
    for which in ("train", "val", "test"):
        assert torch.all(ds.split(which)[0][:, col] == 0)


def test_missing_numeric_values_get_the_train_median(tmp_path):
    frame = toy_frame(300)
    _, _, train_rows = split_rows(frame)
    frame.loc[train_rows[:10], "x"] = np.nan
    ds = load_dataset(write_csv(tmp_path, frame))
    observed = frame.loc[train_rows, "x"].dropna()
    expected = (observed.median() - observed.min()) / (observed.max() - observed.min())
    x_train = ds.X_train[:, 1]
    assert int(torch.isclose(x_train, torch.tensor(expected, dtype=torch.float32)).sum()) >= 10


def test_category_seen_only_in_test_encodes_as_zeros(tmp_path):
    frame = toy_frame(300).assign(kind=["a", "b", "c"] * 100)
    test_rows, _, _ = split_rows(frame)
    frame.loc[test_rows[0], "kind"] = "zebra"
    ds = load_dataset(write_csv(tmp_path, frame))
    assert ds.feature_names[2:] == ["kind=a", "kind=b", "kind=c"]
    assert int((ds.X_test[:, 2:].sum(1) == 0).sum()) == 1
    assert torch.all(ds.X_train[:, 2:].sum(1) == 1)


def test_missing_category_is_its_own_level(tmp_path):
    frame = toy_frame(300).assign(kind=["a", "b", None] * 100)
    ds = load_dataset(write_csv(tmp_path, frame))
    assert ds.feature_names[2:] == ["kind=<missing>", "kind=a", "kind=b"]


def test_bool_column_is_one_hot(tmp_path):
    frame = toy_frame(300).assign(flag=[True, False, False] * 100)
    ds = load_dataset(write_parquet(tmp_path, frame))
    assert ds.feature_names[2:] == ["flag=False", "flag=True"]


def test_many_level_category_is_frequency_encoded(tmp_path):
    n_levels = MAX_ONE_HOT_LEVELS + 36
    rng = np.random.default_rng(0)
    ids = rng.integers(0, n_levels, size=2000)
    ids[:300] = 0  # one dominant level
    frame = pd.DataFrame({"user": [f"u{i}" for i in ids], "x": rng.random(2000), "target": np.arange(2000) % 2})
    ds = load_dataset(write_csv(tmp_path, frame))
    assert ds.feature_names == ["user:freq", "x"]
    freq = ds.X_train[:, 0]
    assert freq.max() == 1 and freq.min() > 0
    assert torch.all(ds.X_test[:, 0] <= 1)


def test_integer_id_columns_of_amazon_are_categorical(shared_data_dir):
    ds = load_dataset("Amazon_employee_access", shared_data_dir)
    assert ds.n_features == 9
    assert all(name.endswith(":freq") for name in ds.feature_names)


# ---------------------------------------------------------------------------------------------
# Labels


def labels_of(ds) -> list[str]:
    """Original label of every row, ordered by the rid feature, rebuilt from codes and class_names."""
    X = torch.cat([ds.X_train, ds.X_val, ds.X_test])
    y = torch.cat([ds.y_train, ds.y_val, ds.y_test])
    return [ds.class_names[int(c)] for c in y[torch.argsort(X[:, 0])]]


def test_text_labels_are_sorted(tmp_path):
    frame = pd.DataFrame({"rid": range(90), "target": ["b", "c", "a"] * 30})
    ds = load_dataset(write_csv(tmp_path, frame))
    assert ds.class_names == ["a", "b", "c"]
    assert labels_of(ds) == frame["target"].tolist()


def test_numeric_labels_sort_as_numbers(tmp_path):
    frame = pd.DataFrame({"rid": range(90), "target": [10, 2, 1] * 30})
    ds = load_dataset(write_csv(tmp_path, frame))
    assert ds.class_names == ["1", "2", "10"]
    assert labels_of(ds) == [str(v) for v in frame["target"]]
    assert ds.y_train.dtype == torch.int64 and set(ds.y_train.tolist()) == {0, 1, 2}


def test_numeric_text_labels_sort_as_numbers(tmp_path):
    frame = pd.DataFrame({"rid": range(90), "target": ["10", "2", "1"] * 30})
    ds = load_dataset(write_parquet(tmp_path, frame))
    assert ds.class_names == ["1", "2", "10"]
    assert labels_of(ds) == frame["target"].tolist()


def test_rare_class_appears_in_class_names_even_if_absent_from_train(tmp_path, caplog):
    frame = pd.DataFrame({"rid": range(100), "target": ["common"] * 99 + ["rare"]})
    ds = load_dataset(write_csv(tmp_path, frame))
    assert sum("have no row in the" in r.getMessage() and "'rare'" in r.getMessage() for r in caplog.records) == 2
    assert ds.class_names == ["common", "rare"] and ds.n_classes == 2
