"""Hostile-user review (issue 9): zoo build/list and datasets CLI refuse bad input cleanly.

Everything here runs without Ray: the CLI fails before Ray starts, and builds that must train
use `build_zoo(..., in_process=True)` on tiny data (one epoch, width 4).
"""
from __future__ import annotations

import gzip
import json
import struct
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from neon_ray import cli
from neon_ray.data.datasets import load_dataset
from neon_ray.data.idx import load_mnist
from neon_ray.data.splits import MIN_SPLIT_ROWS, SplitConfig, rows_needed
from neon_ray.errors import ConfigError, DataError
from neon_ray.nets.spec import SamplerConfig
from neon_ray.nets.training import TrainConfig
from neon_ray.zoo.build import build_zoo, iter_plans
from neon_ray.zoo.config import MAX_NETWORKS, ZooConfig, dataset_slug, network_id
from neon_ray.zoo.store import ZOO_FILE, open_zoo, write_zoo_file

FAST = dict(networks=3, test_networks=1, sampler=SamplerConfig(max_layers=1, widths=(4,)),
            train=TrainConfig(max_epochs=1, patience=1))


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `neon-ray ARGV` run in this process."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("neon-ray: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def table(n: int, features: int, seed: int = 0, classes: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"f{i}": rng.random(n) for i in range(features)})
    return frame.assign(target=np.arange(n) % classes)


def all_files(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------------------------
# 1. Path datasets keep every network, each in its own folder


def test_path_datasets_keep_all_networks_in_distinct_folders(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    table(80, 2).to_csv(tmp_path / "a" / "x.csv", index=False)
    table(80, 3, seed=1).to_csv(tmp_path / "b" / "x.csv", index=False)
    names = (str(tmp_path / "a" / "x.csv"), str(tmp_path / "b" / "x.csv"))
    cfg = ZooConfig(out=str(tmp_path / "zoo"), datasets=names, **FAST)
    manifest = build_zoo(cfg, progress=False, in_process=True)

    assert len(manifest) == 6 and manifest["network_id"].nunique() == 6
    folders = {dataset_slug(n) for n in names}
    assert len(folders) == 2
    for name, features in zip(names, (2, 3)):
        networks = tmp_path / "zoo" / dataset_slug(name) / "networks"
        assert len(list(networks.glob("*.json"))) == 3 and len(list(networks.glob("*.pt"))) == 3
        rows = manifest[manifest["dataset"] == name]
        assert all(json.loads(spec)["in_features"] == features for spec in rows["spec"])
    zoo = open_zoo(tmp_path / "zoo")
    for nid in manifest["network_id"]:
        model, meta = zoo.load(nid)
        assert meta["network_id"] == nid

    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "zoo").rglob("*.pt")}
    again = build_zoo(cfg, progress=False, in_process=True)
    assert len(again) == 6
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "zoo").rglob("*.pt")} == before


@pytest.mark.parametrize("name", [
    "some/dir/x.csv", "x.csv", "x.csv.gz#label", "data.v2", "a b", "..", ".", "../../etc", "C:\\data\\x.parquet",
    "sklearn:unknown", "é", "x" * 300, "-lead", "a" * 80 + "b",
])
def test_every_name_maps_to_a_safe_dotless_folder(name):
    slug = dataset_slug(name)
    assert "." not in slug and "/" not in slug and "\\" not in slug and 0 < len(slug) <= 80
    assert "." not in network_id(name, 0, 12)


def test_plain_and_sklearn_ids_are_unchanged_and_paths_are_distinct():
    assert network_id("phoneme", 0, 7) == "phoneme__s0__n007"
    assert network_id("kr-vs-k", 3, 12) == "kr-vs-k__s3__n012"
    assert network_id("sklearn:wine", 0, 7) == "sklearn_wine__s0__n007"
    assert dataset_slug("a/x.csv") != dataset_slug("b/x.csv")
    assert dataset_slug("a/x.csv").startswith("x-")


def test_names_that_would_share_a_folder_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="share the zoo folder 'sklearn_wine'"):
        ZooConfig(out=str(tmp_path), datasets=("sklearn:wine", "sklearn_wine"))


