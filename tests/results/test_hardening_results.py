"""Hostile-user review (issue 9) of results, report and baseline: foreign, corrupt and duplicated
files, run completeness, output locations checked first, numeric options validated."""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from neon_ray.baselines.pruners import make_pruner
from neon_ray.cli import main
from neon_ray.errors import ConfigError, DataError
from neon_ray.results.runs import finish_run, run_manifest_path, start_run
from neon_ray.results.schema import RESULT_COLUMNS
from neon_ray.results.store import read_results, write_results
from neon_ray.results.summary import run_status, summarise
from test_results import rows

WINE = "method=neon/dataset=sklearn%3Awine"


def _cli(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse refusals
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture()
def res(tmp_path):
    """Two runs of 'neon' on wine (3 networks each) and one on phoneme."""
    root = tmp_path / "res"
    write_results(rows("r1", "neon", "sklearn:wine", 3, reduction=4.0) + rows("r1", "neon", "phoneme", 2, reduction=2.0), root)
    return root


# ---- 3. foreign, corrupt and duplicated files --------------------------------------------------

def _foreign_parquet(path):
    pq.write_table(pa.table({"x": [1, 2, 3], "network_id": ["a", "b", "c"]}), path)


def _corrupt(path):
    path.write_bytes(b"PAR1 this is not really parquet PAR1")


def _with_partition_columns(path):
    frame = pd.DataFrame(rows("r9", "neon", "sklearn:wine", 2))
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


def _misplaced_result_file(path):
    shutil.copy(next(path.parent.rglob("r1.parquet")), path)


def _text(path):
    path.write_text("notes about this run\n")


BAD_FILES = [
    ("foreign schema", WINE + "/other.parquet", _foreign_parquet, "lacks columns"),
    ("corrupt", WINE + "/broken.parquet", _corrupt, "cannot be read as Parquet"),
    ("partition columns inside", WINE + "/pandas.parquet", _with_partition_columns, "not in the results schema"),
    ("outside the layout", "loose.parquet", _misplaced_result_file, "not under the method="),
    ("not parquet", WINE + "/notes.txt", _text, "not a result file"),
]


@pytest.mark.parametrize("name,where,make,reason", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_foreign_or_corrupt_files_are_skipped_with_a_warning_naming_them(res, caplog, name, where, make, reason):
    make(res / where)
    with caplog.at_level(logging.WARNING, logger="neon_ray.results.store"):
        frame = read_results(res)
    assert len(frame) == 5 and list(frame.columns) == RESULT_COLUMNS
    warned = [r.getMessage() for r in caplog.records]
    assert any(str(res / where) in m and reason in m for m in warned), warned


@pytest.mark.parametrize("where,copy_to", [("same folder", WINE + "/r1 copy.parquet"),
                                            ("other dataset folder", "method=neon/dataset=phoneme/r1-wine.parquet")])
def test_a_copied_file_never_counts_twice(res, caplog, capsys, where, copy_to):
    before = json.loads(_cli(["results", "summary", res, "--json"], capsys)[1])["overall"]
    shutil.copy(res / WINE / "r1.parquet", res / copy_to)
    with caplog.at_level(logging.WARNING, logger="neon_ray.results.store"):
        frame = read_results(res)
    assert len(frame) == 5 and not frame.duplicated(["run_id", "method", "network_id"]).any()
    assert any("3 result row(s) repeat" in r.getMessage() and str(res / copy_to) in r.getMessage() for r in caplog.records)
    code, out, _ = _cli(["results", "summary", res, "--json"], capsys)
    assert code == 0 and json.loads(out)["overall"] == before  # the means do not move


def test_duplicates_keep_the_newest_created_at(res):
    newer = pd.DataFrame(rows("r1", "neon", "sklearn:wine", 3, reduction=8.0))
    newer["created_at"] = pd.Timestamp.now(tz="UTC") + timedelta(hours=1)
    older = pd.DataFrame(rows("r1", "neon", "sklearn:wine", 3, reduction=1.5))
    older["created_at"] = pd.Timestamp.now(tz="UTC") - timedelta(hours=1)
    for name, frame in (("a-newer", newer), ("z-older", older)):
        frame = frame.drop(columns=["method", "dataset"])
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), res / WINE / f"{name}.parquet")
    frame = read_results(res)
    wine = frame[frame["dataset"] == "sklearn:wine"]
    assert len(wine) == 3 and set(wine["reduction"]) == {8.0}


