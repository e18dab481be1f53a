"""Relative indexing of the surviving weights of a pruned tensor (Han et al., 2015/2016).

Positions are indices into the flattened tensor (C order). Each survivor is stored as the gap
to the previous one (the number of zeros skipped), a symbol of `gap_bits` bits. The largest
symbol, SPAN = 2**gap_bits - 1, is an escape: "skip SPAN positions, no weight here". A gap d
is therefore written as d // SPAN escapes followed by the terminal symbol d % SPAN. This plays
the role of the paper's filler zeros but needs no cluster index for the filler, and the escape
symbol is simply one more symbol for the Huffman coder.
"""
from __future__ import annotations

import numpy as np

from neon_ray.deepcomp import huffman
from neon_ray.errors import CheckpointError

MAX_GAP_BITS = 12


def _gaps(positions: np.ndarray) -> np.ndarray:
    positions = np.asarray(positions, dtype=np.int64)
    return np.diff(positions, prepend=-1) - 1


def encode_gaps(positions: np.ndarray, gap_bits: int) -> np.ndarray:
    """Symbols (0..2**gap_bits-1) describing strictly increasing `positions`."""
    span = (1 << gap_bits) - 1
    gaps = _gaps(positions)
    if gaps.size and gaps.min() < 0:
        raise ValueError("positions must be strictly increasing and non-negative")
    escapes = gaps // span
    symbols = np.full(int(escapes.sum()) + len(gaps), span, dtype=np.int64)
    symbols[np.cumsum(escapes + 1) - 1] = gaps % span
    return symbols


def decode_gaps(symbols: np.ndarray, gap_bits: int, count: int, numel: int) -> np.ndarray:
    """Positions from `encode_gaps` symbols; checks they are `count` positions inside `numel`."""
    span = (1 << gap_bits) - 1
    symbols = np.asarray(symbols, dtype=np.int64)
    if symbols.size and (symbols.min() < 0 or symbols.max() > span):
        raise CheckpointError(f"gap symbol outside 0..{span}")
    terminal = symbols < span
    if int(terminal.sum()) != count or (symbols.size and not terminal[-1]):
        raise CheckpointError(f"gap stream describes {int(terminal.sum())} positions, expected {count}")
    positions = (np.cumsum(symbols + terminal) - 1)[terminal]
    if positions.size and positions[-1] >= numel:
        raise CheckpointError(f"gap stream points at position {positions[-1]} of a tensor with {numel} elements")
    return positions


def gap_counts(positions: np.ndarray, gap_bits: int) -> np.ndarray:
    """Histogram of the symbols `encode_gaps` would emit (without building the stream)."""
    span = (1 << gap_bits) - 1
    gaps = _gaps(positions)
    counts = np.bincount(gaps % span, minlength=span + 1) if gaps.size else np.zeros(span + 1, dtype=np.int64)
    counts[span] += int((gaps // span).sum())
    return counts


def stream_bytes(counts: np.ndarray, bits: int, coding: str) -> int:
    """Stored size of a symbol stream with these counts: fixed `bits`-bit fields, or with coding
    "huffman" the smaller of that and a Huffman table + payload (what fileformat writes)."""
    fixed = (int(counts.sum()) * bits + 7) // 8
    return min(fixed, huffman.coded_bytes(counts)) if coding == "huffman" else fixed


def best_gap_bits(positions: np.ndarray, coding: str) -> int:
    """The gap width (1..MAX_GAP_BITS) that stores `positions` in the fewest bytes under `coding`."""
    sizes = {b: stream_bytes(gap_counts(positions, b), b, coding) for b in range(1, MAX_GAP_BITS + 1)}
    return min(sizes, key=lambda b: (sizes[b], b))
