"""compress_model end to end on small data, the LeNet parameter counts, and `neon-ray compress`."""
from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import pytest
import torch

from neon_ray.cli import compress_cmd
from neon_ray.data.datasets import load_dataset
from neon_ray.deepcomp import fileformat
from neon_ray.deepcomp.lenet import build_lenet5, lenet_300_100_spec
from neon_ray.deepcomp.pipeline import DeepCompConfig, compress_model, format_stage_table
from neon_ray.errors import ConfigError
from neon_ray.nets import metrics
from neon_ray.nets.checkpoint import save_network
from neon_ray.nets.spec import ArchSpec, build_mlp
from neon_ray.nets.training import TrainConfig, fit

FAST = DeepCompConfig(
    q_schedule=(0.5, 1.0),
    prune_retrain=TrainConfig(max_epochs=2, lr=3e-3, batch_size=64, patience=3),
    share_retrain=TrainConfig(max_epochs=2, lr=1e-3, batch_size=64, patience=3),
    fc_bits=4,
)
ONE_EPOCH = TrainConfig(max_epochs=1, batch_size=128)


def toy_dataset(n_features=16, n=1200, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, n_features, generator=g)
    y = (X @ torch.randn(n_features, 3, generator=g)).argmax(1)
    cut = [int(n * 0.6), int(n * 0.8)]
    return SimpleNamespace(
        X_train=X[: cut[0]], y_train=y[: cut[0]], X_val=X[cut[0] : cut[1]], y_val=y[cut[0] : cut[1]],
        X_test=X[cut[1] :], y_test=y[cut[1] :],
    )


def test_lenet_parameter_counts_match_the_papers():
    assert metrics.count_params(build_mlp(lenet_300_100_spec())) == 266_610
    assert metrics.count_params(build_lenet5()) == 431_080


def test_compress_model_reports_every_stage_honestly(tmp_path):
    data = toy_dataset()
    model = build_mlp(ArchSpec(16, 3, (64, 32), ("relu", "relu"), ("batchnorm", "none")), seed=0)
    fit(model, (data.X_train, data.y_train), (data.X_val, data.y_val), TrainConfig(max_epochs=8, lr=3e-3))
    original = {k: v.clone() for k, v in model.state_dict().items()}
    out = tmp_path / "toy.nrdc"
    decoded, rows = compress_model(model, data, FAST, out)

    assert [r["stage"] for r in rows] == ["dense", "pruned", "shared", "huffman"]
    # Dense storage: float32 tensors plus BatchNorm's int64 num_batches_tracked.
    assert rows[0]["bytes"] == 4 * sum(t.numel() for t in original.values() if t.is_floating_point()) + 8
    assert rows[-1]["bytes"] == out.stat().st_size
    assert rows[0]["bytes"] > rows[1]["bytes"] > rows[2]["bytes"] >= rows[3]["bytes"]
    assert rows[1]["nonzeros"] < rows[0]["nonzeros"] and rows[1]["nonzeros"] == rows[3]["nonzeros"]
    assert rows[2]["test_accuracy"] == rows[3]["test_accuracy"]  # decoding changes nothing
    assert rows[3]["test_error"] < 0.25
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())  # the input model is untouched
    n_distinct = len(torch.unique(decoded.blocks[0].linear.weight[decoded.blocks[0].linear.weight != 0]))
    assert n_distinct <= 2**FAST.fc_bits
    assert "| huffman |" in format_stage_table(rows, {"paper": ["a", "b", "c", "d"]})


def test_compress_model_on_lenet5(tmp_path):
    data = toy_dataset(784, 300)
    model = build_lenet5(seed=0)
    cfg = DeepCompConfig(q_schedule=(1.0,), prune_retrain=ONE_EPOCH, share_retrain=ONE_EPOCH, conv_bits=6, fc_bits=3)
    decoded, rows = compress_model(model, data, cfg, tmp_path / "l5.nrdc")
    conv = decoded.conv2.weight[decoded.conv2.weight != 0]
    assert len(torch.unique(conv)) <= 64 and len(torch.unique(decoded.fc1.weight)) <= 9  # 8 clusters + zero
    assert rows[-1]["bytes"] < rows[0]["bytes"] / 8


def test_compress_model_without_retraining(tmp_path):
    data = toy_dataset()
    model = build_mlp(ArchSpec(16, 3, (32,), ("relu",), ("none",)), seed=0)
    cfg = DeepCompConfig(q_schedule=(1.0,), prune_retrain=None, share_retrain=None, fc_bits=4)
    _, rows = compress_model(model, data, cfg, tmp_path / "raw.nrdc")
    assert rows[1]["nonzeros"] < rows[0]["nonzeros"] and rows[-1]["bytes"] < rows[0]["bytes"]


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="q_schedule"):
        DeepCompConfig(q_schedule=())
    with pytest.raises(ConfigError, match="fc_bits"):
        DeepCompConfig(fc_bits=0)
    with pytest.raises(ConfigError, match="init"):
        DeepCompConfig(init="kmeans++")
    with pytest.raises(ConfigError, match="prune_retrain must be a TrainConfig or None"):
        DeepCompConfig(prune_retrain={"max_epochs": 1})


def run_cli(argv):
    parser = argparse.ArgumentParser()
    compress_cmd.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_compress_command_on_a_saved_network(tmp_path, capsys):
    data = load_dataset("sklearn:wine", seed=3)
    model = build_mlp(ArchSpec(data.X_train.shape[1], 3, (32,), ("relu",), ("none",)), seed=0)
    fit(model, (data.X_train, data.y_train), (data.X_val, data.y_val), TrainConfig(max_epochs=20, lr=1e-2, batch_size=16))
    stem = tmp_path / "wine_net"
    save_network(model, stem, {"dataset": "sklearn:wine", "seed": 3})
    out, table = tmp_path / "wine.nrdc", tmp_path / "table.json"
    argv = ["compress", "--network", str(stem), "--q", "0.5,1.0", "--bits", "3", "--prune-epochs", "2",
            "--share-epochs", "2", "--out", str(out), "--table", str(table)]
    assert run_cli(argv) == 0
    printed = capsys.readouterr().out
    assert "on sklearn:wine (seed 3)" in printed and "| huffman |" in printed
    rows = json.loads(table.read_text())["rows"]
    assert rows[-1]["bytes"] == out.stat().st_size
    assert fileformat.read(out).spec == model.spec


def test_compress_command_needs_a_dataset(tmp_path):
    stem = tmp_path / "net"
    save_network(build_mlp(ArchSpec(4, 2, (3,), ("relu",), ("none",))), stem, {})
    with pytest.raises(ConfigError, match="--dataset"):
        run_cli(["compress", "--network", str(stem), "--out", str(tmp_path / "x.nrdc")])
