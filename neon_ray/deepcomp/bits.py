"""Fixed-width bit packing of small non-negative integers, and a bounds-checked byte reader.

Every stream in a compressed file is a sequence of small integers (cluster indices, relative
positions); with no entropy coding each one takes `width` bits, most significant bit first,
and the stream is padded with zero bits to a whole byte.
"""
from __future__ import annotations

import struct

import numpy as np

from neon_ray.errors import CheckpointError

MAX_WIDTH = 16


def width_for(alphabet: int) -> int:
    """Bits a fixed-width code needs for symbols 0..alphabet-1 (at least 1)."""
    return max(1, (int(alphabet) - 1).bit_length())


def _check_width(width: int) -> None:
    if not 1 <= width <= MAX_WIDTH:
        raise ValueError(f"bit width must be in 1..{MAX_WIDTH}, got {width}")


def bits_of(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The lowest `lengths[i]` bits of each `values[i]`, concatenated MSB first, as a 0/1 uint8 array."""
    values = np.asarray(values, dtype=np.uint32)
    lengths = np.asarray(lengths, dtype=np.int64)
    # Left-align every value in a 16-bit word, expand to a bit matrix and keep each row's prefix.
    aligned = (values << (MAX_WIDTH - lengths).astype(np.uint32)).astype(">u2")
    matrix = np.unpackbits(aligned.view(np.uint8)).reshape(-1, MAX_WIDTH)
    return matrix[np.arange(MAX_WIDTH) < lengths[:, None]]


def pack_fixed(values: np.ndarray, width: int) -> bytes:
    """`values` (each < 2**width) as `width`-bit fields, MSB first, zero-padded to a byte."""
    _check_width(width)
    values = np.asarray(values, dtype=np.int64).ravel()
    if values.size and (values.min() < 0 or values.max() >= 1 << width):
        raise ValueError(f"values must lie in 0..{(1 << width) - 1} for width {width}")
    return np.packbits(bits_of(values, np.full(values.size, width))).tobytes()


def unpack_fixed(data: bytes, width: int, count: int) -> np.ndarray:
    """Inverse of `pack_fixed`; the data must hold exactly `count` fields plus < 8 padding bits."""
    _check_width(width)
    expected = (count * width + 7) // 8
    if len(data) != expected:
        raise CheckpointError(f"fixed-width stream of {count} x {width} bits needs {expected} bytes, found {len(data)}")
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * width].reshape(count, width)
    weights = (1 << np.arange(width - 1, -1, -1)).astype(np.int64)
    return bits.astype(np.int64) @ weights


class ByteWriter:
    """Little-endian writer for section bodies."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def u8(self, v: int) -> None:
        self.buf += struct.pack("<B", v)

    def u16(self, v: int) -> None:
        self.buf += struct.pack("<H", v)

    def u32(self, v: int) -> None:
        self.buf += struct.pack("<I", v)

    def raw(self, data: bytes) -> None:
        self.buf += data

    def blob(self, data: bytes) -> None:
        """Length-prefixed bytes."""
        self.u32(len(data))
        self.buf += data

    def float32(self, values: np.ndarray) -> None:
        self.buf += np.asarray(values, dtype="<f4").tobytes()


class ByteReader:
    """Reads what `ByteWriter` wrote; running past the end raises CheckpointError naming `where`."""

    def __init__(self, data: bytes, where: str) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.where = where

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CheckpointError(f"{self.where}: truncated (needs {n} bytes at offset {self.pos}, has {len(self.data) - self.pos})")
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def u8(self) -> int:
        return struct.unpack("<B", self.take(1))[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def blob(self) -> bytes:
        return self.take(self.u32())

    def float32(self, count: int) -> np.ndarray:
        return np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32)

    def expect_end(self) -> None:
        if self.pos != len(self.data):
            raise CheckpointError(f"{self.where}: {len(self.data) - self.pos} unexpected bytes after the end")
