"""The compressed file: exact round trips (MLP and LeNet-5) and clear errors on damaged files."""
from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
import torch
from torch import nn

from neon_ray.deepcomp import fileformat
from neon_ray.deepcomp.lenet import LeNet5, build_lenet5
from neon_ray.deepcomp.prune import prune_step
from neon_ray.deepcomp.share import share_weights
from neon_ray.errors import CheckpointError, ConfigError
from neon_ray.nets.spec import ArchSpec, build_mlp

SPEC = ArchSpec(12, 4, (24, 16), ("relu", "tanh"), ("batchnorm", "dropout"))


def shared_mlp(q=1.0, bits=3):
    model = build_mlp(SPEC, seed=0)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so raw tensors are really checked
        model.blocks[0].pre.running_mean.uniform_(-1, 1)
        model.blocks[0].pre.running_var.uniform_(0.5, 2)
        model.blocks[0].pre.num_batches_tracked.fill_(17)
    masks = prune_step(model, None, q)
    return model.eval(), share_weights(model, masks, {n: bits for n in masks}, "linear", 0)


def assert_same(a: nn.Module, b: nn.Module, X: torch.Tensor) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k
    with torch.no_grad():
        assert torch.equal(a.eval()(X).argmax(1), b.eval()(X).argmax(1))


@pytest.mark.parametrize("coding", ["fixed", "huffman"])
def test_shared_mlp_round_trip_is_exact(tmp_path, coding):
    model, shared = shared_mlp()
    path = tmp_path / "net.nrdc"
    size = fileformat.write(path, model, shared, coding)
    assert size == path.stat().st_size
    decoded = fileformat.read(path)
    assert decoded.spec == SPEC
    assert_same(model, decoded, torch.randn(300, 12))


def test_pruned_float_weights_round_trip_sparse(tmp_path):
    model = build_mlp(SPEC, seed=1).eval()
    prune_step(model, None, 1.2)
    path = tmp_path / "pruned.nrdc"
    fileformat.write(path, model, None, "fixed")
    kinds = {row["name"]: row["kind"] for row in fileformat.inspect(path)}
    assert kinds["blocks.0.linear.weight"] == "sparse" and kinds["blocks.0.linear.bias"] == "raw"
    assert_same(model, fileformat.read(path), torch.randn(50, 12))


def test_lenet5_round_trip_is_exact(tmp_path):
    model = build_lenet5(seed=0).eval()
    masks = prune_step(model, None, 1.5)
    shared = share_weights(model, masks, {"conv1.weight": 8, "conv2.weight": 8, "fc1.weight": 5, "fc2.weight": 5}, "linear", 0)
    path = tmp_path / "lenet5.nrdc"
    size = fileformat.write(path, model, shared)
    decoded = fileformat.read(path)
    assert isinstance(decoded, LeNet5)
    assert_same(model, decoded, torch.rand(20, 784))
    assert size < 431_080 * 4 / 8


def test_sizes_shrink_with_sparsity_and_huffman():
    model = build_mlp(ArchSpec(64, 4, (128, 64), ("relu", "relu"), ("none", "none")), seed=0).eval()
    masks = prune_step(model, None, 1.5)
    shared = share_weights(model, masks, {n: 5 for n in masks}, "linear", 0)
    dense = len(fileformat.encode(model, None, "fixed"))
    fixed = len(fileformat.encode(model, shared, "fixed"))
    coded = len(fileformat.encode(model, shared, "huffman"))
    assert coded < fixed < dense


def small_file(tmp_path):
    model, shared = shared_mlp(q=1.5, bits=3)
    path = tmp_path / "small.nrdc"
    fileformat.write(path, model, shared)
    return path, path.read_bytes()


def test_every_truncation_raises_checkpoint_error(tmp_path):
    path, data = small_file(tmp_path)
    for n in range(len(data)):
        path.write_bytes(data[:n])
        with pytest.raises(CheckpointError, match="small.nrdc"):
            fileformat.read(path)


def test_every_byte_with_a_flipped_bit_raises_checkpoint_error(tmp_path):
    path, data = small_file(tmp_path)
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 1 << (i % 8)
        with pytest.raises(CheckpointError):
            fileformat.decode(bytes(damaged), "f")