@pytest.mark.parametrize("make", [_foreign_parquet, _corrupt], ids=["foreign", "corrupt"])
def test_summary_with_only_foreign_or_corrupt_files_is_a_one_line_error(tmp_path, capsys, make):
    # before: KeyError / ArrowInvalid tracebacks
    bad = tmp_path / "res" / WINE / "x.parquet"
    bad.parent.mkdir(parents=True)
    make(bad)
    code, out, err = _cli(["results", "summary", tmp_path / "res"], capsys)
    assert code == 2 and out == ""
    line = _one_error_line(err)
    assert "no valid result files" in line and str(bad) in line
    with pytest.raises(DataError, match="no valid result files"):
        read_results(tmp_path / "res")


# ---- 4. run completeness ------------------------------------------------------------------------

def test_a_killed_run_is_flagged_incomplete_and_plain_pandas_still_reads(tmp_path, capsys):
    res = tmp_path / "res"
    write_results(rows("old", "uniform", "phoneme", 2), res)  # no manifest: an older run
    # what a run killed after its first dataset leaves: a 'running' manifest and part of the rows
    start_run(res, "r1", "neon", {"sklearn:wine": 3, "phoneme": 2}, config_label="a=1")
    write_results(rows("r1", "neon", "sklearn:wine", 3), res)

    assert len(pd.read_parquet(res)) == 5  # _runs/ is invisible to Parquet readers
    status = run_status(res).set_index("run_id")
    assert status.loc["r1", "status"] == "incomplete" and status.loc["r1", "state"] == "running"
    assert (status.loc["r1", "networks"], status.loc["r1", "expected"]) == (3, 5)
    assert status.loc["old", "status"] == "unknown"  # not incomplete

    code, out, err = _cli(["results", "summary", res], capsys)
    assert code == 0 and "neon" in out
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "'r1' (neon) is incomplete: 3 of 5 networks" in warnings[0]
    code, out, _ = _cli(["results", "summary", res, "--json"], capsys)
    runs = {r["run_id"]: r for r in json.loads(out)["runs"]}
    assert runs["r1"]["status"] == "incomplete" and runs["old"]["status"] == "unknown"

    code, _, err = _cli(["results", "report", res, "--out", tmp_path / "rep"], capsys)
    assert code == 0 and "3 of 5 networks" in err
    assert "3 of 5 networks" in (tmp_path / "rep" / "report.md").read_text()


def test_a_finished_run_is_complete_and_a_missing_file_shows(tmp_path, capsys):
    res = tmp_path / "res"
    manifest = start_run(res, "r1", "neon", {"sklearn:wine": 3, "phoneme": 2})
    write_results(rows("r1", "neon", "sklearn:wine", 3) + rows("r1", "neon", "phoneme", 2), res)
    finish_run(res, manifest)
    assert json.loads(run_manifest_path(res, "r1", "neon").read_text())["status"] == "complete"
    assert run_status(res)["status"].tolist() == ["complete"]
    code, _, err = _cli(["results", "summary", res], capsys)
    assert code == 0 and "warning" not in err

    (res / "method=neon" / "dataset=phoneme" / "r1.parquet").unlink()
    assert run_status(res)["status"].tolist() == ["incomplete"]


def test_a_run_that_wrote_nothing_is_named_when_there_are_no_rows(tmp_path, capsys):
    start_run(tmp_path / "res", "r1", "neon", {"phoneme": 2})
    code, _, err = _cli(["results", "summary", tmp_path / "res"], capsys)
    assert code == 2 and "'r1' (neon, running)" in _one_error_line(err)


# ---- 9. output locations checked before any work ---------------------------------------------------

