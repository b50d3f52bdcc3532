"""Reading a run's tables: exactly the files its commit records list, never a directory listing.

A table directory can hold a file that was published but never committed: a driver killed
between publishing a shard's table files and its commit record leaves one there until the next
session of that writer deletes it. A reader globbing ``<run>/<table>/*.parquet`` would count it,
and count its prompts twice once the resumed run writes them again. The records under
``<run>/_commits/`` are the only truth, read with the writer's own parser
(``commits.py``), so reader and writer agree on what is committed::

    from workflows.output.dataset import load_dataset, read_table

    samples = load_dataset("outputs/smoke/<run id>")  # a datasets.Dataset, images as PIL
    steps = read_table("s3://bucket/runs/<run id>", "steps", columns=["prompt_id", "p_yes"])

Files come in (writer id, sequence) order, the order each writer committed them.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

import fsspec
import pyarrow as pa
import pyarrow.dataset as ds
from pyarrow.fs import FSSpecHandler, PyFileSystem

from schemas.tables import TABLES
from workflows.output.commits import read_commit_records

if TYPE_CHECKING:
    import datasets


@dataclass(frozen=True)
class _Committed:
    """One table's committed files of a run, as paths of ``fs`` and as the caller's URIs."""

    fs: fsspec.AbstractFileSystem
    paths: list[str]
    uris: list[str]
    rows: list[int]


def _committed(run: str, table: str, storage_options: dict | None) -> _Committed:
    if table not in TABLES:
        raise ValueError(f"run {run}: no table {table!r} (tables are {list(TABLES)})")
    run = run.rstrip("/")
    fs, root = fsspec.core.url_to_fs(run, **(storage_options or {}))
    records = read_commit_records(fs, root)
    if not records and not fs.exists(posixpath.join(root, "_commits")):
        raise FileNotFoundError(
            f"run {run}: no commit records at {run}/_commits (not a run directory, or nothing committed yet)"
        )
    ordered = sorted(records.values(), key=lambda r: (r.writer_id, r.seq))
    files = [(r.files[table], r.rows.get(table, 0)) for r in ordered if table in r.files]
    return _Committed(
        fs,
        paths=[posixpath.join(root, relative) for relative, _ in files],
        uris=[f"{run}/{relative}" for relative, _ in files],
        rows=[rows for _, rows in files],
    )


def committed_files(run: str, table: str, *, storage_options: dict | None = None) -> list[str]:
    """Paths (a local run) or URIs (``s3://...``) of the committed files of ``table``."""
    return _committed(run, table, storage_options).uris


def read_table(
    run: str, table: str, *, columns: list[str] | None = None, storage_options: dict | None = None
) -> pa.Table:
    """The committed rows of ``table``, with its schema from ``schemas.tables`` even when no file
    is committed (so code downstream never meets a table without columns)."""
    committed = _committed(run, table, storage_options)
    dataset = ds.dataset(
        committed.paths,
        schema=TABLES[table],
        format="parquet",
        filesystem=PyFileSystem(FSSpecHandler(committed.fs)),
    )
    return dataset.to_table(columns=columns)


def load_dataset(
    run: str, table: str = "samples", *, storage_options: dict | None = None, cache_dir: str | None = None
) -> datasets.Dataset:
    """The committed rows of ``table`` as a ``datasets.Dataset``; image columns decode to PIL.

    Files without rows are left out: ``datasets`` refuses a file list whose files hold no row at
    all, and an empty table is returned from the schema instead."""
    import datasets

    committed = _committed(run, table, storage_options)
    files = [uri for uri, rows in zip(committed.uris, committed.rows, strict=True) if rows]
    if not files:
        return datasets.Dataset(TABLES[table].empty_table())
    return datasets.Dataset.from_parquet(files, cache_dir=cache_dir, storage_options=storage_options)