# ---------------------------------------------------------------------------------------------
# 2. No dataset name can make the zoo write outside --out


def manifest_dir(tmp_path, name: str):
    data = tmp_path / "data"
    data.mkdir()
    table(80, 2).to_csv(data / "t.csv", index=False)
    (data / "MANIFEST.csv").write_text(f"name,file,format,target_column\n{name},t.csv,csv,target\n")
    return data


def test_manifest_dataset_named_dotdot_is_refused(tmp_path, capsys):
    data = manifest_dir(tmp_path, "..")
    before = all_files(tmp_path)
    code, _, err = run_cli(["zoo", "build", "--data-dir", str(data), "--datasets", "..", "--out", str(tmp_path / "w" / "zoo"),
                            "--networks", "1"], capsys)
    assert_one_line_error(code, err, "'..'")
    assert all_files(tmp_path) == before
    with pytest.raises(DataError, match="cannot be used as a file name"):
        load_dataset("..", data)


@pytest.mark.parametrize("name", ["..", ".", "", "   ", "a\x00b", "a\nb"])
def test_zoo_config_refuses_unusable_names(tmp_path, name):
    with pytest.raises(ConfigError, match="ZooConfig.datasets"):
        ZooConfig(out=str(tmp_path), datasets=(name,))


# ---------------------------------------------------------------------------------------------
# 8/10. Settings are validated before anything is written; an unfinished zoo can be rebuilt


def test_bad_batch_size_writes_nothing_and_the_corrected_run_works(tmp_path, capsys):
    out = tmp_path / "zoo"
    code, _, err = run_cli(["zoo", "build", "--datasets", "sklearn:iris", "--out", str(out), "--batch-size", "0"], capsys)
    assert code == 2 and "--batch-size" in err
    assert not out.exists()
    with pytest.raises(ConfigError, match=r"TrainConfig.batch_size must be an integer in \[1, 1000000\], got 0"):
        TrainConfig(batch_size=0)


def test_zoo_without_finished_networks_can_be_rebuilt_with_other_settings(tmp_path):
    out = str(tmp_path / "zoo")
    # A first attempt that wrote zoo.json and then died before finishing any network.
    write_zoo_file(ZooConfig(out=out, datasets=("sklearn:iris",), seed=5, **FAST))
    cfg = ZooConfig(out=out, datasets=("sklearn:iris",), **FAST)
    manifest = build_zoo(cfg, progress=False, in_process=True)
    assert len(manifest) == 3
    assert json.loads((tmp_path / "zoo" / ZOO_FILE).read_text())["identity"]["seed"] == 0
    # Once a network is finished the settings are fixed.
    with pytest.raises(ConfigError, match=r"other settings \(differing: seed\)"):
        build_zoo(ZooConfig(out=out, datasets=("sklearn:iris",), seed=5, **FAST), progress=False, in_process=True)


@pytest.mark.parametrize("content", ["{not json", "[]", '{"datasets": []}'])
def test_unreadable_zoo_json_is_a_config_error(tmp_path, content):
    (tmp_path / ZOO_FILE).write_text(content)
    with pytest.raises(ConfigError, match="zoo.json"):
        build_zoo(ZooConfig(out=str(tmp_path), datasets=("sklearn:iris",), **FAST), progress=False, in_process=True)


# ---------------------------------------------------------------------------------------------
# 9. --out is checked before any work


def test_out_that_is_a_file_is_refused_before_work(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        code, _, err = run_cli(["zoo", "build", "--datasets", "sklearn:iris", "--out", str(out), "--networks", "1"], capsys)
        assert_one_line_error(code, err, str(tmp_path / "file"))
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "sklearn_iris").write_text("in the way")
    with pytest.raises(ConfigError, match="network folder of dataset 'sklearn:iris'"):
        build_zoo(ZooConfig(out=str(tmp_path / "zoo"), datasets=("sklearn:iris",), **FAST), progress=False, in_process=True)
    assert not (tmp_path / "zoo" / ZOO_FILE).exists()


def test_empty_out_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="empty"):
        build_zoo(ZooConfig(out="", datasets=("sklearn:iris",), **FAST), progress=False, in_process=True)


