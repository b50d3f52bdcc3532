"""Reading a run's tables: exactly the files its commit records list, never a directory listing.

A table directory can hold a file that was published but never committed: a driver killed
between publishing a shard's table files and its commit record leaves one there until the next
session of that writer deletes it. A reader globbing ``<run>/<table>/*.parquet`` would count it,
and count its prompts twice once the resumed run writes them again. The records under
``<run>/_commits/`` are the only truth, read with the writer's own parser (``commits.py``), so
reader and writer agree on what is committed::

    from workflows.output.dataset import load_dataset, read_table

    samples = load_dataset("outputs/smoke/<run id>")  # a datasets.Dataset, images as PIL
    steps = read_table("s3://bucket/runs/<run id>", "steps", columns=["prompt_id", "p_yes"])

Files come in (writer id, sequence) order, the order each writer committed them.

pyarrow reads every file itself: a local one through its native filesystem, any other (s3://,
...) from a file object that fsspec opens with the run's storage options, as the writer did.
Never through ``pyarrow.fs.PyFileSystem(FSSpecHandler(...))``: a script that read a list column
through one aborts when it exits ("terminate called without an active exception", exit code
134; apache/arrow issues 34314 and 39162), which fails any pipeline step that checks it.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import fsspec
import pyarrow as pa
import pyarrow.fs as arrow_fs
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from schemas.tables import TABLES
from workflows.output.commits import COMMITS, read_commit_records

if TYPE_CHECKING:
    import datasets


@dataclass(frozen=True)
class _Committed:
    """One table's committed files of a run, as paths of ``fs`` and as the caller's URIs."""

    fs: fsspec.AbstractFileSystem
    paths: list[str]
    uris: list[str]
    rows: int


def _committed(run: str, table: str, storage_options: dict | None) -> _Committed:
    if table not in TABLES:
        raise ValueError(f"run {run}: no table {table!r} (tables are {list(TABLES)})")
    run = run.rstrip("/")
    fs, root = fsspec.core.url_to_fs(run, **(storage_options or {}))
    records = read_commit_records(fs, root)
    if not records and not fs.exists(posixpath.join(root, COMMITS)):
        raise FileNotFoundError(
            f"run {run}: no commit records at {run}/{COMMITS} (not a run directory, or nothing committed yet)"
        )
    ordered = [r for r in sorted(records.values(), key=lambda r: (r.writer_id, r.seq)) if table in r.files]
    return _Committed(
        fs,
        paths=[posixpath.join(root, r.files[table]) for r in ordered],
        uris=[f"{run}/{r.files[table]}" for r in ordered],
        rows=sum(r.rows.get(table, 0) for r in ordered),
    )


def committed_files(run: str, table: str, *, storage_options: dict | None = None) -> list[str]:
    """Paths (a local run) or URIs (``s3://...``) of the committed files of ``table``."""
    return _committed(run, table, storage_options).uris


def read_files(
    run: str, table: str, *, columns: list[str] | None = None, storage_options: dict | None = None
) -> Iterator[pa.Table]:
    """The committed files of ``table`` one at a time, each with the table's schema: memory holds
    one shard, never the table."""
    committed = _committed(run, table, storage_options)
    for path in committed.paths:
        yield _read_file(committed.fs, path, TABLES[table], columns)


def _read_file(
    fs: fsspec.AbstractFileSystem, path: str, schema: pa.Schema, columns: list[str] | None
) -> pa.Table:
    if isinstance(fs, LocalFileSystem):
        return pq.read_table(path, columns=columns, schema=schema, filesystem=arrow_fs.LocalFileSystem())
    with fs.open(path, "rb") as handle:
        return pq.read_table(handle, columns=columns, schema=schema)


def read_table(
    run: str, table: str, *, columns: list[str] | None = None, storage_options: dict | None = None
) -> pa.Table:
    """The committed rows of ``table``, with its schema from ``schemas.tables`` even when no file
    is committed (so code downstream never meets a table without columns)."""
    parts = list(read_files(run, table, columns=columns, storage_options=storage_options))
    if parts:
        return pa.concat_tables(parts)
    empty = TABLES[table].empty_table()
    return empty.select(columns) if columns is not None else empty


def load_dataset(
    run: str, table: str = "samples", *, storage_options: dict | None = None, cache_dir: str | None = None
) -> datasets.Dataset:
    """The committed rows of ``table`` as a ``datasets.Dataset``; image columns decode to PIL.

    The files are read here, through pyarrow, so ``datasets`` never resolves a URI itself (with
    ``HF_HUB_OFFLINE=1`` it refuses remote ones), and written one shard at a time to an Arrow file
    under ``cache_dir`` (default: the ``datasets`` cache) that the dataset memory-maps, so a run
    larger than memory loads as ``datasets``' own loaders would. Each call writes that file afresh:
    it is named after the run and table, and a rerun may have committed more since."""
    import datasets  # a test extra, not a dependency of the label workflow

    committed = _committed(run, table, storage_options)
    schema = TABLES[table]
    if not committed.rows:  # ``datasets`` maps no file without a record batch
        return datasets.Dataset(schema.empty_table())
    key = hashlib.sha256(f"{run.rstrip('/')}\n{table}".encode()).hexdigest()[:16]
    target = Path(cache_dir or datasets.config.HF_DATASETS_CACHE) / "parmflow" / f"{table}-{key}.arrow"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f"{target.name}.{os.getpid()}.partial")
    with pa.OSFile(str(staging), "wb") as sink, pa.ipc.new_stream(sink, schema) as stream:
        for path in committed.paths:
            stream.write_table(_read_file(committed.fs, path, schema, None))
    os.replace(staging, target)  # a dataset mapping the previous file keeps reading it
    return datasets.Dataset.from_file(str(target))
