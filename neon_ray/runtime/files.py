"""Files on disk or by URI: atomic writes, one file-mode policy, output locations checked before work starts.

File modes: every file neon-ray writes gets the mode a plain `open()` would give it, 0666 less
the process umask (0644 under the usual umask 022). Networks, results, configs and compressed
files are treated alike; a user who keeps them private sets a stricter umask (e.g. 077).
Temporary files made with `mkstemp` start at 0600, so `atomic_write` sets the policy mode before
renaming them into place.

Locations by URI: `atomic_write`, `check_output_dir`, `read_bytes`, `is_file`, `is_dir`,
`list_files`, `parent`, `remove` and `copy_tree` also take `s3://bucket/key` or any other URI
pyarrow's `FileSystem.from_uri` opens (gs://, hdfs://, abfs://, ...); `file://` URIs and plain
paths are local files. Credentials and endpoints come the way pyarrow takes them (for S3:
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL or `?endpoint_override=`, or
`KEY:SECRET@` in the URI, which messages mask and `without_credentials` drops from what is stored).
Object stores have no rename, so atomic replace there is: write the whole object under a unique
temporary key beside the target, `.NAME.<random>.tmp`, then move it onto the target
(`FileSystem.move`: on S3 one server-side copy, which replaces the object at once, then a delete
of the temporary key). Readers never see a partial object; readers of folders skip
dot-prefixed names, so a temporary key left by a writer that died before the move is never read
(and may be deleted). A reader that fetches an object in several ranged requests (as Parquet
readers do) can still mix two versions replaced in between: `read_bytes` and `results.store`
read each object in one request. Objects get the store's permissions, not the file-mode policy.
"""
from __future__ import annotations

import contextlib
import io
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable, IO
from urllib.parse import quote, unquote, urlparse

import pyarrow as pa
import pyarrow.fs as pafs

from neon_ray.errors import ConfigError

Location = str | Path
"""A local path, or a filesystem URI such as s3://bucket/prefix (see the module docstring)."""
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def file_mode() -> int:
    """0666 less the current umask: the mode of every file neon-ray writes."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def is_uri(location: Location) -> bool:
    """Whether `location` is a filesystem URI other than file:// (which, like a plain path, is local)."""
    match = _SCHEME.match(location) if isinstance(location, str) else None
    return bool(match) and match.group(1).lower() != "file"


def local_path(location: Location) -> Path:
    """A local location as a Path (a file:// URI becomes its path)."""
    if isinstance(location, str) and _SCHEME.match(location):
        parsed = urlparse(location)
        if parsed.scheme.lower() != "file" or parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"{display(location)}: not a local path (a URI of a remote filesystem)")
        return Path(unquote(parsed.path))
    return Path(location)


def join(location: Location, *parts: str) -> Location:
    """`location` / parts: a Path for a local location, a URI string (query kept) for a URI.

    In a URI each part is percent-encoded, so the key holds the part as given (pyarrow decodes
    URI paths): `dataset=sklearn%3Awine` is that folder name on S3 as on disk.
    """
    if not is_uri(location):
        return local_path(location).joinpath(*parts)
    base, _, query = str(location).partition("?")
    joined = posixpath.join(base.rstrip("/"), *(quote(part, safe="=") for part in parts))
    return f"{joined}?{query}" if query else joined


def display(location: Location) -> str:
    """`location` for messages and logs: a URI's user info (S3 URIs may carry `KEY:SECRET@`) masked."""
    text = str(location)
    if not is_uri(text):
        return text
    parsed = urlparse(text)
    if "@" not in parsed.netloc:
        return text
    return parsed._replace(netloc="***@" + parsed.netloc.rsplit("@", 1)[1]).geturl()


def open_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) of a URI; ConfigError naming the URI if pyarrow cannot open it."""
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise ConfigError(f"{display(uri)}: not a location pyarrow can open ({_first_line(exc)})") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def atomic_write(path: Location, write: Callable[[IO[bytes]], object]) -> Location:
    """Write `path` through `write(fh)` into a temporary sibling, fsync, then rename into place.

    Readers never see a half-written file, and a failure leaves the previous file untouched.
    A URI is written as a temporary key, then moved onto `path` (see the module docstring).
    """
    if is_uri(path):
        return _atomic_write_uri(str(path), write)
    path = local_path(path)
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


def _atomic_write_uri(uri: str, write: Callable[[IO[bytes]], object]) -> str:
    buffer = io.BytesIO()  # `write` may seek (torch.save); object stores take whole objects anyway
    write(buffer)
    fs, path = open_uri(uri)
    parent, name = posixpath.split(path)
    temporary = posixpath.join(parent, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        fs.create_dir(parent, recursive=True)
        with fs.open_output_stream(temporary) as out:
            out.write(buffer.getvalue())
        fs.move(temporary, path)
    except BaseException:
        try:
            fs.delete_file(temporary)
        except (OSError, pa.ArrowException):  # never written, or the store is gone: readers skip it anyway
            pass
        raise
    return uri


def read_bytes(location: Location) -> bytes:
    """The whole file; a URI's object in one request, so one version of it (see the module docstring).

    Any failure is an OSError (FileNotFoundError when there is no such file).
    """
    if not is_uri(location):
        return local_path(location).read_bytes()
    fs, path = open_uri(str(location))
    with _as_os_error(location), fs.open_input_stream(path) as handle:
        return handle.read()


@contextlib.contextmanager
def _as_os_error(location: Location):
    """pyarrow's errors that are not OSErrors already (ArrowInvalid, ...) as OSErrors naming `location`."""
    try:
        yield
    except pa.ArrowException as exc:
        if isinstance(exc, OSError):
            raise
        raise OSError(f"{display(location)}: {_first_line(exc)}") from exc


