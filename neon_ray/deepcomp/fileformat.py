"""The compressed network file: written after Deep Compression, read back to an equivalent model.

Layout (all integers little-endian):

    b"NRDC"            magic
    u16                format version (1)
    u32, u32           header length, CRC-32 of the header
    header             compact JSON: {"model": {...}, "tensors": [[kind, nbytes, crc32], ...]}
    sections           one per state_dict tensor of the model, in state_dict order

`model` rebuilds the architecture: {"kind": "mlp", "spec": ArchSpec dict} or
{"kind": "lenet5", "config": LeNet5Config dict}; tensor names, shapes and dtypes are those of
the rebuilt model's state_dict, so they cost no bytes. Section kinds:

- raw: the tensor's bytes (biases, BatchNorm tensors, anything not prunable).
- sparse: a pruned weight with float32 values: positions (see relindex.py) + values.
- shared: a pruned, weight-shared weight: positions + codebook + one cluster index per survivor.

Positions are `u32 nnz, u8 gap_bits, u32 n_gap_symbols, stream`. A stream is `u8 coding`
then either fixed-width fields (`u32 length, packed`) or Huffman codes (`nibble code-length
table, u32 length, payload`); with coding "huffman" each stream takes whichever is smaller
(a Huffman table does not pay off for tiny streams). Shared values are `u16 k, float32[k]
codebook, stream of cluster indices`.
Everything is counted: the file size is the compressed size.

Reading checks the magic, version, every length and CRC before decoding, then validates while
decoding, so a truncated or corrupted file raises CheckpointError naming the file and tensor.
"""
from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from neon_ray.deepcomp import huffman, relindex
from neon_ray.deepcomp.bits import ByteReader, ByteWriter, pack_fixed, unpack_fixed, width_for
from neon_ray.deepcomp.lenet import LeNet5, LeNet5Config
from neon_ray.deepcomp.prune import prunable_weights
from neon_ray.deepcomp.share import SharedWeights
from neon_ray.errors import CheckpointError, ConfigError
from neon_ray.nets.spec import ArchSpec, MLP, build_mlp
from neon_ray.runtime.files import atomic_write_bytes

MAGIC = b"NRDC"
VERSION = 1
_PREAMBLE = struct.Struct("<4sHII")
CODINGS = ("fixed", "huffman")
KINDS = ("raw", "sparse", "shared")
RAW_DTYPES = (torch.float32, torch.float64, torch.int64, torch.int32)


# --- architecture --------------------------------------------------------------------------

def describe_model(model: nn.Module) -> dict:
    """The header's description of the architecture."""
    if isinstance(model, MLP):
        return {"kind": "mlp", "spec": model.spec.to_dict()}
    if isinstance(model, LeNet5):
        return {"kind": "lenet5", "config": model.cfg.to_dict()}
    raise ConfigError(f"cannot store a {type(model).__name__}: the compressed format supports neon_ray MLPs and LeNet5")


def build_model(desc: dict) -> nn.Module:
    """An untrained model of the described architecture."""
    if desc.get("kind") == "mlp":
        return build_mlp(ArchSpec.from_dict(desc["spec"]))
    if desc.get("kind") == "lenet5":
        return LeNet5(LeNet5Config(**desc["config"]))
    raise ConfigError(f"unknown model kind {desc.get('kind')!r}, expected 'mlp' or 'lenet5'")


# --- streams -------------------------------------------------------------------------------

def _huffman_or_fixed(symbols: np.ndarray, alphabet: int, allow_huffman: bool) -> tuple[int, bytes]:
    """(coding id, body) of the smaller encoding: Huffman's table does not pay off for tiny streams."""
    packed = pack_fixed(symbols, width_for(alphabet))
    fixed = struct.pack("<I", len(packed)) + packed
    if not allow_huffman:
        return 0, fixed
    lengths = huffman.code_lengths(np.bincount(symbols, minlength=alphabet))
    payload = huffman.encode(symbols, lengths)
    coded = huffman.pack_lengths(lengths) + struct.pack("<I", len(payload)) + payload
    return (1, coded) if len(coded) < len(fixed) else (0, fixed)


def _write_stream(w: ByteWriter, symbols: np.ndarray, alphabet: int, coding: str) -> None:
    coding_id, body = _huffman_or_fixed(np.asarray(symbols, dtype=np.int64), alphabet, coding == "huffman")
    w.u8(coding_id)
    w.raw(body)


