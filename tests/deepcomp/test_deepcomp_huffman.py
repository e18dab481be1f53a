"""Canonical Huffman coding, fixed-width packing and relative indexing: round trips and failure modes."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neon_ray.deepcomp import bits, huffman, relindex
from neon_ray.errors import CheckpointError

streams = st.lists(st.integers(min_value=0, max_value=40), max_size=400)


def roundtrip(symbols: list[int]) -> np.ndarray:
    counts = np.bincount(np.asarray(symbols, dtype=np.int64), minlength=41)
    lengths = huffman.code_lengths(counts)
    table = huffman.unpack_lengths(huffman.pack_lengths(lengths), len(lengths))
    return huffman.decode(huffman.encode(symbols, lengths), table, len(symbols))


@settings(max_examples=150, deadline=None)
@given(streams)
def test_huffman_round_trip_any_stream(symbols):
    assert roundtrip(symbols).tolist() == symbols


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 40), st.integers(0, 300))
def test_huffman_round_trip_single_symbol_streams(symbol, n):
    assert roundtrip([symbol] * n).tolist() == [symbol] * n


def test_empty_stream_is_zero_bytes():
    assert huffman.encode([], huffman.code_lengths(np.zeros(4))) == b""
    assert huffman.decode(b"", np.zeros(4, dtype=np.uint8), 0).size == 0


def test_lengths_are_optimal_for_dyadic_counts():
    # Counts 8,4,2,1,1 have an optimal code with lengths 1,2,3,4,4 and total 8+8+6+4+4 bits.
    lengths = huffman.code_lengths([8, 4, 2, 1, 1])
    assert lengths.tolist() == [1, 2, 3, 4, 4]
    assert huffman.coded_bytes([8, 4, 2, 1, 1]) == 3 + (30 + 7) // 8


def test_lengths_are_capped_for_fibonacci_counts():
    # Fibonacci counts give an unbounded optimal code depth (~ number of symbols).
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])
    lengths = huffman.code_lengths(fib)
    assert lengths.max() <= huffman.MAX_CODE_LEN
    assert sum(2.0 ** -int(l) for l in lengths) <= 1.0
    symbols = np.repeat(np.arange(30), [min(c, 50) for c in fib])
    assert huffman.decode(huffman.encode(symbols, lengths), lengths, len(symbols)).tolist() == symbols.tolist()


def test_canonical_codes_are_prefix_free_and_ordered():
    lengths = np.array([2, 3, 3, 1, 0])
    codes = huffman.canonical_codes(lengths)
    words = {s: format(int(codes[s]), f"0{lengths[s]}b") for s in range(4)}
    assert words == {3: "0", 0: "10", 1: "110", 2: "111"}


def test_decode_rejects_damage():
    lengths = huffman.code_lengths([5, 3, 1])
    data = huffman.encode([0, 0, 1, 2, 0, 1], lengths)
    with pytest.raises(CheckpointError, match="cannot fit"):
        huffman.decode(data, lengths, 60)
    with pytest.raises(CheckpointError, match="ends"):
        huffman.decode(data, lengths, 14)  # 9 bits of codes + 7 zero padding bits hold at most 13
    with pytest.raises(CheckpointError, match="unexpected bytes"):
        huffman.decode(data + b"\x00", lengths, 6)
    with pytest.raises(CheckpointError, match="prefix code"):
        huffman.decode(data, np.array([1, 1, 1]), 6)
    with pytest.raises(CheckpointError, match="invalid Huffman code"):
        huffman.decode(b"\xff", np.array([1, 0, 0]), 3)  # only "0" is a code


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 16), st.lists(st.integers(0, 2**16 - 1), max_size=200))
def test_fixed_width_round_trip(width, values):
    values = [v % (1 << width) for v in values]
    packed = bits.pack_fixed(values, width)
    assert len(packed) == (len(values) * width + 7) // 8
    assert bits.unpack_fixed(packed, width, len(values)).tolist() == values


@settings(max_examples=80, deadline=None)
@given(st.sets(st.integers(0, 2000), max_size=150), st.integers(1, relindex.MAX_GAP_BITS))
def test_relative_index_round_trip(positions, gap_bits):
    positions = np.array(sorted(positions), dtype=np.int64)
    symbols = relindex.encode_gaps(positions, gap_bits)
    assert symbols.max(initial=0) < 1 << gap_bits
    assert np.bincount(symbols, minlength=1 << gap_bits).tolist() == relindex.gap_counts(positions, gap_bits).tolist()
    assert relindex.decode_gaps(symbols, gap_bits, len(positions), 2001).tolist() == positions.tolist()


def test_relative_index_escapes_long_gaps():
    # 3-bit gaps: span 7. Position 20 follows 19 zeros = 7 + 7 + 5 -> two escapes, then 5.
    assert relindex.encode_gaps(np.array([0, 20, 21]), 3).tolist() == [0, 7, 7, 5, 0]
    with pytest.raises(CheckpointError, match="expected 4"):
        relindex.decode_gaps(np.array([0, 7, 7, 5, 0]), 3, 4, 100)
    with pytest.raises(CheckpointError, match="position 21"):
        relindex.decode_gaps(np.array([0, 7, 7, 5, 0]), 3, 3, 21)
