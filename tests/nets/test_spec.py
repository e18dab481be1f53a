from collections import Counter

import numpy as np
import pytest
import torch

from neon_ray.nets import metrics
from neon_ray.errors import ConfigError
from neon_ray.nets.spec import ArchSpec, SamplerConfig, build_mlp, sample_spec


def test_lenet_300_100_has_266610_parameters():
    spec = ArchSpec(784, 10, (300, 100), ("relu", "relu"), ("none", "none"))
    assert metrics.count_params(build_mlp(spec)) == 266_610


def test_spec_json_round_trip_and_describe():
    spec = ArchSpec(8, 3, (500, 100), ("relu", "tanh"), ("batchnorm", "dropout"), dropout_p=0.3)
    again = ArchSpec.from_json(spec.to_json())
    assert again == spec
    assert spec.describe() == "8-[bn]500relu-[do]100tanh-3"


def test_mlp_layout_puts_batchnorm_on_block_input():
    model = build_mlp(ArchSpec(8, 3, (50, 20), ("relu", "sigmoid"), ("none", "batchnorm")))
    assert model.blocks[1].pre.num_features == 50
    assert model(torch.randn(4, 8)).shape == (4, 3)


def test_build_mlp_seed_is_reproducible():
    spec = ArchSpec(4, 2, (16,), ("relu",), ("none",))
    a, b = build_mlp(spec, seed=7), build_mlp(spec, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(hidden=(10,), activations=("relu", "relu"), pre=("none",)),
        dict(hidden=(0,), activations=("relu",), pre=("none",)),
        dict(hidden=(10,), activations=("gelu",), pre=("none",)),
        dict(hidden=(10,), activations=("relu",), pre=("layernorm",)),
    ],
)
def test_invalid_specs_are_rejected(kwargs):
    with pytest.raises(ConfigError):
        ArchSpec(4, 2, **kwargs)


def test_sampler_matches_neon_distribution():
    rng = np.random.default_rng(0)
    cfg = SamplerConfig()
    specs = [sample_spec(rng, 10, 2, cfg) for _ in range(3000)]
    depths = Counter(s.depth for s in specs)
    assert set(depths) == set(range(1, 7))
    assert all(abs(depths[d] / 3000 - 1 / 6) < 0.03 for d in depths)
    layers = [(w, a, p) for s in specs for w, a, p in zip(s.hidden, s.activations, s.pre)]
    widths = Counter(w for w, _, _ in layers)
    assert set(widths) == set(range(100, 1001, 100))
    acts = Counter(a for _, a, _ in layers)
    n = len(layers)
    assert abs(acts["relu"] / n - 0.9) < 0.02 and abs(acts["tanh"] / n - 0.05) < 0.015
    pres = Counter(p for _, _, p in layers)
    assert all(abs(pres[p] / n - 1 / 3) < 0.03 for p in ("none", "batchnorm", "dropout"))


def test_sampler_is_seeded():
    cfg = SamplerConfig(widths=(8, 16))
    a = [sample_spec(np.random.default_rng(3), 5, 2, cfg) for _ in range(5)]
    b = [sample_spec(np.random.default_rng(3), 5, 2, cfg) for _ in range(5)]
    assert a == b


def test_sampler_config_validates_probabilities():
    with pytest.raises(ConfigError):
        SamplerConfig(act_probs={"relu": 0.5})
    with pytest.raises(ConfigError):
        SamplerConfig(min_layers=3, max_layers=2)


def test_without_layer_drops_the_pre_layer_folded_into_the_merge():
    spec = ArchSpec(8, 3, (50, 40, 30), ("relu", "tanh", "sigmoid"), ("dropout", "batchnorm", "none"))
    merged = spec.without_layer(0)  # blocks[1].pre (BN on width 50) folds into the merged Linear
    assert merged.hidden == (40, 30) and merged.activations == ("tanh", "sigmoid") and merged.pre == ("dropout", "none")
    last = spec.without_layer(2)  # the merged Linear becomes the head
    assert last.hidden == (50, 40) and last.pre == ("dropout", "batchnorm")


def test_mask_dropout_matches_dropout_in_distribution_and_eval():
    from neon_ray.nets.spec import MaskDropout

    drop = MaskDropout(0.5)
    x = torch.ones(200, 500)
    y = drop(x)
    assert set(torch.unique(y).tolist()) == {0.0, 2.0}
    assert abs((y == 0).float().mean().item() - 0.5) < 0.01
    drop.eval()
    assert torch.equal(drop(x), x)
    assert isinstance(drop, torch.nn.Dropout)
