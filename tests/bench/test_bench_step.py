"""`neon-ray bench step`: figures and units on a tiny zoo (structure only, never speed)."""
import argparse
import json

import pytest

from neon_ray.bench import flops
from neon_ray.bench.reference import ORIGINAL, build_reference_zoo, reference_id, reference_spec
from neon_ray.cli import bench_step
from neon_ray.pruning.finetune import FinetuneConfig
from neon_ray.nets.metrics import count_params
from neon_ray.nets.spec import ArchSpec, build_mlp
from neon_ray.nets.training import TrainConfig
from neon_ray.zoo.store import open_zoo


def _args(argv):
    parser = argparse.ArgumentParser()
    bench_step.register(parser.add_subparsers(dest="bench", required=True))
    return parser.parse_args(["step", *argv])


def test_flop_count_of_an_affected_finetune():
    model = build_mlp(ArchSpec(in_features=4, n_classes=3, hidden=(6, 5), activations=("relu", "relu"), pre=("none", "none")))
    per_row = flops.finetune_flops_per_row(model, 0)
    # forward: Linear 4->6 (48+6), ReLU 6, Linear 6->5 (60+5), ReLU 5, head 5->3 (30+3)
    assert per_row == {"forward": 163, "backward": (54 + 65) + (60 + 30) + 11, "prefix": 0}
    later = flops.finetune_flops_per_row(model, 1)  # trains 6->5 and the head, prefix is block 0
    assert later == {"forward": 65 + 5 + 33, "backward": (65 + 33) + 30 + 5, "prefix": 54 + 6}
    cfg = FinetuneConfig(batch_size=4, max_train_rows=9, max_val_rows=5)
    fl = flops.finetune_flops(model, 1, cfg, n_train=20, n_val=7, epochs=3)
    assert fl["train_rows_per_epoch"] == 8  # 9 rows leave a last batch of 1, which fit skips
    assert fl["val_rows"] == 5
    assert fl["total_gflop"] * 1e9 == pytest.approx(8 * 3 * (103 + 133) + 5 * 4 * 103 + (20 + 5) * 60)


@pytest.mark.ray
def test_step_benchmark_writes_its_figures(tiny_zoo, tmp_path, capsys):
    out = tmp_path / "step.json"
    args = _args(["--zoo", str(tiny_zoo.root), "--dataset", "sklearn:wine", "--episodes", "1", "--loops", "1", "--out", str(out)])
    assert args.func(args) == 0
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "step" and doc["dataset"] == "sklearn:wine"
    assert {"machine", "torch", "cpus"} <= set(doc["environment"])
    assert doc["torch_threads_used"] == 1 and len(doc["load_avg_start"]) == 3
    s, e = doc["step"], doc["episode"]
    assert s["steps"] >= 1 and e["episodes"] == 1
    for key in ("median_step_s", "median_step_finetune_s", "median_step_observe_s", "median_step_eval_s", "finetune_gflops",
                "finetune_gflops_cpu", "cpu_over_wall"):
        assert s[key] > 0, key
    for key in ("median_episode_s", "median_episode_finetune_s", "median_episode_observe_s", "median_episode_eval_s"):
        assert e[key] > 0, key
    assert 0 < s["obs_eval_share"] < 1 and 0 < s["finetune_share"] < 1
    assert isinstance(doc["obs_eval_share_meets_target"], bool)
    mm = doc["matmul_gflops"]
    assert mm["batch"] == 128 and mm["by_width"]["512"] > 0 and all(v > 0 for v in mm["by_width"].values())
    assert set(mm["by_width_cpu"]) == set(mm["by_width"]) and all(v > 0 for v in mm["by_width_cpu"].values())
    (net,) = doc["networks"]
    assert net["matmul_over_finetune"] > 0 and net["matmul_over_finetune_cpu"] > 0 and net["wide"] is False and net["meets_matmul_target"] is None
    assert 0 <= net["test_acc"] <= 1 and 0 <= net["test_acc_orig"] <= 1
    for rec in doc["steps"]:
        assert rec["seconds"] >= rec["finetune_s"] >= 0 and rec["other_s"] >= 0
        if rec["changed"]:
            assert rec["epochs"] >= 1 and rec["total_gflop"] > 0 and rec["finetune_gflops"] > 0 and rec["finetune_gflops_cpu"] > 0
            assert rec["nominal_3x_gflop"] > 0 and rec["train_rows_per_epoch"] > 0
    assert sum(r["steps"] for r in doc["episodes"]) == s["steps"]
    printed = capsys.readouterr().out
    assert "bench step: zoo" in printed and "  episode 1/1 " in printed and "median step" in printed
    assert printed.rstrip().endswith(f"figures written to {out}")


