"""Dataset loading: errors on bad input, the sources (sklearn, paths, MANIFEST), and the `datasets` CLI."""
from __future__ import annotations

import argparse
import gzip

import numpy as np
import pandas as pd
import pytest
import torch

from neon_ray.cli import datasets_cmd
from neon_ray.data.datasets import load_dataset
from neon_ray.data.sources import SKLEARN_SETS, list_datasets
from neon_ray.errors import ConfigError, DataError
from toy_tables import toy_frame, write_csv, write_parquet


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