def test_corrupt_sections_with_valid_crcs_never_crash(tmp_path):
    # A file whose CRCs were recomputed over damaged sections must still fail cleanly (or decode).
    _, data = small_file(tmp_path)
    _, _, header_len, _ = struct.unpack_from("<4sHII", data)
    start = 14 + header_len
    header = json.loads(data[14:start])
    offset, failures = start, 0
    for entry in header["tensors"]:
        nbytes, crc = entry[1], entry[2]
        for i in range(nbytes):
            section = bytearray(data[offset : offset + nbytes])
            section[i] ^= 0xFF
            entry[2] = zlib.crc32(section)
            h = json.dumps(header, separators=(",", ":")).encode()
            rebuilt = struct.pack("<4sHII", b"NRDC", 1, len(h), zlib.crc32(h)) + h + data[start:offset] + bytes(section) + data[offset + nbytes :]
            try:
                fileformat.decode(rebuilt, "f")
            except CheckpointError:
                failures += 1
        entry[2] = crc
        offset += nbytes
    assert failures > 0


def test_clear_messages_for_wrong_files(tmp_path):
    path, data = small_file(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        fileformat.read(tmp_path / "missing.nrdc")
    path.write_bytes(b"PK\x03\x04" + data[4:])
    with pytest.raises(CheckpointError, match="not a neon-ray compressed network"):
        fileformat.read(path)
    path.write_bytes(data[:4] + struct.pack("<H", 9) + data[6:])
    with pytest.raises(CheckpointError, match="version 9"):
        fileformat.read(path)
    path.write_bytes(data + b"\x00")
    with pytest.raises(CheckpointError, match="trailing bytes"):
        fileformat.read(path)


def test_unsupported_models_are_refused():
    with pytest.raises(ConfigError, match="Sequential"):
        fileformat.encode(nn.Sequential(nn.Linear(2, 2)))


def test_fully_pruned_layer_round_trips():
    model = build_mlp(ArchSpec(5, 2, (4,), ("relu",), ("none",)), seed=0).eval()
    masks = prune_step(model, None, 0.0)
    masks["head.weight"][:] = False
    shared = share_weights(model, masks, {n: 2 for n in masks}, "linear", 0)
    decoded = fileformat.decode(fileformat.encode(model, shared))
    assert torch.count_nonzero(decoded.head.weight) == 0
    assert_same(model, decoded, torch.randn(8, 5))
    assert np.isfinite(decoded.blocks[0].linear.weight.detach().numpy()).all()


def forge_spec(data: bytes, **changes) -> bytes:
    """The same sections under a header whose architecture spec was edited (CRC made valid)."""
    _, _, header_len, _ = struct.unpack_from("<4sHII", data)
    header = json.loads(data[14 : 14 + header_len])
    header["model"]["spec"].update(changes)
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<4sHII", b"NRDC", 1, len(h), zlib.crc32(h)) + h + data[14 + header_len :]


def test_header_that_disagrees_with_the_architecture_is_refused():
    model, shared = shared_mlp()
    data = fileformat.encode(model, shared)
    with pytest.raises(CheckpointError, match="has 8 tensors, the file stores 11"):
        fileformat.decode(forge_spec(data, hidden=[24, 16, 8], activations=["relu"] * 3, pre=["none"] * 3), "forged")
    with pytest.raises(CheckpointError, match="do not hold a torch.float32 tensor of shape \\[25\\]"):
        fileformat.decode(forge_spec(data, hidden=[25, 16]), "forged")
    with pytest.raises(CheckpointError, match="no buildable model"):
        fileformat.decode(forge_spec(data, activations=["gelu", "tanh"]), "forged")


def test_inspect_lists_every_tensor(tmp_path):
    model, shared = shared_mlp()
    path = tmp_path / "net.nrdc"
    size = fileformat.write(path, model, shared)
    rows = fileformat.inspect(path)
    assert [r["name"] for r in rows] == list(model.state_dict())
    assert {r["kind"] for r in rows} == {"raw", "shared"}
    assert rows[0] == {"name": "blocks.0.pre.weight", "shape": [12], "kind": "raw", "nbytes": 48}
    assert sum(r["nbytes"] for r in rows) < size
