"""Baselines: exact global magnitude pruning with fixed masks, and the `baseline` command's Parquet rows."""
from __future__ import annotations

import argparse

import pandas as pd
import pytest
import torch

from neon_ray.nets import metrics
from neon_ray.baselines.pruners import MagnitudePruner, global_magnitude_masks, make_pruner, run_baseline
from neon_ray.cli import baseline_cmd
from neon_ray.deepcomp.prune import prunable_weights
from neon_ray.pruning.episodes import RunOptions, evaluate_network
from neon_ray.errors import ConfigError
from neon_ray.nets.spec import ArchSpec, build_mlp
from neon_ray.pruning.episode_config import EpisodeConfig
from neon_ray.pruning.finetune import FinetuneConfig

FAST_FT = FinetuneConfig(max_epochs=3, patience=2)


@pytest.fixture(scope="module")
def zoo(tiny_zoo):
    return tiny_zoo


def test_global_masks_remove_exactly_the_smallest_weights():
    model = build_mlp(ArchSpec(7, 3, (13, 5), ("relu", "tanh"), ("batchnorm", "none")), seed=0)
    weights = prunable_weights(model)
    total = sum(w.numel() for w in weights.values())
    masks = global_magnitude_masks(model, 0.37, max_layer_rate=None)

    assert set(masks) == {"blocks.0.linear.weight", "blocks.1.linear.weight", "head.weight"}
    removed = torch.cat([weights[n].detach().abs()[~m] for n, m in masks.items()])
    kept = torch.cat([weights[n].detach().abs()[m] for n, m in masks.items()])
    assert len(removed) == round(0.37 * total)
    assert removed.max() <= kept.min()  # global: one threshold across layers
    assert len({float((~m).float().mean()) for m in masks.values()}) > 1  # so layers lose different shares


def test_no_layer_is_emptied_under_the_cap_and_the_count_stays_exact():
    # regression: a wide layer's small head weights all fell under the global threshold
    model = build_mlp(ArchSpec(8, 2, (200,), ("relu",), ("none",)), seed=0)
    with torch.no_grad():
        model.head.weight.mul_(1e-3)
    n_head, total = model.head.weight.numel(), 8 * 200 + 2 * 200

    assert not global_magnitude_masks(model, 0.5, max_layer_rate=None)["head.weight"].any()  # pure global empties it
    masks = global_magnitude_masks(model, 0.5, max_layer_rate=0.9)
    assert int((~masks["head.weight"]).sum()) == int(0.9 * n_head)  # the cap binds, exactly
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.5 * total)  # the rest goes elsewhere
    odd = build_mlp(ArchSpec(7, 3, (13,), ("relu",), ("none",)), seed=0)  # 91 + 39 weights
    with pytest.raises(ConfigError, match="cannot remove 117 weights"):
        global_magnitude_masks(odd, 0.9, max_layer_rate=0.9)  # floor(0.9 * n) per layer: 81 + 35 < 117


def test_global_masks_count_is_exact_with_ties():
    model = build_mlp(ArchSpec(4, 2, (6,), ("relu",), ("none",)), seed=0)
    with torch.no_grad():
        for w in prunable_weights(model).values():
            w.fill_(0.5)  # every weight tied
    masks = global_magnitude_masks(model, 0.5)
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.5 * (6 * 4 + 2 * 6))


