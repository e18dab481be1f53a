"""Results by URI (`s3://...`) against a real S3-compatible server: moto's server mode, started on
loopback and a free port (tests/conftest_s3.py), reached by pyarrow's own S3 client (no mock of pyarrow).

Object stores have no rename: a write goes to a unique temporary key `.NAME.<random>.tmp`, then
moves onto NAME (S3: one server-side copy, then a delete); readers skip dot-prefixed keys.
"""
from __future__ import annotations

import logging
import threading
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest_s3 import bucket, keys, s3, uri  # noqa: F401  (fixtures)
from neon_ray.errors import ConfigError, DataError
from neon_ray.results.store import read_results, write_results
from neon_ray.runtime.files import atomic_write, atomic_write_bytes, check_output_dir, display, is_uri, join, local_path
from test_results import rows


def test_results_round_trip_through_s3_as_on_disk(s3, bucket, tmp_path):
    data = rows("r1", "neon", "sklearn:wine", 3) + rows("r1", "neon", "phoneme", 2, reduction=2.0)
    written = write_results(data, uri(s3, f"{bucket}/res"))
    write_results(data, tmp_path)
    assert all(isinstance(w, str) and w.startswith(f"s3://{bucket}/res/method=neon/") for w in written)
    assert keys(s3, f"{bucket}/res") == ["method=neon/dataset=phoneme/r1.parquet",
                                         "method=neon/dataset=sklearn%3Awine/r1.parquet"]
    remote, local = read_results(uri(s3, f"{bucket}/res")), read_results(tmp_path)
    pd.testing.assert_frame_equal(remote.sort_values("network_id").reset_index(drop=True),
                                  local.sort_values("network_id").reset_index(drop=True))


def test_rewriting_replaces_the_object_and_leaves_no_temporary_key(s3, bucket):
    root = uri(s3, f"{bucket}/res")
    write_results(rows("r1", "neon", "phoneme", 3), root)
    write_results(rows("r2", "neon", "phoneme", 3), root)
    write_results(rows("r1", "neon", "phoneme", 3, reduction=2.0), root)
    frame = read_results(root)
    assert len(frame) == 6
    assert sorted(frame[frame.run_id == "r1"]["reduction"]) == [2.0] * 3
    assert not [k for k in keys(s3, f"{bucket}/res") if k.rsplit("/", 1)[-1].startswith(".")]


