"""uniform-search: bisection over the uniform keep-rate, on a toy function, a real network and the CLI;
the guard of the magnitude baseline."""
from __future__ import annotations

import argparse
import json

import pytest

from neon_ray.baselines.pruners import make_pruner
from neon_ray.baselines.search import UniformSearchPruner, bisect_keep_rate
from neon_ray.cli import baseline_cmd
from neon_ray.data.datasets import load_dataset
from neon_ray.errors import ConfigError
from neon_ray.nets import metrics
from neon_ray.nets.spec import ArchSpec, build_mlp
from neon_ray.nets.training import TrainConfig, fit
from neon_ray.pruning.episode_config import EpisodeConfig
from neon_ray.pruning.episodes import confident_within
from neon_ray.pruning.finetune import FinetuneConfig
from neon_ray.pruning.structured import kept_width
from neon_ray.results.store import read_results

FAST = EpisodeConfig(finetune=FinetuneConfig(max_epochs=2, patience=1))


@pytest.mark.parametrize("boundary", [0.37, 0.5, 0.999, 0.001])
@pytest.mark.parametrize("steps", [1, 6, 8])
def test_bisection_finds_the_boundary_of_a_monotone_function(boundary, steps):
    calls = []

    def feasible(rate):
        calls.append(rate)
        return rate >= boundary

    rate = bisect_keep_rate(feasible, steps)
    assert len(calls) == steps and rate >= boundary  # always a feasible rate
    assert rate - boundary <= 2.0 ** -steps


def test_bisection_never_feasible_keeps_everything():
    assert bisect_keep_rate(lambda rate: False, 7) == 1.0
    assert bisect_keep_rate(lambda rate: True, 7) == 2.0 ** -7


@pytest.fixture(scope="module")
def wine_net():
    """A real trained network (wine, 13-32relu-16relu-3) and its dataset, without Ray."""
    data = load_dataset("sklearn:wine", seed=0)
    model = build_mlp(ArchSpec(data.n_features, data.n_classes, (32, 16), ("relu", "relu"), ("none", "none")), seed=0)
    fit(model, (data.X_train, data.y_train), (data.X_val, data.y_val), TrainConfig(max_epochs=60), seed=0)
    return model.eval(), data


def test_search_on_a_network_returns_a_rate_within_tolerance(wine_net):
    model, data = wine_net
    pruner = UniformSearchPruner(2.0, FAST, steps=6)
    pruned = pruner.prune(model, data, {"network_id": "sklearn:wine__s0__n000"})

    rate, tested = pruned.info["keep_rate"], pruned.info["tested"]
    assert pruned.info["within_tolerance"]
    # widths that keep every neuron are the original, within by definition; anything else passed the bound
    assert pruned.model.spec.hidden == (32, 16) or confident_within(model, pruned.model, data, 2.0, FAST.confidence_z)
    assert pruned.actions == [rate, rate] and len(tested) == 6 and pruned.info["probes"] <= 6
    # bisection: the rate is the smallest one found within tolerance, every rate tested below it failed,
    # and the highest failure is within 2**-6 of it
    ok = [r for r, within in tested if within]
    failed = [r for r, within in tested if not within]
    assert rate == min(ok, default=1.0) and all(r < rate for r in failed)
    assert rate - max(failed, default=0.0) <= 2.0 ** -6
    assert pruned.model.spec.hidden == tuple(kept_width(w, rate) for w in (32, 16))
    assert pruner.label == "a=2 steps=6" and json.loads(json.dumps(pruner.row_config()))["search_steps"] == 6


def test_guarded_magnitude_returns_the_original_when_pruning_breaks_the_tolerance(wine_net):
    model, data = wine_net
    frozen = FinetuneConfig(max_epochs=1, patience=1, lr=1e-12)  # no recovery: 90% of the weights simply go
    network = {"network_id": "sklearn:wine__s0__n000"}
    plain = make_pruner("magnitude", 0.9, tolerance=1, episode=EpisodeConfig(finetune=frozen)).prune(model, data, network)
    acc0, acc1 = (metrics.accuracy_f1(m, data.X_val, data.y_val)[0] for m in (model, plain.model))
    assert 100 * (acc1 - acc0) < -1.0 and (plain.guard, plain.returned_step) == (False, 1)

    strict, loose = (make_pruner("magnitude", 0.9, tolerance=a, guard=True, episode=EpisodeConfig(finetune=frozen))
                     .prune(model, data, network) for a in (1, 100))
    assert (strict.guard, strict.returned_step, strict.sparse) == (True, 0, False) and strict.model is model
    assert (loose.returned_step, loose.sparse) == (1, True)
    assert metrics.count_nonzero(loose.model) < metrics.count_params(model)


def test_search_and_guard_mistakes_are_config_errors():
    with pytest.raises(ConfigError, match="give --tolerance"):
        make_pruner("uniform-search")
    with pytest.raises(ConfigError, match="takes no --rate"):
        make_pruner("uniform-search", 0.5, tolerance=5)
    with pytest.raises(ConfigError, match="--guard does not apply"):
        make_pruner("uniform-search", tolerance=5, guard=True)
    with pytest.raises(ConfigError, match="random does not take it"):
        make_pruner("random", search_steps=3)
    with pytest.raises(ConfigError, match="random --guard .* give --tolerance"):
        make_pruner("random", guard=True)
    with pytest.raises(ConfigError, match="uniform-search steps"):
        UniformSearchPruner(5.0, steps=0)
    guarded = make_pruner("random", tolerance=5, guard=True)
    assert guarded.guard and guarded.label == "loops=4 guard a=5" and guarded.episode.tolerance == 5.0
    assert make_pruner("magnitude", 0.5, tolerance=1, guard=True).label == "remove=0.5 guard a=1"


@pytest.mark.ray
def test_baseline_command_uniform_search_writes_rows(tiny_zoo, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    baseline_cmd.register(parser.add_subparsers())
    res = tmp_path / "res"
    args = parser.parse_args(["baseline", "--zoo", str(tiny_zoo.root), "--method", "uniform-search", "--tolerance", "5",
                              "--search-steps", "3", "--finetune-epochs", "2", "--no-timing", "--results", str(res)])
    assert args.func(args) == 0
    assert "uniform-search" in capsys.readouterr().out

    frame = read_results(res)
    assert sorted(frame["network_id"]) == sorted(tiny_zoo.manifest()["network_id"])
    assert set(frame["run_id"]) == {"uniform-search__a5_steps3__s0"} and set(frame["tolerance"]) == {5.0}
    assert not frame["guard"].any() and (frame["params_after"] <= frame["params_before"]).all()
    for row in frame.itertuples():
        rates = set(json.loads(row.actions))
        assert len(rates) == 1 and 0 < rates.pop() <= 1  # one uniform keep-rate, the one found
        assert 100 * (row.val_acc_after - row.val_acc_before) >= -5.0 - 1e-9  # the bound passed, so the drop did