# ---------------------------------------------------------------------------------------------
# 11. --networks is bounded and planning is lazy


def test_networks_is_bounded_and_planning_is_lazy(tmp_path, capsys):
    start = time.perf_counter()
    code, _, err = run_cli(["zoo", "build", "--datasets", "sklearn:iris", "--out", str(tmp_path / "z"),
                            "--networks", "1000000000"], capsys)
    assert code == 2 and "--networks" in err and str(MAX_NETWORKS) in err
    assert time.perf_counter() - start < 10
    with pytest.raises(ConfigError, match=r"ZooConfig.networks must be an integer in \[1, 10000\], got 10001"):
        ZooConfig(out="z", datasets=("sklearn:iris",), networks=MAX_NETWORKS + 1)
    cfg = ZooConfig(out="z", datasets=("sklearn:iris",), networks=MAX_NETWORKS, test_networks=0)
    plans = iter_plans("sklearn:iris", 4, 3, cfg)
    assert isinstance(plans, Iterator)
    assert next(plans)["network_id"] == "sklearn_iris__s0__n000"


def test_help_states_the_network_limit(capsys):
    with pytest.raises(SystemExit):
        cli.main(["zoo", "build", "--help"])
    assert "1 to 10000" in capsys.readouterr().out.replace("\n", " ")


def test_cli_bounds_match_the_library():
    from neon_ray.nets import spec
    from neon_ray.nets import training as train
    from neon_ray.zoo import config as zoo
    from neon_ray.cli import zoo_cmd

    assert (zoo_cmd.MAX_NETWORKS, zoo_cmd.MAX_SEED) == (zoo.MAX_NETWORKS, zoo.MAX_SEED)
    assert (zoo_cmd.MAX_LAYERS, zoo_cmd.MAX_WIDTH) == (spec.MAX_LAYERS, spec.MAX_WIDTH)
    assert (zoo_cmd.MAX_EPOCHS, zoo_cmd.MAX_BATCH_SIZE) == (train.MAX_EPOCHS, train.MAX_BATCH_SIZE)


# ---------------------------------------------------------------------------------------------
# 12. Every numeric option is validated at the CLI and in the configs


@pytest.mark.parametrize("option,value", [
    ("--networks", "0"), ("--networks", "-3"), ("--networks", "10001"), ("--networks", "2.5"),
    ("--test-networks", "-1"), ("--seed", "-1"), ("--seed", "nan"), ("--seed", str(2**32)),
    ("--max-layers", "0"), ("--max-layers", "65"), ("--max-epochs", "0"), ("--max-epochs", "inf"),
    ("--patience", "0"), ("--batch-size", "0"), ("--batch-size", "-64"), ("--workers", "0"),
    ("--widths", "0"), ("--widths", "100,-5"), ("--widths", "16385"), ("--widths", ","), ("--widths", "a,b"),
])
def test_zoo_build_refuses_bad_numbers(tmp_path, capsys, option, value):
    code, _, err = run_cli(["zoo", "build", "--datasets", "sklearn:iris", "--out", str(tmp_path / "z"), option, value], capsys)
    assert code == 2 and f"argument {option}" in err and repr(value) in err
    assert not (tmp_path / "z").exists()


def test_test_networks_above_networks_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(["zoo", "build", "--datasets", "sklearn:iris", "--out", str(tmp_path / "z"),
                            "--networks", "3", "--test-networks", "4"], capsys)
    assert_one_line_error(code, err, "ZooConfig.test_networks", "[0, networks = 3]", "got 4")
    assert not (tmp_path / "z").exists()