def _read_stream(r: ByteReader, count: int, alphabet: int) -> np.ndarray:
    coding_id = r.u8()
    if coding_id == 0:
        symbols = unpack_fixed(r.blob(), width_for(alphabet), count)
    elif coding_id == 1:
        lengths = huffman.unpack_lengths(r.take((alphabet + 1) // 2), alphabet)
        symbols = huffman.decode(r.blob(), lengths, count)
    else:
        raise CheckpointError(f"unknown stream coding {coding_id} (expected 0 fixed or 1 Huffman)")
    if symbols.size and symbols.max() >= alphabet:
        raise CheckpointError(f"stream symbol {int(symbols.max())} outside its alphabet of {alphabet}")
    return symbols


def _write_positions(w: ByteWriter, positions: np.ndarray, coding: str) -> None:
    gap_bits = relindex.best_gap_bits(positions, coding)
    symbols = relindex.encode_gaps(positions, gap_bits)
    w.u32(len(positions))
    w.u8(gap_bits)
    w.u32(len(symbols))
    _write_stream(w, symbols, 1 << gap_bits, coding)


def _read_positions(r: ByteReader, numel: int) -> np.ndarray:
    nnz, gap_bits, n_symbols = r.u32(), r.u8(), r.u32()
    if not 1 <= gap_bits <= relindex.MAX_GAP_BITS or nnz > numel:
        raise CheckpointError(f"invalid position header (nnz {nnz} of {numel}, gap bits {gap_bits})")
    symbols = _read_stream(r, n_symbols, 1 << gap_bits)
    return relindex.decode_gaps(symbols, gap_bits, nnz, numel)


# --- sections ------------------------------------------------------------------------------

def _encode_sparse(weight: torch.Tensor, coding: str) -> bytes:
    flat = weight.detach().reshape(-1).float().numpy()
    positions = np.flatnonzero(flat)
    w = ByteWriter()
    _write_positions(w, positions, coding)
    w.float32(flat[positions])
    return bytes(w.buf)


def _encode_shared(sw: SharedWeights, coding: str) -> bytes:
    flat_mask = sw.mask.reshape(-1).numpy()
    positions = np.flatnonzero(flat_mask)
    k = sw.codebook.numel()
    w = ByteWriter()
    _write_positions(w, positions, coding)
    w.u16(k)
    w.float32(sw.codebook.numpy())
    if len(positions):
        _write_stream(w, sw.index.reshape(-1).numpy()[positions], k, coding)
    return bytes(w.buf)


def _decode_weight(kind: str, body: bytes, shape: tuple[int, ...], where: str) -> torch.Tensor:
    numel = math.prod(shape)
    r = ByteReader(body, where)
    positions = _read_positions(r, numel)
    flat = np.zeros(numel, dtype=np.float32)
    if kind == "sparse":
        flat[positions] = r.float32(len(positions))
    else:
        k = r.u16()
        codebook = r.float32(k)
        if len(positions):
            if k == 0:
                raise CheckpointError(f"{where}: {len(positions)} weights but an empty codebook")
            flat[positions] = codebook[_read_stream(r, len(positions), k)]
    r.expect_end()
    return torch.from_numpy(flat).reshape(shape)


def _encode_raw(tensor: torch.Tensor) -> bytes:
    if tensor.dtype not in RAW_DTYPES:
        raise ConfigError(f"cannot store a {tensor.dtype} tensor; supported: {RAW_DTYPES}")
    array = tensor.detach().cpu().contiguous().numpy()
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def _decode_raw(body: bytes, like: torch.Tensor, where: str) -> torch.Tensor:
    """A tensor with the dtype and shape of the model's own `like`."""
    dtype = like.numpy().dtype
    if len(body) != like.numel() * dtype.itemsize:
        raise CheckpointError(f"{where}: {len(body)} bytes do not hold a {like.dtype} tensor of shape {list(like.shape)}")
    return torch.from_numpy(np.frombuffer(body, dtype=dtype.newbyteorder("<")).astype(dtype)).reshape(like.shape)


# --- whole files ---------------------------------------------------------------------------

def encode(model: nn.Module, shared: dict[str, SharedWeights] | None = None, coding: str = "huffman") -> bytes:
    """The file's bytes: shared tensors from `shared`, other prunable weights sparse when that is smaller, the rest raw."""
    if coding not in CODINGS:
        raise ConfigError(f"unknown coding {coding!r}, expected one of {CODINGS}")
    shared = shared or {}
    prunable = set(prunable_weights(model))
    entries, bodies = [], []
    for name, tensor in model.state_dict().items():
        if name in shared:
            kind, body = "shared", _encode_shared(shared[name], coding)
        else:
            kind, body = "raw", _encode_raw(tensor)
            if name in prunable and tensor.dtype == torch.float32:
                sparse = _encode_sparse(tensor, coding)
                if len(sparse) < len(body):
                    kind, body = "sparse", sparse
        entries.append([kind, len(body), zlib.crc32(body)])
        bodies.append(body)
    header = json.dumps({"model": describe_model(model), "tensors": entries}, separators=(",", ":")).encode()
    return _PREAMBLE.pack(MAGIC, VERSION, len(header), zlib.crc32(header)) + header + b"".join(bodies)


def write(path: str | Path, model: nn.Module, shared: dict[str, SharedWeights] | None = None, coding: str = "huffman") -> int:
    """Write the compressed file atomically (mode 0666 less the umask, as every neon-ray file); returns its size in bytes."""
    data = encode(model, shared, coding)
    return atomic_write_bytes(path, data).stat().st_size


def _is_entry(e) -> bool:
    return (isinstance(e, list) and len(e) == 3 and e[0] in KINDS
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in e[1:]))


def _parse_header(data: bytes, where: str) -> tuple[dict, int]:
    if len(data) < _PREAMBLE.size:
        raise CheckpointError(f"{where}: truncated ({len(data)} bytes, not even a file header)")
    magic, version, header_len, header_crc = _PREAMBLE.unpack_from(data)
    if magic != MAGIC:
        raise CheckpointError(f"{where}: not a neon-ray compressed network (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise CheckpointError(f"{where}: format version {version} is not supported (expected {VERSION})")
    end = _PREAMBLE.size + header_len
    if end > len(data):
        raise CheckpointError(f"{where}: truncated (header needs {header_len} bytes, file has {len(data) - _PREAMBLE.size})")
    raw = data[_PREAMBLE.size : end]
    if zlib.crc32(raw) != header_crc:
        raise CheckpointError(f"{where}: header is corrupted (CRC mismatch)")
    try:
        header = json.loads(raw)
        if not (isinstance(header["model"], dict) and isinstance(header["tensors"], list)
                and all(_is_entry(e) for e in header["tensors"])):
            raise ValueError("expected {'model': {...}, 'tensors': [[kind, nbytes, crc], ...]}")
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{where}: header is not a valid description ({exc!s:.200})") from exc
    return header, end


def _model_for(header: dict, where: str) -> nn.Module:
    """The described architecture, checked to have one stored tensor per state_dict entry."""
    try:
        model = build_model(header["model"])
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: header describes no buildable model ({exc})") from exc
    expected, found = len(model.state_dict()), len(header["tensors"])
    if expected != found:
        raise CheckpointError(f"{where}: the described model has {expected} tensors, the file stores {found}")
    return model


def inspect(path: str | Path) -> list[dict]:
    """One row per stored tensor: name, shape, kind (raw/sparse/shared) and bytes; CRC-checked header only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: compressed network not found")
    header, _ = _parse_header(path.read_bytes(), str(path))
    model = _model_for(header, str(path))
    return [
        {"name": name, "shape": list(t.shape), "kind": kind, "nbytes": nbytes}
        for (name, t), (kind, nbytes, _) in zip(model.state_dict().items(), header["tensors"])
    ]


def decode(data: bytes, where: str = "<bytes>") -> nn.Module:
    """The model a file's bytes describe, in eval mode."""
    header, offset = _parse_header(data, where)
    total = offset + sum(nbytes for _, nbytes, _ in header["tensors"])
    if total != len(data):
        state = "truncated" if total > len(data) else "has trailing bytes"
        raise CheckpointError(f"{where}: {state} (sections need {total} bytes in all, file has {len(data)})")
    # Tensor names, shapes and dtypes come from the rebuilt architecture (they need no bytes in
    # the file), so a bad header cannot make the decoder allocate arbitrary amounts of memory.
    model = _model_for(header, where)
    state = {}
    for (name, like), (kind, nbytes, crc) in zip(model.state_dict().items(), header["tensors"]):
        body = data[offset : offset + nbytes]
        offset += nbytes
        at = f"{where}: tensor {name!r}"
        if zlib.crc32(body) != crc:
            raise CheckpointError(f"{at}: corrupted (CRC mismatch)")
        if kind == "raw":
            state[name] = _decode_raw(body, like, at)
        elif like.dtype != torch.float32:
            raise CheckpointError(f"{at}: a {like.dtype} tensor cannot be stored as {kind}")
        else:
            try:
                state[name] = _decode_weight(kind, body, tuple(like.shape), at)
            except CheckpointError as exc:
                raise CheckpointError(exc.args[0] if exc.args[0].startswith(at) else f"{at}: {exc}") from exc
    model.load_state_dict(state, strict=True)
    model.eval()
    return model


def read(path: str | Path) -> nn.Module:
    """Load a compressed network file written by `write`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: compressed network not found")
    return decode(path.read_bytes(), str(path))
