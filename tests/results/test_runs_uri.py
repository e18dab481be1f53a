"""Run manifests (`RES/_runs/...`) and the result commands by URI, against a real S3-compatible
server on loopback (tests/conftest_s3.py): written and read as on disk, through pyarrow's S3 client."""
from __future__ import annotations

import argparse
import json
import logging

import pytest

from conftest_s3 import bucket, keys, s3, uri  # noqa: F401  (fixtures)
from neon_ray.cli import baseline_cmd, results_cmd
from neon_ray.errors import ConfigError, DataError
from neon_ray.pruning.batch import run_networks
from neon_ray.pruning.episodes import RunOptions
from neon_ray.results.runs import finish_run, read_runs, run_manifest_path, start_run
from neon_ray.results.store import read_results, write_results
from neon_ray.results.summary import run_status
from neon_ray.runtime.files import atomic_write_bytes
from test_results import rows

WINE = "sklearn:wine"
TIMES = ("started_at", "finished_at", "path")


def _plain(runs: list[dict]) -> list[dict]:
    return [{k: v for k, v in run.items() if k not in TIMES} for run in runs]


def test_run_manifests_round_trip_through_s3_as_on_disk(s3, bucket, tmp_path):
    root = uri(s3, f"{bucket}/res")
    for where in (root, tmp_path):
        manifest = start_run(where, "r1", "uniform", {WINE: 3, "phoneme": 2}, methods=["uniform", "uniform+dc"],
                             config_label="keep=0.5")
        finish_run(where, manifest, "complete")
        start_run(where, "r2", "neon", {WINE: 1})
    remote, local = read_runs(root), read_runs(tmp_path)
    assert _plain(remote) == _plain(local)
    assert [(r["run_id"], r["status"], r["networks"]) for r in remote] == [("r2", "running", 1), ("r1", "complete", 5)]
    assert keys(s3, f"{bucket}/res") == ["_runs/method=neon/r2.json", "_runs/method=uniform/r1.json"]
    assert remote[1]["path"] == f"s3://{bucket}/res/_runs/method=uniform/r1.json?{s3[1]}"
    assert run_manifest_path(root, "r1", "uniform") == remote[1]["path"]


def test_a_uri_root_with_manifests_but_no_rows_names_the_runs(s3, bucket):
    root = uri(s3, f"{bucket}/res")
    start_run(root, "r1", "neon", {WINE: 3})
    with pytest.raises(DataError, match=r"no result files \(\*\.parquet\) found; run manifests name 1 run\(s\) that "
                                        r"wrote no rows: 'r1' \(neon, running\)"):
        read_results(root)


def test_run_status_by_uri_tells_complete_incomplete_and_unknown_runs(s3, bucket):
    root = uri(s3, f"{bucket}/res")
    write_results(rows("done", "neon", WINE, 2) + rows("cut", "neon", WINE, 2) + rows("bare", "neon", WINE, 1), root)
    finish_run(root, start_run(root, "done", "neon", {WINE: 2}))
    finish_run(root, start_run(root, "cut", "neon", {WINE: 3}))  # says complete, but a network has no row
    status = run_status(root).set_index("run_id")
    assert status.loc["done", "status"] == "complete" and status.loc["done", "networks"] == 2
    assert status.loc["cut", "status"] == "incomplete"
    assert (status.loc["cut", "networks"], status.loc["cut", "expected"]) == (2, 3)
    assert status.loc["bare", "status"] == "unknown"


def test_bad_manifests_and_temporary_keys_are_skipped_naming_the_uri_without_credentials(s3, bucket, caplog):
    root = f"s3://AKIDEXAMPLE:s3cr3t-value@{bucket}/res?{s3[1]}"
    start_run(root, "r1", "neon", {WINE: 1})
    fs = s3[0]
    with fs.open_output_stream(f"{bucket}/res/_runs/method=neon/broken.json") as out:
        out.write(b'{"run_id": "x"')
    with fs.open_output_stream(f"{bucket}/res/_runs/method=neon/.r1.json.dead.tmp") as out:
        out.write(b"half")  # left by a writer killed between upload and move
    with caplog.at_level(logging.WARNING, logger="neon_ray.results.runs"):
        runs = read_runs(root)
    assert [r["run_id"] for r in runs] == ["r1"]
    assert f"skipped run manifest s3://***@{bucket}/res/_runs/method=neon/broken.json" in caplog.text
    assert "s3cr3t" not in caplog.text + runs[0]["path"]


def test_a_manifest_written_again_replaces_the_object_whole(s3, bucket):
    root = uri(s3, f"{bucket}/res")
    manifest = start_run(root, "r1", "neon", {WINE: 1})
    finish_run(root, manifest, "failed", error="RuntimeError: boom")
    (run,) = read_runs(root)
    assert (run["status"], run["error"]) == ("failed", "RuntimeError: boom")
    assert keys(s3, f"{bucket}/res") == ["_runs/method=neon/r1.json"]


def test_pruned_networks_go_to_a_path_not_a_uri(tmp_path):
    # nothing listens on port 1: the refusal comes before the store or the zoo is opened
    nets = "s3://bucket/nets?endpoint_override=127.0.0.1:1&scheme=http"
    with pytest.raises(ConfigError, match=r"save_dir\) s3://bucket/nets\?.*: networks are saved to a local or "
                                          "shared-filesystem path, not a URI"):
        run_networks(tmp_path / "no-zoo", None, [], run_id="r", options=RunOptions(save_dir=nets))


def _cli(module, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.ray
def test_baseline_and_results_summary_commands_by_uri(tiny_zoo, s3, bucket, capsys, monkeypatch):
    """`neon-ray baseline --results s3://...?endpoint_override=...`, then `neon-ray results summary s3://...`
    with the endpoint in AWS_ENDPOINT_URL: both ways store.py documents."""
    nets = tiny_zoo.network_ids(dataset=WINE, role="test")
    argv = ["baseline", "--zoo", str(tiny_zoo.root), "--method", "uniform", "--rate", "0.5", "--datasets", WINE,
            "--role", "test", "--finetune-epochs", "1", "--no-timing", "--results", uri(s3, f"{bucket}/res")]
    assert _cli(baseline_cmd, argv) == 0
    assert keys(s3, f"{bucket}/res") == ["_runs/method=uniform/uniform__keep0.5__s0.json",
                                         "method=uniform/dataset=sklearn%3Awine/uniform__keep0.5__s0.parquet"]
    capsys.readouterr()

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{s3[2]}")
    assert _cli(results_cmd, ["results", "summary", f"s3://{bucket}/res", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(r["method"], r["networks"]) for r in doc["overall"]] == [("uniform", len(nets))]
    assert [(r["run_id"], r["status"], r["networks"], r["expected"]) for r in doc["runs"]] == \
        [("uniform__keep0.5__s0", "complete", len(nets), len(nets))]