@pytest.mark.parametrize("make,field_name", [
    (lambda: ZooConfig(out="z", datasets=("a",), networks=0), "ZooConfig.networks"),
    (lambda: ZooConfig(out="z", datasets=("a",), networks=True), "ZooConfig.networks"),
    (lambda: ZooConfig(out="z", datasets=("a",), networks=2.0), "ZooConfig.networks"),
    (lambda: ZooConfig(out="z", datasets=("a",), test_networks=-1), "ZooConfig.test_networks"),
    (lambda: ZooConfig(out="z", datasets=("a",), seed=-1), "ZooConfig.seed"),
    (lambda: ZooConfig(out="z", datasets=("a",), seed=2**32), "ZooConfig.seed"),
    (lambda: ZooConfig(out="z", datasets=("a",), cpus_per_task=0), "ZooConfig.cpus_per_task"),
    (lambda: ZooConfig(out="z", datasets=("a",), cpus_per_task=float("nan")), "ZooConfig.cpus_per_task"),
    (lambda: ZooConfig(out="z", datasets=("a",), train={"max_epochs": 1}), "ZooConfig.train"),
    (lambda: TrainConfig(max_epochs=0), "TrainConfig.max_epochs"),
    (lambda: TrainConfig(max_epochs=10**6), "TrainConfig.max_epochs"),
    (lambda: TrainConfig(batch_size=-1), "TrainConfig.batch_size"),
    (lambda: TrainConfig(patience=0), "TrainConfig.patience"),
    (lambda: TrainConfig(lr=0.0), "TrainConfig.lr"),
    (lambda: TrainConfig(lr=float("inf")), "TrainConfig.lr"),
    (lambda: TrainConfig(lr=float("nan")), "TrainConfig.lr"),
    (lambda: TrainConfig(weight_decay=-1e-3), "TrainConfig.weight_decay"),
    (lambda: TrainConfig(max_train_rows=1), "TrainConfig.max_train_rows"),
    (lambda: SamplerConfig(min_layers=0), "SamplerConfig.min_layers"),
    (lambda: SamplerConfig(max_layers=65), "SamplerConfig.max_layers"),
    (lambda: SamplerConfig(max_layers=2.5), "SamplerConfig.max_layers"),
    (lambda: SamplerConfig(widths=()), "SamplerConfig.widths"),
    (lambda: SamplerConfig(widths=(8, 0)), "SamplerConfig.widths"),
    (lambda: SamplerConfig(widths=(8.5,)), "SamplerConfig.widths"),
    (lambda: SamplerConfig(widths=(10**9,)), "SamplerConfig.widths"),
    (lambda: SamplerConfig(dropout_p=1.0), "SamplerConfig.dropout_p"),
    (lambda: SamplerConfig(dropout_p=float("nan")), "SamplerConfig.dropout_p"),
    (lambda: SamplerConfig(act_probs={"relu": 2.0, "tanh": -1.0}), "act_probs"),
    (lambda: SamplerConfig(pre_probs={"none": float("nan")}), "pre_probs"),
    (lambda: SplitConfig(val_fraction=float("nan")), "SplitConfig.val_fraction"),
    (lambda: SplitConfig(test_fraction=float("inf")), "SplitConfig.test_fraction"),
    (lambda: SplitConfig(stratify="no"), "SplitConfig.stratify"),
])
def test_configs_refuse_bad_values_naming_the_field(make, field_name):
    with pytest.raises(ConfigError, match=field_name.replace(".", r"\.")):
        make()


# ---------------------------------------------------------------------------------------------
# 13. Tiny or degenerate data


def test_five_row_dataset_is_refused_with_the_numbers(tmp_path):
    path = tmp_path / "five.csv"
    table(5, 2).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"split sizes train 3, val 1, test 1.*at least 10 rows.*at least 64 rows"):
        load_dataset(str(path))


def test_smallest_accepted_dataset_has_ten_rows_per_split(tmp_path):
    assert MIN_SPLIT_ROWS == 10 and rows_needed([0.15, 0.15]) == 64
    table(63, 2).to_csv(tmp_path / "small.csv", index=False)
    table(64, 2).to_csv(tmp_path / "ok.csv", index=False)
    with pytest.raises(DataError, match="val 9"):
        load_dataset(str(tmp_path / "small.csv"))
    ds = load_dataset(str(tmp_path / "ok.csv"))
    assert min(len(ds.y_train), len(ds.y_val), len(ds.y_test)) >= 10


