"""MNIST-style idx files (gzip-compressed or raw) and MNIST / Fashion-MNIST as a `Dataset`.

idx layout: two zero bytes, a type code, the number of dimensions d, then d big-endian uint32
sizes, then the values in row-major order, big-endian.
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from neon_ray.data.splits import Dataset, cap_rows, check_seed, check_split_sizes, split_indices, warn_missing_classes
from neon_ray.errors import ConfigError, DataError

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""idx type code -> big-endian numpy dtype."""

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
DEFAULT_VAL_FRACTION = 5000 / 60000
GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"idx file not found: {path}")
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
        if head == GZIP_MAGIC:
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip data ({exc})") from exc


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an idx file (gzip or raw), in native byte order; DataError if malformed."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: truncated idx file ({len(raw)} bytes, expected at least a 4-byte magic number)")
    code, ndim = raw[2], raw[3]
    if raw[0] != 0 or raw[1] != 0 or code not in IDX_TYPES or ndim == 0:
        raise DataError(
            f"{path}: bad idx magic number 0x{raw[:4].hex()}; expected 0x0000TTDD with type TT in "
            f"{', '.join(f'{c:02x}' for c in IDX_TYPES)} and DD >= 1 dimensions"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated idx header ({len(raw)} bytes, expected {header} for {ndim} dimensions)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = IDX_TYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        problem = "truncated" if found < expected else "has trailing bytes"
        raise DataError(
            f"{path}: idx file {problem}: header declares shape {shape} ({expected} data bytes), found {found}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).astype(dtype.newbyteorder("=")).reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{directory}: missing {stem}.gz (expected the four MNIST files {', '.join(f'{s}.gz' for s in MNIST_FILES.values())})"
    )


def _read_pair(directory: Path, images_key: str, labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    """(images [n, rows*cols] uint8, labels [n]) from one images/labels pair, checked for agreement."""
    images_path, labels_path = _find(directory, MNIST_FILES[images_key]), _find(directory, MNIST_FILES[labels_key])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected uint8 images [n, rows, cols], got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{labels_path}: expected {len(images)} labels (one per image), got shape {labels.shape}")
    return images.reshape(len(images), -1), labels


def load_mnist(
    directory: str | Path, seed: int = 0, val_fraction: float = DEFAULT_VAL_FRACTION, name: str | None = None,
    max_rows: int | None = None,
) -> Dataset:
    """MNIST-style folder as a Dataset: test = the official t10k set, val = a stratified seeded part of train.

    `max_rows` caps the official training set (train + val) to a stratified sample; the official
    test set stays whole, so test accuracies remain comparable with published ones.

    X is float32 [n, rows*cols] = pixel / 255, with no other preprocessing. `name` defaults to
    the folder's name.
    """
    directory, seed = Path(directory), check_seed(seed)
    if not directory.is_dir():
        raise DataError(f"MNIST folder not found: {directory}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not math.isfinite(val_fraction) \
            or not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be a finite number in (0, 1), got {val_fraction!r}")
    train_images, train_labels = _read_pair(directory, "train_images", "train_labels")
    test_images, test_labels = _read_pair(directory, "test_images", "test_labels")
    if train_images.shape[1] != test_images.shape[1]:
        raise DataError(f"{directory}: train images have {train_images.shape[1]} pixels, test images {test_images.shape[1]}")
    classes = np.unique(np.concatenate([train_labels, test_labels]))
    y_train_all = np.searchsorted(classes, train_labels).astype(np.int64)
    y_test = np.searchsorted(classes, test_labels).astype(np.int64)
    kept = cap_rows(y_train_all, max_rows, seed)
    if kept is not None:
        train_images, y_train_all = train_images[kept], y_train_all[kept]
    try:
        val, train = split_indices(y_train_all, [val_fraction], seed)
    except DataError as exc:
        raise DataError(f"{directory}: {exc}") from exc
    check_split_sizes(str(directory), {"train": len(train), "val": len(val), "test": len(y_test)}, {"val": val_fraction})
    class_names = [str(c) for c in classes]
    warn_missing_classes(str(directory), class_names, {"train": y_train_all[train], "val": y_train_all[val], "test": y_test})
    X_train_all = torch.from_numpy(train_images).float().div_(255.0)
    side = int(round(math.sqrt(train_images.shape[1])))
    return Dataset(
        name=name or directory.name,
        seed=seed,
        X_train=X_train_all[train], y_train=torch.from_numpy(y_train_all[train]),
        X_val=X_train_all[val], y_val=torch.from_numpy(y_train_all[val]),
        X_test=torch.from_numpy(test_images).float().div_(255.0), y_test=torch.from_numpy(y_test),
        feature_names=_pixel_names(train_images.shape[1], side),
        class_names=class_names,
        n_rows=len(train_images) + len(test_images),
        source=str(directory),
    )


def _pixel_names(n_pixels: int, side: int) -> list[str]:
    if side * side != n_pixels:
        return [f"px{i}" for i in range(n_pixels)]
    return [f"px{r}_{c}" for r in range(side) for c in range(side)]
