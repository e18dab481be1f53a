"""Dataset loading, splits, preprocessing and the `datasets` CLI."""
from __future__ import annotations

import argparse
import gzip

import numpy as np
import pandas as pd
import pytest
import torch

from neon_ray.cli import datasets_cmd
from neon_ray.data.datasets import (
    MAX_ONE_HOT_LEVELS,
    SKLEARN_SETS,
    SplitConfig,
    list_datasets,
    load_dataset,
    split_indices,
)
from neon_ray.errors import ConfigError, DataError

SPLIT_FRACTIONS = [SplitConfig().test_fraction, SplitConfig().val_fraction]


def write_csv(tmp_path, frame: pd.DataFrame, name: str = "data.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def write_parquet(tmp_path, frame: pd.DataFrame, name: str = "data.parquet") -> str:
    path = tmp_path / name
    frame.to_parquet(path)
    return str(path)


def toy_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """rid: a unique row id (survives min-max scaling as a unique value); x: noise; target: 0/1."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"rid": np.arange(n), "x": rng.random(n), "target": np.arange(n) % 2})


def split_rows(frame: pd.DataFrame, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(test, val, train) raw row indices that load_dataset uses for 0..K-1 integer targets."""
    return tuple(split_indices(frame["target"].to_numpy(), SPLIT_FRACTIONS, seed))


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
# Errors on bad input


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataError, match="not found.*nope.csv"):
        load_dataset(str(tmp_path / "nope.csv"))


def test_unknown_name_lists_known_names(shared_data_dir):
    with pytest.raises(DataError, match=r"'no_such_set'.*known: 2dplanes, fried"):
        load_dataset("no_such_set", shared_data_dir)


def test_unknown_name_without_data_dir_suggests_forms():
    with pytest.raises(DataError, match="no_such_set.*no data_dir.*sklearn:iris"):
        load_dataset("no_such_set")


def test_unknown_sklearn_set():
    with pytest.raises(DataError, match="'titanic'.*breast_cancer"):
        load_dataset("sklearn:titanic")


def test_data_dir_without_manifest(tmp_path):
    with pytest.raises(DataError, match="no MANIFEST.csv"):
        load_dataset("anything", tmp_path)


def test_manifest_without_required_columns(tmp_path):
    (tmp_path / "MANIFEST.csv").write_text("name,file\na,a.csv.gz\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['format', 'target_column'\]"):
        load_dataset("a", tmp_path)


def test_missing_target_column_lists_columns(tmp_path):
    path = write_csv(tmp_path, toy_frame())
    with pytest.raises(DataError, match=r"target column 'label' not found.*\['rid', 'x', 'target'\]"):
        load_dataset(path + "#label")


def test_target_with_one_class(tmp_path):
    frame = toy_frame().assign(target="yes")
    with pytest.raises(DataError, match="single class \\('yes'\\)"):
        load_dataset(write_csv(tmp_path, frame))


