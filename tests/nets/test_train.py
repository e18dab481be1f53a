import torch

from neon_ray.nets.spec import ArchSpec, build_mlp
from neon_ray.nets.training import TrainConfig, evaluate, fit


def data(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 4, generator=g)
    return X, (X[:, 0] + X[:, 1] > 1).long()


def trained(rng_noise: int):
    torch.rand(rng_noise)  # whatever ran before in this process must not matter
    model = build_mlp(ArchSpec(4, 2, (16,), ("relu",), ("dropout",)), seed=3)
    fit(model, data(), data(60, 1), TrainConfig(max_epochs=4, patience=10, batch_size=16), seed=5)
    return model


def test_training_depends_on_the_seed_only_not_on_global_rng_state():
    a, b = trained(1), trained(1000)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_best_validation_weights_are_restored_and_model_left_in_eval():
    model = build_mlp(ArchSpec(4, 2, (16,), ("relu",), ("none",)), seed=0)
    before, _ = evaluate(model, *data(60, 1))
    result = fit(model, data(), data(60, 1), TrainConfig(max_epochs=30, patience=3), seed=0)
    after, _ = evaluate(model, *data(60, 1))
    assert after == result.best_val_loss and after <= before
    assert not model.training
