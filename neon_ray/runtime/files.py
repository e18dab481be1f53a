"""Files on disk: atomic writes, one file-mode policy, output locations checked before work starts.

File modes: every file neon-ray writes gets the mode a plain `open()` would give it, 0666 less
the process umask (0644 under the usual umask 022). Networks, results, configs and compressed
files are treated alike; a user who keeps them private sets a stricter umask (e.g. 077).
Temporary files made with `mkstemp` start at 0600, so `atomic_write` sets the policy mode before
renaming them into place.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, IO

from neon_ray.errors import ConfigError


def file_mode() -> int:
    """0666 less the current umask: the mode of every file neon-ray writes."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Write `path` through `write(fh)` into a temporary sibling, fsync, then rename into place.

    Readers never see a half-written file, and a failure leaves the previous file untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def _first_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(path: str | Path, what: str = "output directory") -> Path:
    """Fail now, before any work, if `path` cannot become a directory we can write into.

    Creates nothing, so a refused run leaves no trace. Returns the absolute path.
    """
    path = Path(path).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} exists and is not a directory")
    _check_writable_ancestor(path, what)
    return path


def check_output_file(path: str | Path, what: str = "output file") -> Path:
    """Fail now if `path` cannot be written as a file (it is a directory, or under a file)."""
    path = Path(path).expanduser().absolute()
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory, expected a file path")
    _check_writable_ancestor(path.parent, what, own=path)
    return path


def _check_writable_ancestor(folder: Path, what: str, own: Path | None = None) -> None:
    existing = _first_existing(folder)
    if not existing.is_dir():
        raise ConfigError(f"{what} {own or folder}: {existing} is a file, expected a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {own or folder}: no write permission in {existing}")


_FORBIDDEN_NAMES = {"", ".", ".."}


def check_path_component(name: str, what: str) -> str:
    """`name` is used as one folder or file name: refuse anything that could escape its parent."""
    if name in _FORBIDDEN_NAMES or "/" in name or "\\" in name or "\x00" in name:
        raise ConfigError(f"{what} {name!r} cannot be used as a file name (empty, '.', '..', or contains a path separator)")
    return name
