import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from neon_ray.nets import metrics
from neon_ray.nets.spec import ArchSpec, build_mlp


def net(pre=("none", "batchnorm")):
    return build_mlp(ArchSpec(5, 3, (8, 4), ("relu", "tanh"), pre), seed=0).eval()


def test_params_count_every_parameter_including_batchnorm():
    # 5*8+8 + (bn 8*2) + 8*4+4 + 4*3+3
    assert metrics.count_params(net()) == 48 + 16 + 36 + 15


def test_flops_by_hand():
    # linear 2*5*8+8, relu 8, bn 2*8, linear 2*8*4+4, tanh 4, head 2*4*3+3
    assert metrics.count_flops(net()) == 88 + 8 + 16 + 68 + 4 + 27


def test_linear_flops_by_hand():
    assert metrics.linear_flops(5, 8) == 88
    assert metrics.linear_flops(5, 8, bias=False, rows=3) == 240


def test_nonzero_and_sparse_flops_follow_zeroed_weights():
    model = net(pre=("none", "none"))
    with torch.no_grad():
        model.blocks[0].linear.weight[:, :2] = 0
    assert metrics.count_nonzero(model) == metrics.count_params(model) - 16
    assert metrics.count_flops(model, nonzero_only=True) == metrics.count_flops(model) - 32


def test_sparse_bytes_shrink_with_sparsity():
    model = net(pre=("none", "none"))
    dense = metrics.sparse_bytes(model)
    with torch.no_grad():
        model.blocks[0].linear.weight.zero_()
    assert metrics.sparse_bytes(model) == dense - 40 * 8


def test_state_dict_bytes_exceed_raw_dense_bytes():
    model = net()
    # float32 weights, biases, BatchNorm affine and running stats, plus BatchNorm's int64 num_batches_tracked
    assert metrics.dense_bytes(model) == 4 * (48 + 16 + 36 + 15 + 16) + 8
    assert metrics.state_dict_bytes(model) > metrics.dense_bytes(model)


def test_macro_f1_matches_sklearn():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    assert metrics.macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro"))


def test_accuracy_on_known_predictions():
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
        model.bias.zero_()
    X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    acc, f1 = metrics.accuracy_f1(model, X, torch.tensor([0, 1, 1, 1]))
    assert acc == 0.75 and f1 == pytest.approx(metrics.macro_f1(np.array([0, 1, 1, 1]), np.array([0, 1, 0, 1])))


def test_latency_and_memory_are_positive_and_memory_grows_with_batch():
    model = net()
    assert metrics.latency_ms(model, 5, batch=1, repeats=3) > 0
    assert metrics.peak_memory_bytes(model, 5, batch=1000) > metrics.peak_memory_bytes(model, 5, batch=10)
