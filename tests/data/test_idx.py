"""idx reader and MNIST-style folders."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from neon_ray.data.datasets import load_dataset
from neon_ray.data.splits import SplitConfig
from neon_ray.errors import ConfigError, DataError
from neon_ray.data.idx import MNIST_FILES, load_mnist, read_idx

TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}


def idx_bytes(array: np.ndarray) -> bytes:
    """An idx encoding of `array`, written independently of the reader."""
    header = bytes([0, 0, TYPE_CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array: np.ndarray, compress: bool = True) -> None:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32])
def test_round_trip(tmp_path, dtype):
    values = np.arange(24).reshape(2, 3, 4)
    array = (values if dtype == np.uint8 else values * 1000 - 7).astype(dtype)
    write_idx(tmp_path / "a.idx.gz", array)
    back = read_idx(tmp_path / "a.idx.gz")
    assert back.dtype == array.dtype and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_uncompressed_file_is_read_too(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    write_idx(tmp_path / "labels.idx", labels, compress=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "labels.idx"), labels)


def test_truncated_data(tmp_path):
    data = idx_bytes(np.zeros((10, 5), dtype=np.uint8))
    (tmp_path / "cut.gz").write_bytes(gzip.compress(data[:-7]))
    with pytest.raises(DataError, match=r"cut.gz: idx file truncated: header declares shape \(10, 5\) \(50 data bytes\), found 43"):
        read_idx(tmp_path / "cut.gz")


def test_truncated_header(tmp_path):
    data = idx_bytes(np.zeros((10, 5, 2), dtype=np.uint8))
    (tmp_path / "head.gz").write_bytes(gzip.compress(data[:9]))
    with pytest.raises(DataError, match="truncated idx header"):
        read_idx(tmp_path / "head.gz")


def test_truncated_gzip_stream(tmp_path):
    whole = gzip.compress(idx_bytes(np.arange(5000, dtype=np.int32)))
    (tmp_path / "stream.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match="stream.gz: corrupt or truncated gzip"):
        read_idx(tmp_path / "stream.gz")


def test_trailing_bytes(tmp_path):
    (tmp_path / "long.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(4, dtype=np.uint8)) + b"xx"))
    with pytest.raises(DataError, match="has trailing bytes"):
        read_idx(tmp_path / "long.gz")


@pytest.mark.parametrize("magic", [b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00"])
def test_bad_magic_number(tmp_path, magic):
    (tmp_path / "m.gz").write_bytes(gzip.compress(magic + struct.pack(">I", 1) + b"\x00"))
    with pytest.raises(DataError, match=f"bad idx magic number 0x{magic.hex()}"):
        read_idx(tmp_path / "m.gz")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="idx file not found.*none.gz"):
        read_idx(tmp_path / "none.gz")


def fake_mnist(directory, n_train: int = 120, n_test: int = 30, seed: int = 0) -> None:
    """A tiny MNIST-style folder with 4x4 images and labels 0..2."""
    rng = np.random.default_rng(seed)
    directory.mkdir(exist_ok=True)
    for prefix, n in (("train", n_train), ("test", n_test)):
        labels = (np.arange(n) % 3).astype(np.uint8)
        images = rng.integers(0, 256, size=(n, 4, 4), dtype=np.uint8)
        images[:, 0, 0] = labels  # lets a test find each row's label from its pixels
        write_idx(directory / f"{MNIST_FILES[prefix + '_images']}.gz", images)
        write_idx(directory / f"{MNIST_FILES[prefix + '_labels']}.gz", labels)


def test_load_mnist_on_a_small_folder(tmp_path):
    fake_mnist(tmp_path / "tiny")
    ds = load_mnist(tmp_path / "tiny", seed=1, val_fraction=0.25)
    assert ds.name == "tiny" and ds.n_rows == 150 and ds.n_features == 16 and ds.class_names == ["0", "1", "2"]
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (90, 30, 30)
    assert torch.bincount(ds.y_val).tolist() == [10, 10, 10]
    for which in ("train", "val", "test"):
        X, y = ds.split(which)
        assert X.dtype == torch.float32 and 0 <= X.min() and X.max() <= 1
        assert torch.equal(torch.round(X[:, 0] * 255).long(), y)
    again = load_mnist(tmp_path / "tiny", seed=1, val_fraction=0.25)
    other = load_mnist(tmp_path / "tiny", seed=2, val_fraction=0.25)
    assert torch.equal(ds.X_val, again.X_val) and not torch.equal(ds.X_val, other.X_val)


def test_load_mnist_missing_file_names_it(tmp_path):
    fake_mnist(tmp_path / "tiny")
    (tmp_path / "tiny" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte.gz"):
        load_mnist(tmp_path / "tiny")


def test_load_mnist_label_count_mismatch(tmp_path):
    fake_mnist(tmp_path / "tiny")
    write_idx(tmp_path / "tiny" / "train-labels-idx1-ubyte.gz", np.zeros(7, dtype=np.uint8))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: expected 120 labels"):
        load_mnist(tmp_path / "tiny")


def test_load_mnist_rejects_bad_val_fraction_and_folder(tmp_path):
    with pytest.raises(DataError, match="MNIST folder not found"):
        load_mnist(tmp_path / "absent")
    fake_mnist(tmp_path / "tiny")
    with pytest.raises(ConfigError, match="val_fraction"):
        load_mnist(tmp_path / "tiny", val_fraction=1.5)
    with pytest.raises(ConfigError, match="seed"):
        load_mnist(tmp_path / "tiny", seed=-3)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_mnist_folders(shared_data_dir, name):
    ds = load_mnist(shared_data_dir / name, seed=0)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (55000, 5000, 10000)
    assert ds.n_features == 784 and ds.n_classes == 10 and ds.n_rows == 70000
    assert ds.X_train.dtype == torch.float32 and ds.X_test.min() == 0 and ds.X_test.max() == 1
    val_counts = torch.bincount(ds.y_val, minlength=10)
    train_counts = torch.bincount(ds.y_train, minlength=10)
    assert torch.all((val_counts.double() / 5000 - train_counts.double() / 55000).abs() < 0.002)


def test_mnist_through_load_dataset_uses_split_val_fraction(shared_data_dir):
    ds = load_dataset("mnist", shared_data_dir, seed=0, split=SplitConfig(val_fraction=0.1))
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (54000, 6000, 10000)
    assert ds.name == "mnist"
