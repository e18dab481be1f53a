"""Nominal columns stored as numbers: the benchmark metadata and a user's sidecar declaration."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from neon_ray.data.column_types import BENCHMARK_COLUMN_TYPES, SIDECAR_SUFFIX, sidecar_path
from neon_ray.data.datasets import load_dataset
from neon_ray.errors import DataError
from toy_tables import toy_frame, write_csv


def coded_frame(n: int = 200) -> pd.DataFrame:
    """`day` holds codes 1..7 of a nominal attribute; `rid` and `x` as in toy_frame."""
    frame = toy_frame(n)
    frame.insert(1, "day", frame["rid"] % 7 + 1)
    return frame


def declare(data_path: str, spec) -> None:
    text = spec if isinstance(spec, str) else json.dumps(spec)
    sidecar_path(Path(data_path)).write_text(text, encoding="utf-8")


def test_without_a_sidecar_integer_codes_stay_numeric(tmp_path):
    ds = load_dataset(write_csv(tmp_path, coded_frame()))
    assert ds.feature_names == ["rid", "day", "x"]


def test_sidecar_makes_integer_codes_one_hot(tmp_path):
    path = write_csv(tmp_path, coded_frame())
    declare(path, {"categorical": ["day"]})
    ds = load_dataset(f"{path}#target")
    assert ds.feature_names == ["rid"] + [f"day={d}" for d in range(1, 8)] + ["x"]
    one_hot = ds.X_train[:, 1:8]
    assert bool((one_hot.sum(dim=1) == 1).all())


def test_sidecar_codes_with_a_blank_cell_name_levels_without_decimals(tmp_path):
    frame = coded_frame().astype({"day": float})
    frame.loc[3, "day"] = None
    path = write_csv(tmp_path, frame)
    declare(path, {"categorical": ["day"]})
    names = load_dataset(path).feature_names
    assert "day=3" in names and "day=<missing>" in names and not any(n.endswith(".0") for n in names)


def test_sidecar_sits_next_to_the_data_file(tmp_path):
    path = write_csv(tmp_path, coded_frame(), name="mine.csv")
    assert sidecar_path(Path(path)).name == "mine.csv" + SIDECAR_SUFFIX


def test_sidecar_unknown_column_names_the_column_and_both_files(tmp_path):
    path = write_csv(tmp_path, coded_frame())
    declare(path, {"categorical": ["day", "weekday"]})
    with pytest.raises(DataError, match=r"'weekday' is not a column of .*data\.csv.*\['rid', 'day', 'x'\]") as err:
        load_dataset(path)
    assert "data.csv.columns.json" in str(err.value)


def test_sidecar_listing_the_target_is_an_error(tmp_path):
    path = write_csv(tmp_path, coded_frame())
    declare(path, {"categorical": ["target"]})
    with pytest.raises(DataError, match="'target' is the target column"):
        load_dataset(path)


@pytest.mark.parametrize("spec, match", [
    ("{not json", "cannot read the column declarations"),
    (["day"], "unexpected content list"),
    ({"categorical": ["day"], "ordinal": ["x"]}, r"unexpected content \['categorical', 'ordinal'\]"),
    ({"categorical": "day"}, "'categorical' is 'day'"),
])
def test_malformed_sidecar_is_a_data_error(tmp_path, spec, match):
    path = write_csv(tmp_path, coded_frame())
    declare(path, spec)
    with pytest.raises(DataError, match=match):
        load_dataset(path)


def test_sidecar_applies_to_a_manifest_entry_of_a_user_data_dir(tmp_path):
    write_csv(tmp_path, coded_frame(), name="mine.csv")
    declare(str(tmp_path / "mine.csv"), {"categorical": ["day"]})
    pd.DataFrame([{"name": "mine", "file": "mine.csv", "format": "csv", "target_column": "target"}]).to_csv(
        tmp_path / "MANIFEST.csv", index=False
    )
    assert "day=7" in load_dataset("mine", tmp_path).feature_names


# ---------------------------------------------------------------------------------------------
# The benchmark metadata


def csv_manifest(data_dir) -> pd.DataFrame:
    manifest = pd.read_csv(data_dir / "MANIFEST.csv", dtype=str, keep_default_na=False)
    return manifest[manifest["format"] != "idx"]


def test_every_benchmark_csv_has_column_types_whose_columns_exist(shared_data_dir):
    manifest = csv_manifest(shared_data_dir)
    assert set(BENCHMARK_COLUMN_TYPES) == set(manifest["name"])
    for _, entry in manifest.iterrows():
        types = BENCHMARK_COLUMN_TYPES[entry["name"]]
        header = pd.read_csv(shared_data_dir / entry["file"], nrows=50)
        for column in types.categorical + types.binary:
            assert column in header.columns, (entry["name"], column)
            assert column != entry["target_column"]
        # Only columns the file stores as numbers need listing; text is categorical anyway.
        assert all(pd.api.types.is_numeric_dtype(header[c]) for c in types.categorical), entry["name"]
        assert types.decided_by in ("source", "rule") and types.evidence


def test_integer_coded_benchmark_columns_are_one_hot(shared_data_dir):
    ds = load_dataset("haberman", shared_data_dir)
    years = [n for n in ds.feature_names if n.startswith("Patients_year_of_operation=")]
    assert len(years) == 12 and "Patients_year_of_operation" not in ds.feature_names
    assert ds.n_features == 2 + 12


def test_binary_nominal_columns_stay_one_numeric_feature(shared_data_dir):
    ds = load_dataset("analcatdata_dmft", shared_data_dir)
    assert "Gender" in ds.feature_names
    assert "Ethnic=1" in ds.feature_names and "DMFT.Begin" not in ds.feature_names
