"""Structured pruning: exactness of slicing, widths, BatchNorm, remove-layer merging."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from neon_ray.pruning.structured import kept_neurons, kept_width, neuron_importance, prune_layer, remove_layer
from neon_ray.errors import ConfigError
from neon_ray.nets.spec import ArchSpec, build_mlp


def _spec(hidden, pre=None, act=None, in_features=7, n_classes=3) -> ArchSpec:
    n = len(hidden)
    return ArchSpec(in_features, n_classes, tuple(hidden), tuple(act or ["relu"] * n), tuple(pre or ["none"] * n))


def _randomise_batchnorms(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine terms, as a trained one has."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen))
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.3)
                m.num_batches_tracked.fill_(17)


def _zero_outgoing(model, layer: int, removed: torch.Tensor):
    """A copy of `model` whose removed neurons of `layer` no longer reach the next layer."""
    ref = build_mlp(model.spec)
    ref.load_state_dict(model.state_dict())
    nxt = ref.blocks[layer + 1].linear if layer + 1 < ref.spec.depth else ref.head
    with torch.no_grad():
        nxt.weight[:, removed] = 0.0
    return ref.eval()


@pytest.mark.parametrize("pre_next", ["none", "batchnorm", "dropout"])
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_sliced_network_equals_zeroed_outgoing_weights(pre_next, layer):
    model = build_mlp(_spec([12, 10, 9], pre=["batchnorm", pre_next, pre_next], act=["relu", "tanh", "sigmoid"]), seed=3)
    _randomise_batchnorms(model)
    model.eval()
    importance = neuron_importance(model, layer, "l2")
    width = model.spec.hidden[layer]
    keep = kept_neurons(importance, kept_width(width, 0.6))
    removed = torch.tensor([i for i in range(width) if i not in set(keep.tolist())])

    pruned = prune_layer(model, layer, 0.6).eval()
    x = torch.randn(64, 7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = _zero_outgoing(model, layer, removed)(x)
        got = pruned(x)
    assert pruned.spec.hidden[layer] == math.ceil(0.6 * width)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_keep_rate_one_returns_the_same_object():
    model = build_mlp(_spec([8, 6]), seed=0)
    assert prune_layer(model, 1, 1.0) is model
    assert prune_layer(model, 1, 0.9) is model  # ceil(0.9 * 6) = 6: no neuron to remove


@pytest.mark.parametrize("width,rate,expected", [(100, 0.7, 70), (100, 0.9, 90), (10, 0.6, 6), (3, 0.6, 2), (1, 0.6, 1), (301, 0.8, 241)])
def test_new_width_is_ceil_of_rate_times_width(width, rate, expected):
    assert kept_width(width, rate) == expected
    model = build_mlp(_spec([width, 5]), seed=0)
    assert prune_layer(model, 0, rate).spec.hidden == (expected, 5)


def test_keeps_most_important_neurons_in_original_order():
    model = build_mlp(_spec([5]), seed=0)
    with torch.no_grad():
        model.blocks[0].linear.weight.copy_(torch.tensor([[1.0] * 7, [5.0] * 7, [0.1] * 7, [3.0] * 7, [2.0] * 7]))
    pruned = prune_layer(model, 0, 0.6)  # keeps 3 of 5: neurons 1, 3, 4 in that order
    torch.testing.assert_close(pruned.blocks[0].linear.weight[:, 0], torch.tensor([5.0, 3.0, 2.0]))
    torch.testing.assert_close(pruned.head.weight, model.head.weight[:, [1, 3, 4]])


def test_ties_are_broken_by_position():
    assert kept_neurons(torch.ones(6), 3).tolist() == [0, 1, 2]


def test_batchnorm_on_the_pruned_width_is_sliced():
    model = build_mlp(_spec([10, 4], pre=["none", "batchnorm"]), seed=0)
    _randomise_batchnorms(model)
    keep = kept_neurons(neuron_importance(model, 0, "l1"), 7)
    pruned = prune_layer(model, 0, 0.7, importance="l1")
    old, new = model.blocks[1].pre, pruned.blocks[1].pre
    assert new.num_features == 7
    for name in ("weight", "bias", "running_mean", "running_var"):
        torch.testing.assert_close(getattr(new, name), getattr(old, name)[keep])
    assert int(new.num_batches_tracked) == 17


def test_input_model_is_not_modified_and_tensors_are_not_shared():
    model = build_mlp(_spec([10, 8]), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = prune_layer(model, 1, 0.6)
    with torch.no_grad():
        pruned.blocks[0].linear.weight.add_(1.0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.requires_grad for p in pruned.parameters())


def test_activation_importance_uses_probe_and_needs_one():
    model = build_mlp(_spec([6]), seed=0)
    with torch.no_grad():
        model.blocks[0].linear.bias.copy_(torch.tensor([-100.0, 5, 5, 5, 5, 5]))  # only neuron 0 is dead under ReLU
    probe = torch.rand(32, 7)
    scores = neuron_importance(model, 0, "activation", probe)
    assert scores[0] == 0 and (scores[1:] >= 0).all()
    assert 0 not in kept_neurons(scores, 5).tolist()
    with pytest.raises(ConfigError, match="probe"):
        neuron_importance(model, 0, "activation")


def test_reinit_replaces_the_two_linears_around_the_layer_only():
    model = build_mlp(_spec([10, 8, 6]), seed=0)
    pruned = prune_layer(model, 1, 0.5, reinit=True, seed=5)
    again = prune_layer(model, 1, 0.5, reinit=True, seed=5)
    torch.testing.assert_close(pruned.blocks[1].linear.weight, again.blocks[1].linear.weight)
    torch.testing.assert_close(pruned.blocks[0].linear.weight, model.blocks[0].linear.weight)
    torch.testing.assert_close(pruned.head.weight, model.head.weight)
    sliced = prune_layer(model, 1, 0.5)
    assert not torch.allclose(pruned.blocks[1].linear.weight, sliced.blocks[1].linear.weight)
    assert pruned.blocks[2].linear.weight.shape == sliced.blocks[2].linear.weight.shape == (6, 4)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, "0.5"])
def test_bad_keep_rate_is_refused(bad):
    with pytest.raises(ConfigError, match="keep_rate"):
        prune_layer(build_mlp(_spec([4])), 0, bad)


def test_bad_layer_and_method_are_refused():
    model = build_mlp(_spec([4, 4]))
    with pytest.raises(ConfigError, match="layers 0..1"):
        prune_layer(model, 2, 0.5)
    with pytest.raises(ConfigError, match="unknown importance"):
        prune_layer(model, 0, 0.5, importance="random")


def _identity_between(model, layer):
    """A copy of `model` whose hidden layer `layer` has no nonlinearity."""
    ref = build_mlp(model.spec)
    ref.load_state_dict(model.state_dict())
    ref.blocks[layer].act = nn.Identity()
    return ref.eval()


@pytest.mark.parametrize(
    "layer,pre",
    [
        (0, ["none", "none", "none"]),
        (1, ["batchnorm", "batchnorm", "dropout"]),
        (0, ["dropout", "batchnorm", "batchnorm"]),
        (2, ["none", "none", "batchnorm"]),
        (2, ["none", "none", "dropout"]),
    ],
)
def test_remove_layer_is_exact_when_the_activation_is_the_identity(layer, pre):
    model = build_mlp(_spec([9, 8, 6], pre=pre, act=["relu", "tanh", "sigmoid"]), seed=2)
    _randomise_batchnorms(model)
    merged = remove_layer(model, layer).eval()
    x = torch.randn(50, 7, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(merged(x), _identity_between(model, layer)(x), rtol=1e-4, atol=1e-5)
    assert merged.spec.depth == 2
    assert merged.spec.hidden == tuple(w for i, w in enumerate((9, 8, 6)) if i != layer)


def test_remove_layer_merged_weights_are_the_product():
    model = build_mlp(_spec([9, 8, 6]), seed=1)
    merged = remove_layer(model, 1)
    w1, b1 = model.blocks[1].linear.weight, model.blocks[1].linear.bias
    w2, b2 = model.blocks[2].linear.weight, model.blocks[2].linear.bias
    torch.testing.assert_close(merged.blocks[1].linear.weight, w2 @ w1)
    torch.testing.assert_close(merged.blocks[1].linear.bias, w2 @ b1 + b2)
    assert merged.spec.activations == ("relu", "relu")
    torch.testing.assert_close(merged.blocks[0].linear.weight, model.blocks[0].linear.weight)
    torch.testing.assert_close(merged.head.weight, model.head.weight)


def test_remove_layer_keeps_the_input_side_pre_layer_and_next_activation():
    model = build_mlp(_spec([9, 8, 6], pre=["dropout", "batchnorm", "none"], act=["relu", "tanh", "sigmoid"]), seed=1)
    merged = remove_layer(model, 0)
    assert merged.spec.pre == ("dropout", "none")
    assert merged.spec.activations == ("tanh", "sigmoid")
    assert merged.blocks[0].linear.in_features == 7 and merged.blocks[0].linear.out_features == 8


def test_remove_the_only_hidden_layer_is_refused():
    with pytest.raises(ConfigError, match="only hidden layer"):
        remove_layer(build_mlp(_spec([5])), 0)
