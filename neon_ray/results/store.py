"""Results in Parquet: writing one run's rows atomically, reading every valid result file back.

Layout: `RES/method=<m>/dataset=<d>/<run_id>.parquet` (Hive partitions, values URI-encoded).
One file holds one run's rows for one (method, dataset); writing it again replaces exactly
those rows. Files are written under a dot-prefixed temporary name, which Parquet readers
ignore, and renamed into place (`runtime.files.atomic_write`), so readers never see a partial
file. Run manifests live beside the rows, under `RES/_runs/` (results/runs.py).

Reading (`read_results`) goes file by file: files that are not result files (another schema,
not Parquet, corrupt, outside the `method=/dataset=` layout) are skipped with a warning naming
them; files of an older version of the schema (lacking only columns added since,
`schema.ADDED_COLUMNS`) are read with those columns filled in, and a row repeated under the same (run_id, method, network_id), e.g. by a copied file,
counts once: the newest `created_at` is kept, with a warning naming the files.

`root` may also be a URI of any filesystem pyarrow opens, e.g. `s3://bucket/results` (see
`runtime.files`): files are written there as a temporary key, then moved onto their name, and
read back the same way as from disk, run manifests (`_runs/`) included.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from neon_ray.errors import DataError, NeonRayError
from neon_ray.results.runs import read_runs
from neon_ray.results.schema import ADDED_COLUMNS, FILE_SCHEMA, PARTITIONS, RESULT_COLUMNS, check_run_id, safe_file_name
from neon_ray.runtime.files import Location, atomic_write, check_output_dir, display, is_uri, join, local_path, open_uri

log = logging.getLogger(__name__)


def _to_table(frame: pd.DataFrame) -> pa.Table:
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        raise NeonRayError(f"result rows lack columns {missing}")
    frame = frame[FILE_SCHEMA.names].copy()
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return pa.Table.from_pandas(frame, schema=FILE_SCHEMA, preserve_index=False)


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def write_results(rows: list[dict] | pd.DataFrame, root: Location) -> list[Location]:
    """Write rows into `root` (a path or a URI), one file per (run_id, method, dataset), replacing earlier copies."""
    frame = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows
    if frame.empty:
        return []
    check_output_dir(root, "results directory")
    if frame.duplicated(["run_id", "method", "network_id"]).any():
        raise NeonRayError("result rows repeat a (run_id, method, network_id)")
    for run_id in frame["run_id"].unique():
        check_run_id(run_id)
    written = []
    for (run_id, method, dataset), part in frame.groupby(["run_id", "method", "dataset"], sort=True):
        final = join(root, f"method={quote(str(method), safe='')}", f"dataset={quote(str(dataset), safe='')}",
                     f"{safe_file_name(str(run_id))}.parquet")
        data = _parquet_bytes(_to_table(part))  # built before the file is opened: a bad row writes nothing
        written.append(atomic_write(final, lambda fh: fh.write(data)))
    return written


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    if actual.equals(expected) or pa.types.is_null(actual):
        return True
    if pa.types.is_dictionary(actual):
        actual = actual.value_type
    checks = {
        "string": pa.types.is_string(actual) or pa.types.is_large_string(actual),
        "int64": pa.types.is_integer(actual),
        "double": pa.types.is_floating(actual) or pa.types.is_integer(actual),
        "bool": pa.types.is_boolean(actual),
    }
    if pa.types.is_timestamp(expected):
        return pa.types.is_timestamp(actual)
    return checks.get(str(expected), False)


def _schema_problem(schema: pa.Schema) -> str | None:
    names = schema.names
    missing = [n for n in FILE_SCHEMA.names if n not in names and n not in ADDED_COLUMNS]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        return f"not a neon-ray result file: lacks columns {shown}"
    extra = [n for n in names if n not in FILE_SCHEMA.names]
    if extra:
        note = " (method and dataset belong in the folder names)" if set(extra) & set(PARTITIONS) else ""
        return f"has columns that are not in the results schema: {', '.join(extra)}{note}"
    wrong = [f"{f.name} is {schema.field(f.name).type}, expected {f.type}" for f in FILE_SCHEMA
             if f.name in names and not _compatible(schema.field(f.name).type, f.type)]
    if wrong:
        return "column types differ from the results schema: " + "; ".join(wrong[:3])
    return None


@dataclass(frozen=True)
class _File:
    """One file under a results root, local or behind a pyarrow filesystem."""

    shown: str
    """How messages name it: its path, or its URI."""
    parts: tuple[str, ...]
    """Its path below the root, folder by folder."""
    path: str
    filesystem: pafs.FileSystem | None = None
    """None: a local file."""


def _partition_values(parts: tuple[str, ...]) -> tuple[str, str] | None:
    if len(parts) != 3 or not parts[0].startswith("method=") or not parts[1].startswith("dataset="):
        return None
    method, dataset = unquote(parts[0][len("method="):]), unquote(parts[1][len("dataset="):])
    return (method, dataset) if method and dataset else None


def _read_one(file: _File) -> tuple[pa.Table | None, str | None]:
    """(table with partition columns, None) or (None, why the file is skipped)."""
    if not file.parts[-1].endswith(".parquet"):
        return None, "not a result file (*.parquet)"
    where = _partition_values(file.parts)
    if where is None:
        return None, "not under the method=<method>/dataset=<dataset>/ folders of a results directory"
    try:
        pf = pq.ParquetFile(file.path if file.filesystem is None else _whole_object(file))
        problem = _schema_problem(pf.schema_arrow)
        if problem:
            return None, problem
        present = [n for n in FILE_SCHEMA.names if n in pf.schema_arrow.names]
        table = _with_added_columns(pf.read(columns=present)).select(FILE_SCHEMA.names)
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        return None, f"cannot be read as Parquet ({_first_line(exc)})"
    try:
        table = table.cast(FILE_SCHEMA)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        return None, f"column values do not fit the results schema ({_first_line(exc)})"
    n = table.num_rows
    table = table.append_column("method", pa.array([where[0]] * n, pa.string()))
    table = table.append_column("dataset", pa.array([where[1]] * n, pa.string()))
    return table.select(RESULT_COLUMNS), None


def _whole_object(file: _File, attempts: int = 3) -> pa.BufferReader:
    """The object's bytes from one request, read again while they do not parse as Parquet.

    Ranged reads of an object (how Parquet is read remotely) can mix two versions of an object
    replaced meanwhile; one GET returns one version, though possibly cut at the size announced
    before the replace, which then fails to parse, so it is read once more.
    """
    for _ in range(attempts):
        with file.filesystem.open_input_file(file.path) as handle:
            data = handle.read()
        try:
            pq.read_metadata(pa.BufferReader(data))
            break
        except (pa.ArrowException, OSError, ValueError):
            continue  # cut by a replace, or not Parquet at all: then the caller's ParquetFile says why
    return pa.BufferReader(data)


def _with_added_columns(table: pa.Table) -> pa.Table:
    """An older version's table with the columns added since, at their fill values."""
    for name, value in ADDED_COLUMNS.items():
        if name not in table.column_names:
            table = table.append_column(name, pa.array([value] * table.num_rows, FILE_SCHEMA.field(name).type))
    return table


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _hidden(parts: tuple[str, ...]) -> bool:
    # what pyarrow's (and so pandas') dataset discovery skips: any '.' or '_' prefixed name (so
    # also the temporary keys of writes in progress on an object store)
    return any(part.startswith((".", "_")) for part in parts)