def test_header_only_file_has_no_rows(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("x,target\n")
    with pytest.raises(DataError, match="empty.csv#target: no rows"):
        load_dataset(str(path))


def test_zero_byte_file(tmp_path):
    path = tmp_path / "zero.csv"
    path.write_text("")
    with pytest.raises(DataError, match="zero.csv: the file is empty"):
        load_dataset(str(path))


def test_target_only_table_has_no_usable_features(tmp_path):
    path = write_csv(tmp_path, toy_frame()[["target"]])
    with pytest.raises(DataError, match="no usable features"):
        load_dataset(path)


def test_constant_features_are_not_usable(tmp_path):
    frame = toy_frame().assign(rid=5, x=np.nan)
    with pytest.raises(DataError, match="no usable features"):
        load_dataset(write_csv(tmp_path, frame))


def test_text_in_a_numeric_column_is_an_error(tmp_path):
    sizes = [str(v) for v in range(190)] + ["abc"] * 10
    frame = toy_frame(200).assign(size=sizes)
    with pytest.raises(DataError, match="column 'size' is mostly numbers but has non-numeric value 'abc' \\(10 of 200"):
        load_dataset(write_csv(tmp_path, frame))


def test_small_level_set_mixing_numbers_and_words_is_categorical(tmp_path):
    frame = toy_frame(80).assign(children=["1", "2", "3", "more"] * 20)
    ds = load_dataset(write_csv(tmp_path, frame))
    assert ds.feature_names[2:] == ["children=1", "children=2", "children=3", "children=more"]


def test_all_text_column_is_categorical(tmp_path):
    frame = toy_frame(90).assign(colour=["red", "green", "blue"] * 30)
    ds = load_dataset(write_csv(tmp_path, frame))
    assert ds.feature_names == ["rid", "x", "colour=blue", "colour=green", "colour=red"]
    one_hot = torch.cat([ds.X_train, ds.X_val, ds.X_test])[:, 2:]
    assert torch.equal(one_hot.sum(1), torch.ones(90))


def test_mostly_text_column_with_some_numbers_is_categorical(tmp_path):
    frame = toy_frame(90).assign(code=["a", "b", "3"] * 30)
    ds = load_dataset(write_csv(tmp_path, frame))
    assert ds.feature_names[2:] == ["code=3", "code=a", "code=b"]


def test_question_mark_reads_as_missing(tmp_path):
    frame = toy_frame(90).assign(age=["40", "?", "20"] * 30)
    ds = load_dataset(write_csv(tmp_path, frame))
    assert "age" in ds.feature_names


def test_infinite_value_is_an_error(tmp_path):
    frame = toy_frame().astype({"x": float})
    frame.loc[3, "x"] = np.inf
    with pytest.raises(DataError, match="column 'x' has an infinite value"):
        load_dataset(write_csv(tmp_path, frame))


def test_corrupt_gzip_file(tmp_path):
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DataError, match="bad.csv.gz: cannot read"):
        load_dataset(str(path))


def test_truncated_gzip_file(tmp_path):
    whole = gzip.compress(toy_frame(5000).to_csv(index=False).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match="cut.csv.gz: cannot read"):
        load_dataset(str(path))


def test_corrupt_parquet_file(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 garbage")
    with pytest.raises(DataError, match="bad.parquet: cannot read"):
        load_dataset(str(path))


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("x\ttarget\n1\t0\n")
    with pytest.raises(DataError, match="unsupported file type"):
        load_dataset(str(path))


def test_missing_target_value_is_an_error(tmp_path):
    frame = toy_frame().astype({"target": float})
    frame.loc[7, "target"] = np.nan
    with pytest.raises(DataError, match="target column 'target' has 1 missing value.*row 7"):
        load_dataset(write_csv(tmp_path, frame))


def test_continuous_target_is_an_error(tmp_path):
    frame = toy_frame().assign(target=np.linspace(0, 1, 200))
    with pytest.raises(DataError, match="looks continuous"):
        load_dataset(write_csv(tmp_path, frame))


def test_too_few_rows_to_split(tmp_path):
    frame = pd.DataFrame({"x": [1, 2], "target": [0, 1]})
    with pytest.raises(DataError, match="2 rows are too few"):
        load_dataset(write_csv(tmp_path, frame))


def test_negative_seed_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="seed"):
        load_dataset(write_csv(tmp_path, toy_frame()), seed=-1)


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


# ---------------------------------------------------------------------------------------------
# Sources: sklearn, paths, MANIFEST


@pytest.mark.parametrize("name,rows,features,classes", [
    ("breast_cancer", 569, 30, 2), ("wine", 178, 13, 3), ("iris", 150, 4, 3), ("digits", 1797, 64, 10),
])
def test_sklearn_sets(name, rows, features, classes):
    ds = load_dataset(f"sklearn:{name}", seed=1)
    assert (ds.n_rows, ds.n_features, ds.n_classes) == (rows, features, classes)
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == rows
    assert ds.name == f"sklearn:{name}"
    assert ds.X_train.min() == 0 and ds.X_train.max() == 1


def test_csv_path_with_target_column(tmp_path):
    frame = toy_frame().rename(columns={"target": "label"})
    ds = load_dataset(write_csv(tmp_path, frame, "mine.csv.gz") + "#label")
    assert ds.name == "mine" and ds.n_features == 2 and ds.n_classes == 2
    assert ds.source.endswith("mine.csv.gz#label")