def test_reference_table_prints_ours_next_to_the_original():
    net = {"dataset": "phoneme", "reference": "C", "params_orig": 32_102, "params": 20_000, "steps": 8,
           "finetune_s_step": 0.1, "epochs_step": 5.0, "state_s_step": 0.01, "episode_s": 1.0, "episode_cpu_s": 0.9,
           "test_acc_orig": 0.8, "test_acc": 0.81, "test_acc_delta_pp": 1.0, "original": ORIGINAL[("phoneme", "C")],
           "speedup": 16.9, "speedup_cpu": 18.8, "meets_speedup_target": False, "finetune_gflops_cpu": 20.0,
           "matmul_gflops_cpu": 100.0, "finetune_share_of_matmul": 0.2, "wide": False, "meets_matmul_target": None}
    wide = {**net, "reference": "A", "speedup": 30.0, "meets_speedup_target": True, "finetune_share_of_matmul": 0.75,
            "wide": True, "meets_matmul_target": True}
    figures = {"load_avg_start": [1.0, 1.0, 1.0], "load_avg_end": [1.0, 1.0, 1.0], "build_seconds": 2.0, "networks": [net, wide],
               "step": {"obs_eval_share": 0.05, "finetune_share": 0.9, "finetune_gflops": 1.0, "finetune_gflops_cpu": 1.1,
                        "cpu_over_wall": 0.9},
               "targets": {"speedup_at_least": 25, "finetune_share_of_matmul_at_least": 0.7, "wide_from_width": 500},
               "matmul_gflops": {"batch": 128}}
    lines = bench_step.reference_table(figures).splitlines()
    assert lines[2].split()[:4] == ["phoneme", "C", "32,102", "8"]
    assert "0.10/2.04" in lines[2] and "1.0/16.9" in lines[2] and "x16.9 (x18.8)" in lines[2]
    assert lines[2].endswith("20% n/a (w<500)") and lines[3].endswith("75% meets")
    assert "every episode >= x25 the original's (missed on phoneme C)" in lines[-1]


def test_reference_networks_match_the_original_sizes_and_are_cached(tmp_path):
    # phoneme: 5 features, 2 classes; satimage: 36 features, 6 classes (method.md §9)
    for (dataset, name), orig in ORIGINAL.items():
        features, classes = {"phoneme": (5, 2), "satimage": (36, 6)}[dataset]
        assert count_params(build_mlp(reference_spec(name, features, classes))) == orig["params"]
    root = tmp_path / "ref"
    manifest = build_reference_zoo(root, None, datasets=("sklearn:wine",), networks=("C",),
                                   train=TrainConfig(max_epochs=2), progress=False)
    nid = reference_id("sklearn:wine", "C")
    assert manifest["network_id"].tolist() == [nid] and manifest["reference"].tolist() == ["C"]
    assert manifest["arch"].iloc[0] == "13-300relu-100relu-3"
    first = {p: p.stat().st_mtime_ns for p in root.rglob("*.pt")}
    build_reference_zoo(root, None, datasets=("sklearn:wine",), networks=("C",), train=TrainConfig(max_epochs=2), progress=False)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.pt")} == first  # reused, not retrained
    model, _ = open_zoo(root).load(nid)
    assert model.spec.hidden == (300, 100)