def _local_files(root: Path) -> list[_File]:
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "not found"
        raise DataError(f"{root}: results directory {what}")
    return [_File(str(p), p.relative_to(root).parts, str(p)) for p in sorted(root.rglob("*")) if p.is_file()]


def _uri_files(root: str) -> list[_File]:
    fs, base = open_uri(root)
    base = base.rstrip("/")
    try:
        kind = fs.get_file_info(base).type
        if kind != pafs.FileType.Directory:
            what = "is not a directory" if kind != pafs.FileType.NotFound else "not found"
            raise DataError(f"{display(root)}: results directory {what}")
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{display(root)}: results directory cannot be listed ({_first_line(exc)})") from exc
    files = []
    for info in sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path):
        parts = tuple(info.path[len(base) + 1:].split("/"))
        files.append(_File(display(join(root, *parts)), parts, info.path, fs))
    return files


def _listing(items: list[str], limit: int = 5) -> str:
    return "; ".join(items[:limit]) + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def read_results(root: Location) -> pd.DataFrame:
    """All result rows under `root`, a path or a URI (partition columns decoded back to plain strings).

    Reads file by file: a file that is not a valid result file is skipped with a warning that
    names it (an error when no valid file is left), and rows repeating a (run_id, method,
    network_id) count once, the newest `created_at` kept, with a warning naming the files.
    """
    root = str(root) if is_uri(root) else local_path(root)
    files = [f for f in (_uri_files(root) if isinstance(root, str) else _local_files(root)) if not _hidden(f.parts)]
    if not any(f.parts[-1].endswith(".parquet") for f in files):
        runs = read_runs(root)
        note = (f"; run manifests name {len(runs)} run(s) that wrote no rows: "
                + ", ".join(f"{r['run_id']!r} ({r['method']}, {r['status']})" for r in runs[:5])) if runs else ""
        raise DataError(f"{display(root)}: no result files (*.parquet) found{note}")
    tables, sources, skipped = [], [], []
    for file in files:
        table, why = _read_one(file)
        if table is None:
            skipped.append(f"{file.shown} ({why})")
            log.warning("skipped %s: %s", file.shown, why)
            continue
        tables.append(table)
        sources += [file.shown] * table.num_rows
    if not tables:
        raise DataError(f"{display(root)}: no valid result files; skipped {len(skipped)}: {_listing(skipped)}")
    frame = pa.concat_tables(tables).to_pandas()
    return _drop_duplicates(frame, pd.Series(sources, index=frame.index))[RESULT_COLUMNS]


def _drop_duplicates(frame: pd.DataFrame, sources: pd.Series) -> pd.DataFrame:
    key = ["run_id", "method", "network_id"]
    if not frame.duplicated(key).any():
        return frame
    # newest created_at last (NaT first), ties broken by file path: keep the last of each key
    order = frame.assign(_src=sources).sort_values(["created_at", "_src"], kind="stable", na_position="first")
    keep = ~order.duplicated(key, keep="last")
    dropped = order[~keep]
    files = sorted(set(order.loc[order.set_index(key).index.isin(dropped.set_index(key).index), "_src"]))
    log.warning("%d result row(s) repeat a (run_id, method, network_id) of another file and were dropped, "
                "keeping the newest created_at of each; files involved: %s", len(dropped), _listing(files))
    return order[keep].drop(columns="_src").sort_index()
