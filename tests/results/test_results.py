import math

import pandas as pd
import pytest

from neon_ray.errors import NeonRayError
from neon_ray.nets.metrics import NetworkMetrics
from neon_ray.results.schema import RESULT_COLUMNS, result_row
from neon_ray.results.store import read_results, write_results
from neon_ray.results.summary import summarise


def metrics_of(params, acc, nonzero=None):
    return NetworkMetrics(params=params, nonzero=nonzero or params, flops=2 * params, bytes=4 * params,
                          val_acc=acc, val_f1=acc, test_acc=acc, test_f1=acc, latency_b1_ms=0.1)


def rows(run_id, method, dataset, n, reduction=4.0, dacc=-0.01, tolerance=1.0):
    out = []
    for i in range(n):
        net = {"dataset": dataset, "network_id": f"{dataset}__s0__n{i:03d}", "role": "test", "seed": 0, "arch": "5-100relu-2"}
        out.append(result_row(run_id=run_id, method=method, config={"a": 1}, config_label="a=1", network=net,
                              before=metrics_of(1000, 0.9), after=metrics_of(int(1000 / reduction), 0.9 + dacc),
                              tolerance=tolerance, loops=4, arch_after="5-25relu-2", actions=[0.8, 0.9]))
    return out


def test_round_trip_has_every_column_and_partition(tmp_path):
    write_results(rows("r1", "neon", "sklearn:wine", 3) + rows("r1", "neon", "phoneme", 2), tmp_path)
    frame = read_results(tmp_path)
    assert list(frame.columns) == RESULT_COLUMNS
    assert sorted(frame["dataset"].unique()) == ["phoneme", "sklearn:wine"]
    assert (tmp_path / "method=neon" / "dataset=sklearn%3Awine").is_dir()
    assert frame["reduction"].tolist() == [4.0] * 5


def test_rewriting_a_run_replaces_its_rows_and_keeps_others(tmp_path):
    write_results(rows("r1", "neon", "phoneme", 3), tmp_path)
    write_results(rows("r2", "neon", "phoneme", 3), tmp_path)
    write_results(rows("r1", "neon", "phoneme", 3, reduction=2.0), tmp_path)
    frame = read_results(tmp_path)
    assert len(frame) == 6
    assert sorted(frame[frame.run_id == "r1"]["reduction"]) == [2.0] * 3


def test_partial_temporary_files_are_invisible(tmp_path):
    write_results(rows("r1", "neon", "phoneme", 2), tmp_path)
    folder = tmp_path / "method=neon" / "dataset=phoneme"
    (folder / ".r2.abc.tmp").write_bytes(b"PAR1 half written")
    assert len(read_results(tmp_path)) == 2


def test_duplicate_networks_in_one_write_are_refused(tmp_path):
    with pytest.raises(NeonRayError, match="repeat"):
        write_results(rows("r1", "neon", "phoneme", 2) * 2, tmp_path)


def test_missing_results_dir_is_a_clear_error(tmp_path):
    with pytest.raises(NeonRayError, match="not found"):
        read_results(tmp_path / "nope")


def test_weight_pruned_methods_count_nonzeros():
    net = {"dataset": "d", "network_id": "d__s0__n000", "arch": "a"}
    row = result_row(run_id="r", method="magnitude", config={}, config_label="", network=net,
                     before=metrics_of(1000, 0.9), after=metrics_of(1000, 0.9, nonzero=100), arch_after="a")
    assert row["params_after"] == 100 and row["reduction"] == 10.0


def test_summary_statistics_by_hand(tmp_path):
    frame = pd.DataFrame(rows("r", "neon", "a", 1, reduction=2.0, dacc=-0.02) + rows("r", "neon", "b", 1, reduction=8.0, dacc=0.0))
    s = summarise(frame).iloc[0]
    assert s["mean_x"] == 5.0 and s["median_x"] == 5.0 and s["geomean_x"] == pytest.approx(4.0)
    assert s["mean_dacc_pp"] == pytest.approx(-1.0)
    assert s["within_tol"] == 0.5  # -2pp breaks the 1pp tolerance, 0pp does not
    by = summarise(frame, by="dataset")
    assert by["networks"].tolist() == [1, 1]


def test_summary_tolerance_for_baselines():
    frame = pd.DataFrame(rows("r", "uniform", "a", 2, dacc=-0.02, tolerance=None))
    assert math.isnan(summarise(frame).iloc[0]["within_tol"])
    assert summarise(frame, tolerance=5.0).iloc[0]["within_tol"] == 1.0


def test_plain_pandas_reads_the_results_directory(tmp_path):
    write_results(rows("r1", "neon", "sklearn:wine", 2) + rows("r1", "uniform", "phoneme", 3), tmp_path)
    frame = pd.read_parquet(tmp_path)
    assert len(frame) == 5
    assert sorted(frame["dataset"].astype(str).unique()) == ["phoneme", "sklearn:wine"]
    assert frame.groupby(frame["method"].astype(str))["network_id"].count().to_dict() == {"neon": 2, "uniform": 3}


def test_files_of_the_schema_before_the_guard_columns_are_still_read(tmp_path, caplog):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from neon_ray.results.schema import ADDED_COLUMNS, FILE_SCHEMA

    write_results(rows("new", "neon", "phoneme", 2), tmp_path)
    # a file written before `guard` and `returned_step` existed: the previous schema, exactly
    old_schema = pa.schema([f for f in FILE_SCHEMA if f.name not in ADDED_COLUMNS])
    old = pd.DataFrame(rows("old", "neon", "phoneme", 3))[old_schema.names]
    folder = tmp_path / "method=neon" / "dataset=phoneme"
    pq.write_table(pa.Table.from_pandas(old, schema=old_schema, preserve_index=False), folder / "old.parquet")
    # a file lacking another column is still foreign
    pq.write_table(pa.Table.from_pandas(old.drop(columns="seconds"), preserve_index=False), folder / "other.parquet")

    frame = read_results(tmp_path)
    assert list(frame.columns) == RESULT_COLUMNS and sorted(frame["run_id"]) == ["new"] * 2 + ["old"] * 3
    olds = frame[frame["run_id"] == "old"]
    assert not olds["guard"].any() and olds["returned_step"].isna().all()
    assert "other.parquet" in caplog.text and "lacks columns seconds" in caplog.text and "old.parquet" not in caplog.text


def test_guard_columns_round_trip(tmp_path):
    net = {"dataset": "d", "network_id": "d__s0__n000", "arch": "a"}
    kw = dict(run_id="r", config={}, config_label="", network=net, before=metrics_of(1000, 0.9),
              after=metrics_of(500, 0.9), arch_after="a")
    write_results([result_row(method="random", guard=True, returned_step=3, **kw),
                   result_row(method="magnitude", **kw)], tmp_path)
    frame = read_results(tmp_path).set_index("method")
    assert frame.loc["random", "guard"] and frame.loc["random", "returned_step"] == 3
    assert not frame.loc["magnitude", "guard"] and pd.isna(frame.loc["magnitude", "returned_step"])