def test_report_out_on_an_existing_file_is_a_one_line_error(res, tmp_path, capsys):
    # before: FileExistsError traceback
    target = tmp_path / "report.md"
    target.write_text("mine")
    code, _, err = _cli(["results", "report", res, "--out", target], capsys)
    assert code == 2 and str(target) in _one_error_line(err) and "not a directory" in err
    assert target.read_text() == "mine"


def test_baseline_results_under_a_file_fails_before_any_work(tmp_path, capsys):
    # before: the error came only after every network was pruned; here the zoo does not even exist,
    # so the only way to see the results error is to check it first
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = _cli(["baseline", "--zoo", tmp_path / "no-zoo", "--method", "uniform",
                         "--results", blocker / "res"], capsys)
    assert code == 2 and "results directory" in _one_error_line(err) and str(blocker) in err


def test_run_networks_checks_results_and_save_dir_before_opening_the_zoo(tmp_path):
    from neon_ray.pruning.batch import run_networks
    from neon_ray.pruning.episodes import RunOptions

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="results directory"):
        run_networks(tmp_path / "no-zoo", None, pd.DataFrame(), run_id="r", results=blocker / "res")
    with pytest.raises(ConfigError, match="save_dir"):
        run_networks(tmp_path / "no-zoo", None, pd.DataFrame(), run_id="r", options=RunOptions(save_dir=str(blocker)))
    with pytest.raises(ConfigError, match="results directory"):
        write_results(rows("r", "neon", "phoneme", 1), blocker)
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("run_id", ["", ".hidden", "_private"])
def test_run_ids_that_readers_would_skip_are_refused(tmp_path, run_id):
    with pytest.raises(ConfigError, match="run ID"):
        write_results(rows(run_id, "neon", "phoneme", 1), tmp_path)


# ---- 12. numeric options ---------------------------------------------------------------------------

BAD_OPTIONS = [
    (["results", "summary", "RES", "--tolerance", "-5"], "-5"),
    (["results", "summary", "RES", "--tolerance", "nan"], "nan"),
    (["results", "summary", "RES", "--tolerance", "inf"], "inf"),
    (["results", "summary", "RES", "--tolerance", "101"], "101"),
    (["results", "report", "RES", "--out", "OUT", "--tolerance", "nan"], "nan"),
    (["baseline", "--zoo", "Z", "--method", "uniform", "--results", "R", "--rate", "1.5"], "1.5"),
    (["baseline", "--zoo", "Z", "--method", "uniform", "--results", "R", "--rate", "nan"], "nan"),
    (["baseline", "--zoo", "Z", "--method", "magnitude", "--results", "R", "--rate", "-0.1"], "-0.1"),
    (["baseline", "--zoo", "Z", "--method", "magnitude", "--results", "R", "--max-layer-rate", "nan"], "nan"),
    (["baseline", "--zoo", "Z", "--method", "uniform", "--results", "R", "--tolerance", "-1"], "-1"),
    (["baseline", "--zoo", "Z", "--method", "random", "--results", "R", "--loops", "0"], "0"),
    (["baseline", "--zoo", "Z", "--method", "random", "--results", "R", "--seed", "-1"], "-1"),
    (["baseline", "--zoo", "Z", "--method", "random", "--results", "R", "--finetune-epochs", "0"], "0"),
]


@pytest.mark.parametrize("argv,value", BAD_OPTIONS, ids=[" ".join(a[-2:]) for a, _ in BAD_OPTIONS])
def test_numeric_options_are_validated_at_the_cli(argv, value, capsys):
    code, _, err = _cli(argv, capsys)
    line = _one_error_line(err)
    assert code == 2 and argv[-2] in line and repr(value) in line


@pytest.mark.parametrize("tolerance", [-5, math.nan, math.inf, 101, True, "5"])
def test_summarise_refuses_bad_tolerances(tolerance):
    frame = pd.DataFrame(rows("r", "uniform", "a", 2, tolerance=None))
    with pytest.raises(ConfigError, match=r"tolerance must be a number of percentage points in \[0, 100\]"):
        summarise(frame, tolerance=tolerance)


