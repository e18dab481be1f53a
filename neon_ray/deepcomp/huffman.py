"""Canonical Huffman coding of integer symbol streams (cluster indices and index gaps).

A canonical code is fully determined by each symbol's code length, so the table a file stores
is just the lengths, one 4-bit nibble per alphabet symbol (0 = the symbol never occurs).
Lengths are capped at MAX_CODE_LEN = 15 so that they fit a nibble and decoding can use one
lookup table of 2**max_len entries. When an optimal code would be longer, the symbol counts
are halved (never below 1) until it is not: slightly suboptimal for extremely skewed streams,
and always terminating because equal counts give a balanced code.

Decoding validates everything it reads (Kraft inequality of the table, invalid codes, running
out of bits, trailing bytes) and raises CheckpointError, never IndexError.
"""
from __future__ import annotations

import heapq

import numpy as np

from neon_ray.deepcomp.bits import bits_of
from neon_ray.errors import CheckpointError

MAX_CODE_LEN = 15


def _optimal_lengths(counts: list[int]) -> list[int]:
    """Huffman code lengths for positive counts (at least two symbols)."""
    n = len(counts)
    heap = [(c, i) for i, c in enumerate(counts)]
    heapq.heapify(heap)
    parent = [0] * (2 * n - 1)
    next_id = n
    while len(heap) > 1:
        c1, a = heapq.heappop(heap)
        c2, b = heapq.heappop(heap)
        parent[a] = parent[b] = next_id
        heapq.heappush(heap, (c1 + c2, next_id))
        next_id += 1
    # Parents are created after their children, so one backward sweep gives every depth.
    depth = [0] * (2 * n - 1)
    for node in range(2 * n - 3, -1, -1):
        depth[node] = depth[parent[node]] + 1
    return depth[:n]


def code_lengths(counts: np.ndarray, max_len: int = MAX_CODE_LEN) -> np.ndarray:
    """Code length per symbol (uint8, 0 for symbols with count 0), each at most `max_len`."""
    counts = np.asarray(counts, dtype=np.int64)
    lengths = np.zeros(len(counts), dtype=np.uint8)
    used = np.flatnonzero(counts > 0)
    if len(used) > 1 << max_len:
        raise ValueError(f"{len(used)} symbols cannot have codes of at most {max_len} bits")
    if len(used) == 1:
        lengths[used[0]] = 1  # a lone symbol still needs one bit per occurrence
    elif len(used) > 1:
        work = [int(c) for c in counts[used]]
        while True:
            best = _optimal_lengths(work)
            if max(best) <= max_len:
                break
            work = [(c + 1) // 2 for c in work]
        lengths[used] = best
    return lengths


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """The canonical code value of each symbol: shorter codes first, ties by symbol value."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(len(lengths), dtype=np.int64)
    code, prev = 0, 0
    for sym in sorted(np.flatnonzero(lengths).tolist(), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[sym]) - prev
        prev = int(lengths[sym])
        codes[sym] = code
        code += 1
    return codes


def encode(symbols: np.ndarray, lengths: np.ndarray) -> bytes:
    """The stream's codes, MSB first, zero-padded to a whole byte."""
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    lengths = np.asarray(lengths, dtype=np.int64)
    if symbols.size == 0:
        return b""
    if symbols.min() < 0 or symbols.max() >= len(lengths) or (lengths[symbols] == 0).any():
        raise ValueError("every symbol needs a code (a positive length in the table)")
    codes = canonical_codes(lengths)
    return np.packbits(bits_of(codes[symbols], lengths[symbols])).tobytes()


def _lookup_table(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(symbol, code length) for every max_len-bit window; length 0 marks bits that start no code."""
    max_len = int(lengths.max())
    kraft = sum(1 << (max_len - int(l)) for l in lengths if l)
    if kraft > 1 << max_len:
        raise CheckpointError("Huffman table is not a prefix code (its code lengths are inconsistent)")
    table_sym = np.zeros(1 << max_len, dtype=np.int64)
    table_len = np.zeros(1 << max_len, dtype=np.int64)
    for sym, code in enumerate(canonical_codes(lengths).tolist()):
        l = int(lengths[sym])
        if l:
            lo, hi = code << (max_len - l), (code + 1) << (max_len - l)
            table_sym[lo:hi], table_len[lo:hi] = sym, l
    return table_sym, table_len, max_len


def decode(data: bytes, lengths: np.ndarray, count: int) -> np.ndarray:
    """Decode exactly `count` symbols; `data` must be exactly the bytes `encode` produced."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if count == 0:
        if data:
            raise CheckpointError(f"empty Huffman stream has {len(data)} unexpected bytes")
        return np.zeros(0, dtype=np.int64)
    if not lengths.any():
        raise CheckpointError(f"Huffman table has no codes but {count} symbols are expected")
    if len(data) < (count + 7) // 8:
        raise CheckpointError(f"Huffman stream of {count} symbols cannot fit in {len(data)} bytes")
    table_sym, table_len, max_len = _lookup_table(lengths)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    n_bits = len(bits)
    padded = np.concatenate([bits, np.zeros(max_len, dtype=np.uint8)]).astype(np.int64)
    window = np.zeros(n_bits, dtype=np.int64)
    for j in range(max_len):
        window = (window << 1) | padded[j : j + n_bits]
    # Every bit position's would-be code length is known up front; walking the stream is then
    # one list lookup per symbol, the only part that cannot be vectorised.
    step = table_len[window].tolist()
    starts = [0] * count
    pos = 0
    for i in range(count):
        if pos >= n_bits:
            raise CheckpointError(f"Huffman stream ends after {i} of {count} symbols")
        length = step[pos]
        if length == 0:
            raise CheckpointError(f"invalid Huffman code at bit {pos}")
        starts[i] = pos
        pos += length
    if pos > n_bits:
        raise CheckpointError(f"Huffman stream ends inside its last code (needs {pos} bits, has {n_bits})")
    if (pos + 7) // 8 != len(data):
        raise CheckpointError(f"Huffman stream has {len(data) - (pos + 7) // 8} unexpected bytes after its {count} symbols")
    return table_sym[window[np.asarray(starts)]]


def pack_lengths(lengths: np.ndarray) -> bytes:
    """Code lengths as nibbles, two per byte (the whole stored table)."""
    lengths = np.asarray(lengths, dtype=np.uint8)
    if lengths.size and lengths.max() > MAX_CODE_LEN:
        raise ValueError(f"code lengths above {MAX_CODE_LEN} do not fit a nibble")
    if len(lengths) % 2:
        lengths = np.append(lengths, np.uint8(0))
    return (lengths[0::2] << 4 | lengths[1::2]).astype(np.uint8).tobytes()


def unpack_lengths(data: bytes, alphabet: int) -> np.ndarray:
    """Inverse of `pack_lengths` for an alphabet of `alphabet` symbols."""
    if len(data) != (alphabet + 1) // 2:
        raise CheckpointError(f"Huffman table for {alphabet} symbols needs {(alphabet + 1) // 2} bytes, found {len(data)}")
    raw = np.frombuffer(data, dtype=np.uint8)
    out = np.empty(2 * len(raw), dtype=np.uint8)
    out[0::2], out[1::2] = raw >> 4, raw & 0x0F
    return out[:alphabet]


def coded_bytes(counts: np.ndarray) -> int:
    """Bytes of the stored table plus payload for a stream with these symbol counts (no encoding run)."""
    counts = np.asarray(counts, dtype=np.int64)
    lengths = code_lengths(counts).astype(np.int64)
    return (len(counts) + 1) // 2 + (int((counts * lengths).sum()) + 7) // 8