def test_parquet_path_with_target_column(tmp_path):
    frame = toy_frame().assign(label=lambda f: np.where(f["target"] == 1, "yes", "no")).drop(columns="target")
    ds = load_dataset(write_parquet(tmp_path, frame, "table.parquet") + "#label")
    assert ds.name == "table" and ds.class_names == ["no", "yes"] and ds.n_features == 2


def test_manifest_entry_in_own_directory(tmp_path):
    frame = toy_frame().rename(columns={"target": "y"})
    frame.to_csv(tmp_path / "toy.csv.gz", index=False)
    (tmp_path / "MANIFEST.csv").write_text(
        "name,file,format,target_column,rows,features,classes,benchmark\n"
        "toy,toy.csv.gz,csv.gz,y,200,2,2,none\n"
        "odd,odd.bin,binary,y,1,1,2,none\n"
    )
    ds = load_dataset("toy", tmp_path)
    assert ds.name == "toy" and ds.n_rows == 200
    with pytest.raises(DataError, match="unknown format 'binary'"):
        load_dataset("odd", tmp_path)
    assert list_datasets(tmp_path)["rows"].tolist() == [200, 1]


def manifest_rows(data_dir) -> list[dict]:
    manifest = pd.read_csv(data_dir / "MANIFEST.csv")
    return manifest[manifest["format"] == "csv.gz"].to_dict("records")


def pytest_generate_tests(metafunc):
    if "manifest_row" in metafunc.fixturenames:
        from conftest import SHARED_DATA

        # Without the data one placeholder case still runs, so the shared_data_dir fixture fails
        # loudly instead of the parametrisation silently skipping.
        rows = manifest_rows(SHARED_DATA) if (SHARED_DATA / "MANIFEST.csv").is_file() else [{"name": "datasets-missing"}]
        metafunc.parametrize("manifest_row", rows, ids=[r["name"] for r in rows])


def test_every_benchmark_csv_loads(shared_data_dir, manifest_row):
    ds = load_dataset(manifest_row["name"], shared_data_dir, seed=0)
    sizes = [len(ds.y_train), len(ds.y_val), len(ds.y_test)]
    assert ds.n_rows == manifest_row["rows"] == sum(sizes)
    assert ds.n_classes == manifest_row["classes"]
    assert ds.n_features >= manifest_row["features"]
    for which in ("train", "val", "test"):
        X, y = ds.split(which)
        assert X.dtype == torch.float32 and X.shape[1] == ds.n_features
        assert torch.isfinite(X).all()
        assert y.dtype == torch.int64 and 0 <= int(y.min()) and int(y.max()) < ds.n_classes
    assert ds.X_train.min() >= 0 and ds.X_train.max() <= 1


def test_manifest_has_28_benchmark_csvs(shared_data_dir):
    assert len(manifest_rows(shared_data_dir)) == 28


def test_list_datasets_from_manifest(shared_data_dir):
    table = list_datasets(shared_data_dir)
    assert list(table.columns) == ["name", "rows", "features", "classes", "benchmark"]
    assert len(table) == 30
    shuttle = table.set_index("name").loc["shuttle"]
    assert (shuttle["rows"], shuttle["features"], shuttle["classes"]) == (58000, 9, 7)


def test_list_datasets_without_data_dir_lists_sklearn_sets():
    table = list_datasets(None)
    assert table["name"].tolist() == [f"sklearn:{s}" for s in SKLEARN_SETS]
    assert table.set_index("name").loc["sklearn:iris", "rows"] == 150


# ---------------------------------------------------------------------------------------------
# CLI


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="neon-ray")
    datasets_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_list(shared_data_dir, capsys):
    assert run_cli(["datasets", "list", "--data-dir", str(shared_data_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "rows", "features", "classes"]
    assert any(line.split() == ["shuttle", "58000", "9", "7"] for line in out)


def test_cli_show(capsys):
    assert run_cli(["datasets", "show", "sklearn:wine", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "train 124, val 27, test 27 (seed 2)" in out
    assert "features  13 after encoding" in out
    assert "classes   3:" in out


def test_cli_show_unknown_name_raises_data_error(tmp_path):
    with pytest.raises(DataError):
        run_cli(["datasets", "show", "nothing", "--data-dir", str(tmp_path)])