@pytest.mark.ray
def test_magnitude_keeps_masks_through_finetuning_and_counts_nonzeros(zoo):
    nid = zoo.network_ids(dataset="sklearn:breast_cancer")[0]
    network, (model, _) = zoo.row(nid), zoo.load(nid)
    data = zoo.dataset(network["dataset"])
    pruner = MagnitudePruner(0.8, finetune=FAST_FT, seed=1)
    masks = global_magnitude_masks(model, 0.8)
    pruned = pruner.prune(model, data, network)
    after = prunable_weights(pruned.model)

    n_weights = sum(m.numel() for m in masks.values())
    assert sum(int((w == 0).sum()) for w in after.values()) == round(0.8 * n_weights)
    for name, mask in masks.items():  # the mask chosen before fine-tuning is still exactly the zeros
        assert torch.equal(after[name] != 0, mask)
    assert pruned.info["finetune_epochs"] >= 1 and pruned.sparse and pruned.actions == []
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), pruned.model.state_dict().values()))

    row = evaluate_network(pruner, network, model, data, "mag", RunOptions(timing=False)).rows[0]
    assert row["params_before"] == metrics.count_params(model)
    assert row["params_after"] == row["params_before"] - round(0.8 * n_weights)
    assert row["arch_after"] == row["arch_before"] and row["loops"] is None
    assert row["bytes_after"] < row["bytes_before"]
    assert row["config_label"] == "remove=0.8"


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    baseline_cmd.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.ray
def test_baseline_command_writes_one_row_per_network_and_rerun_replaces(zoo, tmp_path, capsys):
    res = tmp_path / "res"
    argv = ["baseline", "--zoo", str(zoo.root), "--method", "uniform", "--rate", "0.5", "--role", "all",
            "--finetune-epochs", "2", "--no-timing", "--results", str(res)]
    assert _cli(argv) == 0
    assert "uniform" in capsys.readouterr().out

    frame = pd.read_parquet(res)  # method and dataset come back from the Hive partition folders
    assert sorted(frame["network_id"]) == sorted(zoo.manifest()["network_id"])  # one to one
    for col in ("method", "dataset", "network_id", "params_before", "params_after", "test_acc_before", "test_acc_after",
                "latency_before_ms", "latency_after_ms", "arch_before", "arch_after"):
        assert col in frame.columns
    assert set(frame["run_id"]) == {"uniform__keep0.5__s0"}
    first_created = frame.set_index("network_id")["created_at"]

    # the same baseline again replaces its rows; another one (magnitude) adds its own beside them
    assert _cli(argv) == 0
    run_baseline(zoo.root, "magnitude", 0.5, ["sklearn:wine"], "test", res, episode=EpisodeConfig(finetune=FAST_FT),
                 options=RunOptions(timing=False), progress=False)
    frame = pd.read_parquet(res)
    uniform = frame[frame["method"] == "uniform"].set_index("network_id")
    assert len(uniform) == len(zoo.manifest()) and uniform.index.is_unique
    assert (uniform["created_at"] > first_created.loc[uniform.index]).all()
    magnitude = frame[frame["method"] == "magnitude"]
    assert list(magnitude["network_id"]) == zoo.network_ids(dataset="sklearn:wine", role="test")


def test_baseline_mistakes_are_config_errors():
    with pytest.raises(ConfigError, match="takes no --rate"):
        make_pruner("random", 0.5)
    with pytest.raises(ConfigError, match=r"keep-rate of every layer, in \(0, 1\]; got 1.5"):
        make_pruner("uniform", 1.5)
    with pytest.raises(ConfigError, match=r"fraction of weights removed, in \[0, 1\); got 1.0"):
        make_pruner("magnitude", 1.0)
    with pytest.raises(ConfigError, match=r"--max-layer-rate .* must be in \[rate, 1\] = \[0.97, 1\], got 0.95"):
        make_pruner("magnitude", 0.97)
    with pytest.raises(ConfigError, match="takes no --loops"):
        make_pruner("uniform", 0.5, loops=4)
    with pytest.raises(ConfigError, match="unknown baseline 'lookahead'"):
        make_pruner("lookahead")
    with pytest.raises(ConfigError, match="unknown key"):
        EpisodeConfig.from_dict({"finetune": {"epochs": 3}})
    with pytest.raises(ConfigError, match="must be an EpisodeConfig, got dict"):
        make_pruner("magnitude", 0.5, episode={"finetune": {"max_epochs": 3}})