@pytest.mark.parametrize("kwargs,match", [
    (dict(method="uniform", rate=math.nan), r"in \(0, 1\]; got nan"),
    (dict(method="uniform", rate=True), r"in \(0, 1\]; got True"),
    (dict(method="magnitude", rate=0.5, max_layer_rate=math.nan), r"\[rate, 1\] = \[0.5, 1\], got nan"),
    (dict(method="magnitude", rate=0.5, max_layer_rate=True), r"got True"),
    (dict(method="uniform", rate=0.5, tolerance=-1.0), r"uniform --tolerance .* \[0, 100\], got -1.0"),
    (dict(method="random", tolerance=math.nan), r"random --tolerance .* got nan"),
    (dict(method="random", loops=0), r"random --loops .* >= 1, got 0"),
    (dict(method="random", seed=-3), r"--seed must be an integer >= 0, got -3"),
])
def test_baseline_settings_are_validated_in_the_library(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_pruner(**kwargs)


# ---- atomic writes: one file-mode policy, concurrency ----------------------------------------------

def test_result_and_manifest_files_follow_the_file_mode_policy(tmp_path):
    from neon_ray.runtime.files import atomic_write_bytes

    old = os.umask(0o027)
    try:
        write_results(rows("r1", "neon", "phoneme", 1), tmp_path)
        start_run(tmp_path, "r1", "neon", {"phoneme": 1})
        atomic_write_bytes(tmp_path / "x.nrdc", b"abc")
    finally:
        os.umask(old)
    for path in (tmp_path / "method=neon" / "dataset=phoneme" / "r1.parquet", run_manifest_path(tmp_path, "r1", "neon"),
                 tmp_path / "x.nrdc"):
        assert path.stat().st_mode & 0o777 == 0o640, path
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary file left behind


def test_concurrent_writers_lose_no_row(tmp_path):
    def write(run_id):
        for _ in range(5):
            write_results(rows(run_id, "uniform", "phoneme", 4), tmp_path)

    threads = [threading.Thread(target=write, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    frame = read_results(tmp_path)
    assert len(frame) == 16 and sorted(frame["run_id"].unique()) == ["r0", "r1", "r2", "r3"]


# ---- run_networks writes the manifest (Ray) ---------------------------------------------------------

@pytest.mark.ray
def test_run_networks_records_running_then_complete_or_failed(tiny_zoo, tmp_path, monkeypatch, capsys):
    import neon_ray.pruning.batch as batch_mod
    from neon_ray.pruning.batch import run_networks, zoo_networks
    from neon_ray.pruning.episode_config import EpisodeConfig
    from neon_ray.pruning.episodes import EpisodePruner, FixedChooser, RunOptions
    from neon_ray.pruning.finetune import FinetuneConfig

    episode = EpisodeConfig(finetune=FinetuneConfig(max_epochs=1, patience=1), keep_rates=(0.5,), loops=1)
    pruner = EpisodePruner("uniform", "keep=0.5", episode, FixedChooser(0))
    networks = zoo_networks(tiny_zoo, None, "all")
    res = tmp_path / "res"
    real_write, calls = batch_mod.write_results, []

    def crash_on_second_dataset(rows_, root):
        calls.append(rows_[0]["dataset"])
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return real_write(rows_, root)

    monkeypatch.setattr(batch_mod, "write_results", crash_on_second_dataset)
    with pytest.raises(OSError, match="simulated"):
        run_networks(tiny_zoo, pruner, networks, run_id="u", results=res, options=RunOptions(timing=False), progress=False)
    status = run_status(res).iloc[0]
    assert (status["status"], status["state"], status["networks"], status["expected"]) == ("incomplete", "failed", 3, 6)
    code, _, err = _cli(["results", "summary", res], capsys)
    assert code == 0 and "3 of 6 networks" in err and "disk full" in err

    monkeypatch.setattr(batch_mod, "write_results", real_write)
    run_networks(tiny_zoo, pruner, networks, run_id="u", results=res, options=RunOptions(timing=False), progress=False)
    status = run_status(res).iloc[0]
    assert (status["status"], status["state"], status["networks"], status["expected"]) == ("complete", "complete", 6, 6)
