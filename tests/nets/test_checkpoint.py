import pickle

import pytest
import torch

from neon_ray.nets.checkpoint import load_network, network_exists, save_network
from neon_ray.errors import CheckpointError
from neon_ray.nets.spec import ArchSpec, build_mlp


@pytest.fixture
def model():
    return build_mlp(ArchSpec(6, 3, (12, 5), ("relu", "tanh"), ("batchnorm", "dropout")), seed=1).eval()


def test_round_trip_keeps_weights_spec_and_meta(tmp_path, model):
    save_network(model, tmp_path / "net", meta={"dataset": "x", "val_acc": 0.5})
    loaded, meta = load_network(tmp_path / "net")
    assert loaded.spec == model.spec and meta == {"dataset": "x", "val_acc": 0.5}
    x = torch.randn(7, 6)
    assert torch.equal(loaded(x), model(x))
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_missing_network_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_network(tmp_path / "nothing")


def test_truncated_weights_file_is_a_clear_error(tmp_path, model):
    save_network(model, tmp_path / "net")
    pt = tmp_path / "net.pt"
    pt.write_bytes(pt.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="net.pt"):
        load_network(tmp_path / "net")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_foreign_pickle_is_refused_not_executed(tmp_path, model, capsys):
    save_network(model, tmp_path / "net")
    (tmp_path / "net.pt").write_bytes(pickle.dumps({"blocks.0.linear.weight": Evil()}))
    with pytest.raises(CheckpointError):
        load_network(tmp_path / "net")
    assert "pwned" not in capsys.readouterr().out


def test_whole_pickled_module_is_refused(tmp_path, model):
    save_network(model, tmp_path / "net")
    torch.save(model, tmp_path / "net.pt")  # the original NEON's checkpoint style
    with pytest.raises(CheckpointError):
        load_network(tmp_path / "net")


def test_weights_that_do_not_match_spec(tmp_path, model):
    save_network(model, tmp_path / "net")
    other = build_mlp(ArchSpec(6, 3, (13, 5), ("relu", "tanh"), ("batchnorm", "dropout")))
    torch.save(other.state_dict(), tmp_path / "net.pt")
    with pytest.raises(CheckpointError, match="do not match"):
        load_network(tmp_path / "net")


def test_foreign_json_is_rejected(tmp_path, model):
    save_network(model, tmp_path / "net")
    (tmp_path / "net.json").write_text('{"hello": 1}')
    with pytest.raises(CheckpointError, match="not a neon-ray network"):
        load_network(tmp_path / "net")


def test_network_exists_needs_both_files(tmp_path, model):
    save_network(model, tmp_path / "net")
    assert network_exists(tmp_path / "net")
    (tmp_path / "net.json").unlink()
    assert not network_exists(tmp_path / "net")