def test_one_class_per_row_is_refused_and_missing_classes_warn(tmp_path, caplog):
    table(60, 2, classes=60).to_csv(tmp_path / "sixty.csv", index=False)
    with pytest.raises(DataError, match="too few rows"):
        load_dataset(str(tmp_path / "sixty.csv"))
    table(200, 2, classes=40).to_csv(tmp_path / "many.csv", index=False)
    load_dataset(str(tmp_path / "many.csv"))
    load_dataset(str(tmp_path / "many.csv"))  # logged once per process, not at every load
    messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    val = [m for m in messages if "classes have no row in the val split (30 rows)" in m]
    assert len(val) == 1 and "many.csv" in val[0] and "of 40 classes" in val[0]


def test_missing_classes_warning_is_one_cli_line(tmp_path, capsys):
    table(200, 2, classes=40).to_csv(tmp_path / "cli.csv", index=False)
    code, out, err = run_cli(["datasets", "show", str(tmp_path / "cli.csv")], capsys)
    assert code == 0 and "classes   40:" in out
    lines = [line for line in err.splitlines() if "have no row in the" in line]
    assert lines and all("cli.csv" in line and "of 40 classes" in line for line in lines)
    assert len(err.strip().splitlines()) == len(lines) and "Traceback" not in err  # one line per warning


def idx_gz(path, array: np.ndarray) -> None:
    code = {np.dtype(np.uint8): 0x08}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes()))


def test_idx_folder_with_a_tiny_val_split_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        idx_gz(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 4, 4), dtype=np.uint8))
        idx_gz(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 2).astype(np.uint8))
    with pytest.raises(DataError, match=r"val 3.*at least 10 rows"):
        load_mnist(tmp_path)
    assert len(load_mnist(tmp_path, val_fraction=0.25).y_val) == 10


# ---------------------------------------------------------------------------------------------
# 14. zoo list with an unknown dataset; datasets show/list with bad input


def test_zoo_list_unknown_dataset_names_the_known_ones(tmp_path, capsys):
    build_zoo(ZooConfig(out=str(tmp_path / "zoo"), datasets=("sklearn:iris",), **{**FAST, "networks": 1, "test_networks": 0}),
              progress=False, in_process=True)
    code, out, err = run_cli(["zoo", "list", str(tmp_path / "zoo"), "--dataset", "nosuch"], capsys)
    assert_one_line_error(code, err, "'nosuch'", "sklearn:iris")
    code, out, _ = run_cli(["zoo", "list", str(tmp_path / "zoo"), "--dataset", "sklearn:iris"], capsys)
    assert code == 0 and "sklearn_iris__s0__n000" in out and "1 networks" in out


def test_zoo_list_of_a_non_zoo_is_one_line(tmp_path, capsys):
    (tmp_path / ZOO_FILE).write_text("{broken")
    code, _, err = run_cli(["zoo", "list", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "zoo.json")


@pytest.mark.parametrize("argv,needle", [
    (["datasets", "show", "nosuch"], "'nosuch'"),
    (["datasets", "show", ""], "bad dataset name"),
    (["datasets", "show", "sklearn:nosuch"], "'nosuch'"),
    (["datasets", "show", "nosuch", "--data-dir", "{tmp}/absent"], "not found"),
    (["datasets", "show", "nosuch", "--data-dir", "{tmp}/file"], "is a file"),
    (["datasets", "show", "nosuch", "--data-dir", "{tmp}"], "no MANIFEST.csv"),
    (["datasets", "show", "{tmp}/file"], "unsupported file type"),
    (["datasets", "show", "{tmp}/nope.csv"], "not found"),
    (["datasets", "list", "--data-dir", "{tmp}/absent"], "not found"),
    (["datasets", "list", "--data-dir", "{tmp}/file"], "is a file"),
    (["datasets", "list", "--data-dir", "{tmp}"], "no MANIFEST.csv"),
])
def test_datasets_cli_bad_name_or_dir_is_one_line(tmp_path, capsys, argv, needle):
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert_one_line_error(code, err, needle)


def test_datasets_show_refuses_a_bad_seed(capsys):
    code, _, err = run_cli(["datasets", "show", "sklearn:iris", "--seed", "-1"], capsys)
    assert code == 2 and "argument --seed" in err