def test_a_temporary_key_left_by_a_dead_writer_is_never_read(s3, bucket):
    fs = s3[0]
    root = uri(s3, f"{bucket}/res")
    write_results(rows("r1", "neon", "phoneme", 2), root)
    # a writer killed between upload and move leaves its temporary key, here half an object
    whole = fs.open_input_file(f"{bucket}/res/method=neon/dataset=phoneme/r1.parquet").read()
    with fs.open_output_stream(f"{bucket}/res/method=neon/dataset=phoneme/.r1.parquet.dead.tmp") as out:
        out.write(whole[: len(whole) // 2])
    frame = read_results(root)
    assert len(frame) == 2


def test_a_failed_write_leaves_the_previous_object_and_no_key(s3, bucket):
    target = uri(s3, f"{bucket}/res/notes.bin")
    atomic_write_bytes(target, b"first")

    def fail(fh):
        fh.write(b"half")
        raise RuntimeError("the writer failed")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert keys(s3, f"{bucket}/res") == ["notes.bin"]
    assert s3[0].open_input_file(f"{bucket}/res/notes.bin").read() == b"first"


def test_readers_see_one_whole_version_or_the_other_while_it_is_replaced(s3, bucket):
    """No rename on S3: the move (copy onto the key) must still swap whole objects."""
    root = uri(s3, f"{bucket}/res")
    write_results(rows("r1", "neon", "phoneme", 2, reduction=2.0), root)
    seen, errors, stop = set(), [], threading.Event()

    def read():
        while not stop.is_set():
            try:
                frame = read_results(root)
                seen.add((len(frame), tuple(sorted(set(frame["reduction"].round(2))))))
            except Exception as exc:  # a partial object would fail to parse or be skipped
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(8):
            write_results(rows("r1", "neon", "phoneme", 2 + i % 2 * 40, reduction=2.0 + i % 2), root)
    finally:
        stop.set()
        reader.join()
    assert not errors
    assert seen and seen <= {(2, (2.0,)), (42, (3.0,))}


def test_foreign_objects_are_skipped_with_a_warning_naming_their_uri(s3, bucket, caplog):
    fs = s3[0]
    root = uri(s3, f"{bucket}/res")
    write_results(rows("r1", "neon", "phoneme", 2), root)
    with fs.open_output_stream(f"{bucket}/res/method=neon/dataset=phoneme/other.parquet") as out:
        pq.write_table(pa.table({"x": [1, 2]}), out)
    with caplog.at_level(logging.WARNING, logger="neon_ray.results.store"):
        frame = read_results(root)
    assert len(frame) == 2
    assert f"s3://{bucket}/res/method=neon/dataset=phoneme/other.parquet" in caplog.text
    assert "lacks columns" in caplog.text


def test_credentials_in_the_uri_work_and_never_show_in_messages(s3, bucket, caplog):
    root = f"s3://AKIDEXAMPLE:s3cr3t-value@{bucket}/res?{s3[1]}"
    write_results(rows("r1", "neon", "phoneme", 2), root)
    atomic_write_bytes(join(root, "method=neon", "dataset=phoneme", "notes.txt"), b"not a result")
    with caplog.at_level(logging.WARNING, logger="neon_ray.results.store"):
        assert len(read_results(root)) == 2
    assert f"s3://***@{bucket}/res/method=neon/dataset=phoneme/notes.txt" in caplog.text
    with pytest.raises(DataError) as refused:
        read_results(f"s3://AKIDEXAMPLE:s3cr3t-value@{bucket}/elsewhere?{s3[1]}")
    assert "s3cr3t" not in caplog.text + str(refused.value) and "***@" in str(refused.value)
    assert display("s3://k:s@b/p?scheme=http") == "s3://***@b/p?scheme=http" and display("/tmp/a@b") == "/tmp/a@b"


def test_missing_or_empty_locations_are_one_line_errors(s3, bucket):
    with pytest.raises(DataError, match="results directory not found"):
        read_results(uri(s3, f"{bucket}/nothing-here"))
    with pytest.raises(ConfigError, match=r"no-such-bucket-\w+ does not exist \(create the bucket"):
        check_output_dir(uri(s3, f"no-such-bucket-{uuid.uuid4().hex[:8]}/res"), "results directory")
    atomic_write_bytes(uri(s3, f"{bucket}/a-file"), b"x")
    with pytest.raises(ConfigError, match="a-file is a file, expected a directory"):
        check_output_dir(uri(s3, f"{bucket}/a-file/res"), "results directory")
    assert check_output_dir(uri(s3, f"{bucket}/new/res")) == uri(s3, f"{bucket}/new/res")
    assert keys(s3, bucket) == ["a-file"]  # checking created nothing


def test_an_unknown_scheme_is_a_config_error():
    with pytest.raises(ConfigError, match="not a location pyarrow can open"):
        check_output_dir("nosuchfs://x/y", "results directory")


def test_file_uris_and_paths_are_local(tmp_path):
    assert not is_uri(tmp_path) and not is_uri(str(tmp_path)) and not is_uri(f"file://{tmp_path}")
    assert is_uri("s3://b/k") and is_uri("gs://b/k") and is_uri("hdfs://host:8020/p")
    assert local_path(f"file://{tmp_path}/res") == tmp_path / "res"
    assert join("s3://b/res?scheme=http", "method=x", "f.parquet") == "s3://b/res/method=x/f.parquet?scheme=http"
    write_results(rows("r1", "neon", "phoneme", 2), f"file://{tmp_path}/res")
    assert (tmp_path / "res" / "method=neon" / "dataset=phoneme" / "r1.parquet").is_file()
    assert len(read_results(f"file://{tmp_path}/res")) == 2