def _kind(location: Location) -> pafs.FileType:
    if not is_uri(location):
        path = local_path(location)
        if path.is_file():
            return pafs.FileType.File
        return pafs.FileType.Directory if path.is_dir() else pafs.FileType.NotFound
    fs, path = open_uri(str(location))
    with _as_os_error(location):
        return fs.get_file_info(path.rstrip("/")).type


def is_file(location: Location) -> bool:
    return _kind(location) == pafs.FileType.File


def is_dir(location: Location) -> bool:
    """A folder; by URI on an object store, a prefix some object lies under."""
    return _kind(location) == pafs.FileType.Directory


def base_name(location: Location) -> str:
    """The last name of a path or of a URI's path (decoded, query dropped)."""
    if not is_uri(location):
        return local_path(location).name
    parsed = urlparse(str(location))
    return unquote(posixpath.basename(parsed.path.rstrip("/"))) or parsed.netloc.rsplit("@", 1)[-1]


def list_files(folder: Location) -> list[tuple[tuple[str, ...], Location]]:
    """(names below `folder`, location) of every file under `folder`, sorted; none if it does not exist."""
    if not is_uri(folder):
        root = local_path(folder)
        return [(p.relative_to(root).parts, p) for p in sorted(root.rglob("*")) if p.is_file()]
    fs, base = open_uri(str(folder))
    base = base.rstrip("/")
    with _as_os_error(folder):
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    found = sorted(tuple(i.path[len(base) + 1:].split("/")) for i in infos if i.type == pafs.FileType.File)
    return [(parts, join(folder, *parts)) for parts in found]


def resolved(location: Location) -> Location:
    """A URI as given, a path with `~` expanded and made absolute (so it works from any working
    directory, and in Ray tasks that run elsewhere)."""
    return str(location) if is_uri(location) else Path(location).expanduser().resolve()


def parent(location: Location) -> Location:
    """The folder holding `location`: a Path's parent, or the URI one level up (query kept)."""
    if not is_uri(location):
        return local_path(location).parent
    parsed = urlparse(str(location))
    return parsed._replace(path=posixpath.dirname(parsed.path.rstrip("/"))).geturl()


def without_credentials(location: Location) -> Location:
    """`location` without a URI's user info (`KEY:SECRET@`), for what is stored in files; paths as given.

    Whoever reads it back then needs the credentials from the environment (AWS_ACCESS_KEY_ID, ...).
    """
    if not is_uri(location) or "@" not in urlparse(str(location)).netloc:
        return location
    parsed = urlparse(str(location))
    return parsed._replace(netloc=parsed.netloc.rsplit("@", 1)[1]).geturl()


def remove(location: Location) -> None:
    """Delete a file, or a folder with everything under it (by URI: every object under the prefix); none there: nothing."""
    if not is_uri(location):
        path = local_path(location)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        return
    fs, path = open_uri(str(location))
    path = path.rstrip("/")
    with _as_os_error(location):
        kind = fs.get_file_info(path).type
        if kind == pafs.FileType.Directory:
            fs.delete_dir(path)
        elif kind == pafs.FileType.File:
            fs.delete_file(path)


def copy_tree(source: Location, dest: Location) -> list[Location]:
    """Copy every file under `source` to the same names under `dest` (paths or URIs, either way), each
    written atomically; names starting with a dot (temporary files and keys) are skipped. Returns the copies."""
    copied = []
    for parts, location in list_files(source):
        if not any(part.startswith(".") for part in parts):
            copied.append(atomic_write_bytes(join(dest, *parts), read_bytes(location)))
    return copied


def atomic_write_bytes(path: Location, data: bytes) -> Location:
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: Location, text: str) -> Location:
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def _first_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(path: Location, what: str = "output directory") -> Location:
    """Fail now, before any work, if `path` cannot become a directory we can write into.

    Creates nothing, so a refused run leaves no trace. Returns the absolute path (a URI as given;
    there the location is checked to open, not to be a file, and to lie in an existing bucket or
    top folder; write permission shows only on the first write).
    """
    if is_uri(path):
        return _check_uri_dir(str(path), what)
    path = local_path(path).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} exists and is not a directory")
    _check_writable_ancestor(path, what)
    return path


def _check_uri_dir(uri: str, what: str) -> str:
    fs, path = open_uri(uri)
    ancestors = [path]
    while posixpath.dirname(ancestors[-1].rstrip("/")) not in ("", "/", ancestors[-1]):
        ancestors.append(posixpath.dirname(ancestors[-1].rstrip("/")))
    shown = display(uri)
    try:
        found = next((p, info) for p in ancestors if (info := fs.get_file_info(p)).type != pafs.FileType.NotFound)
    except StopIteration:
        raise ConfigError(f"{what} {shown}: {ancestors[-1]} does not exist (create the bucket or top folder first)") from None
    except (OSError, pa.ArrowException) as exc:
        raise ConfigError(f"{what} {shown}: cannot be reached ({_first_line(exc)})") from exc
    if found[1].type != pafs.FileType.Directory:
        raise ConfigError(f"{what} {shown}: {found[0]} is a file, expected a directory")
    return uri


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
