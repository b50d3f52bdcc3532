"""Parquet shards of the ``samples``, ``steps`` and ``errors`` tables, committed exactly once.

Another set of tables of ``schemas.tables.TABLES`` (the pairs workflow writes only ``pairs``)
goes through the same commit protocol: pass ``tables`` and add rows with ``add_rows``.

Layout under ``<uri>/<run_id>/``::

    samples/part-<writer>-<seq>.parquet   steps/...   errors/...   (same name in each table)
    _commits/<writer>-<seq>.json          which files and prompts a shard holds
    _staging/<writer>/                    local files being written (never read)
    run.json

How a shard commits, and why a crash at any point leaves nothing a resume would duplicate:

1. Each table file is published whole: on a local disk it is written under ``_staging`` and
   renamed into its table directory (a rename is atomic); on an object store every upload
   appears atomically under its final name. Tables go in the order steps, errors, samples, so
   a reader of ``samples`` never sees a sample whose steps are not there yet.
2. Then the commit record is published (``commits.py``). It alone decides what is committed:
   ``committed_prompt_ids`` reads only commit records, and so do the readers of a run
   (``dataset.py``), which never list a table directory.
3. A writer opening a run deletes its own table files that no commit record lists (left by a
   crash between 1 and 2) and its staging directory, and continues numbering after its highest
   committed shard. Files of other writer ids are left alone, so several writers (distinct
   ``writer_id``) can share one run.

A table with no rows in a shard gets no file. So that every table directory stays readable,
``close`` commits one empty file (schema, no row group) for any table that has none yet:
``pyarrow.dataset`` reads it as zero rows; ``datasets`` skips it beside other files, but
refuses a table whose files hold no row at all (it has no empty split).

Writing never stalls generation: ``add`` only buffers rows; full shards go through a bounded
queue to one background thread that encodes and uploads them. The queue bounds memory: when
storage is slower than generation (or down), ``add`` waits for a free slot.

Storage that fails is retried (``storage.py``): every publish and every read of the commit
records is rerun with backoff for up to ``retry_s`` seconds, so an outage shorter than that
costs a pause, not the run. A shard that still cannot be written is a commit error: the files it
had published are deleted (if storage lets us), and the error, naming the shard and the prompts
that were not written, is raised by the next ``add``, ``flush`` or ``close`` and by every call
after it: a writer that failed commits nothing more, and the run resumes with a new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from schemas.tables import ERRORS, SAMPLES, STEPS
from workflows.output.commits import (
    COMMITS,
    CommitRecord,
    Totals,
    committed_input_errors,
    committed_prompt_ids,
    read_commit_records,
    record_name,
    split_name,
)
from workflows.output.rows import PromptRows, row_nbytes
from workflows.output.secrets import redact
from workflows.output.storage import Retry, output_fs

SHARD_TABLES: dict[str, pa.Schema] = {"steps": STEPS, "errors": ERRORS, "samples": SAMPLES}
"""The tables a shard holds, in the order they are published (samples last)."""

QUEUE_SHARDS = 2
"""Full shards waiting for the background thread before ``add`` waits (bounds memory)."""

NAMED_PROMPTS = 10
"""Prompt ids a commit error lists before it only counts the rest."""

_STOP = None


@dataclass
class _Shard:
    """Rows buffered for one shard; prompts are never split across two shards."""

    tables: dict[str, list[dict[str, Any]]]
    prompt_ids: list[str] = field(default_factory=list)
    nbytes: int = 0

    def __bool__(self) -> bool:
        return bool(self.prompt_ids) or any(self.tables.values())


class ShardWriter:
    """Writes one run's tables to a local directory or an fsspec URI (``s3://bucket/prefix``).

    S3 endpoint, credentials and region come from the environment (``AWS_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID``, ...) or from ``storage_options``, passed to ``fsspec`` (with botocore's
    retries set, ``storage.output_fs``). ``retry_s`` is how long a failing storage operation is
    retried before the writer gives up (0: not at all).
    """

    def __init__(
        self,
        uri: str,
        run_id: str,
        *,
        storage_options: dict | None = None,
        shard_rows: int = 512,
        shard_bytes: int = 256 << 20,
        writer_id: str = "0",
        tables: dict[str, pa.Schema] = SHARD_TABLES,
        retry_s: float = 0.0,
    ):
        if not run_id or "/" in run_id:
            raise ValueError(f"output run id {run_id!r}: must be a non-empty name without '/'")
        if not writer_id or "/" in writer_id:
            raise ValueError(f"output writer id {writer_id!r}: must be a non-empty name without '/'")
        self.fs, root = output_fs(uri, storage_options)
        self._retry = Retry(retry_s)
        self.root = posixpath.join(root.rstrip("/"), run_id)
        self.run_id, self.writer_id = run_id, writer_id
        self.shard_rows, self.shard_bytes = shard_rows, shard_bytes
        self.tables = tables
        self._counted = list(tables)[-1]  # rows of the last-published table fill a shard
        self._local = isinstance(self.fs, LocalFileSystem)
        self._staging = posixpath.join(self.root, "_staging", writer_id)
        self.prompts_written = 0
        self.shards_written = 0
        self.rows_written = {table: 0 for table in tables}
        self._next_seq = self._recover()
        self._buffer = self._new_shard()
        self._queue: queue.Queue[_Shard | None] = queue.Queue(maxsize=QUEUE_SHARDS)
        self._error: BaseException | None = None
        self.unwritten: list[str] = []
        """Prompts handed to this writer that it will not commit, once a commit has failed."""
        self._closed = False
        self._thread = threading.Thread(target=self._drain, name=f"shard-writer-{writer_id}", daemon=True)
        self._thread.start()

    # -- reading what is committed ------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def _commit_records(self, writer_id: str | None = None) -> list[CommitRecord]:
        records = self._retry.run(
            lambda: read_commit_records(self.fs, self.root, writer_id),
            f"reading the commit records of {self.root}",
        )
        return list(records.values())

    def committed_prompt_ids(self, writer_id: str | None = None, failed: bool = True) -> set[str]:
        """Prompts a resumed run must skip: committed with rows, and (``failed``) those committed
        as a prompt-error row; without them, a resume retries the prompts that failed before.

        ``writer_id`` limits them to one writer's, for a workflow that shares the run directory
        with the writers of other tables (pairs beside samples)."""
        return committed_prompt_ids(self._commit_records(writer_id), failed)

    def committed_totals(self) -> Totals:
        """Counts over every session of the run, from the commit records (the only truth)."""
        return Totals.of(self._commit_records())

    def committed_input_errors(self) -> set[tuple[str, int]]:
        """(source, line) of committed bad input rows, so a resumed run records each once."""
        return committed_input_errors(self._commit_records())

    def read_run_json(self, name: str = "run.json") -> dict | None:
        path = self._path(name)

        def read() -> bytes | None:
            self.fs.invalidate_cache(self.root)
            return self.fs.cat_file(path) if self.fs.exists(path) else None

        data = self._retry.run(read, f"reading {path}")
        return None if data is None else json.loads(data)

    def write_run_json(self, info: dict, name: str = "run.json") -> None:
        self._publish_retried(self._path(name), json.dumps(info, indent=2, sort_keys=True).encode())

    def _recover(self) -> int:
        """Delete this writer's uncommitted leftovers; return the next free sequence number."""
        records = self._commit_records(self.writer_id)
        listed = {posixpath.basename(p) for record in records for p in record.files.values()}
        for table in self.tables:
            directory = self._path(table)
            self.fs.invalidate_cache(directory)
            if not self.fs.exists(directory):
                continue
            for path in self.fs.ls(directory, detail=False):
                name = posixpath.basename(path)
                if name.startswith("part-") and name.endswith(".parquet"):
                    owner, _ = split_name(name.removeprefix("part-"))
                    if owner == self.writer_id and name not in listed:
                        self.fs.rm_file(path)
        if self.fs.exists(self._staging):
            self.fs.rm(self._staging, recursive=True)
        if self._local:
            for table in self.tables:
                self.fs.makedirs(self._path(table), exist_ok=True)
        return max((record.seq for record in records), default=-1) + 1

    # -- buffering (caller's thread) -----------------------------------------------------------

    def add(self, rows: PromptRows) -> None:
        """Buffer one prompt's rows; a full shard goes to the background thread."""
        self._raise_pending()
        self._extend(rows.prompt_id, {"samples": rows.samples, "steps": rows.steps, "errors": rows.errors})

    def add_errors(self, rows: list[dict[str, Any]]) -> None:
        """Buffer error rows not tied to a buffered prompt (bad input rows)."""
        self._raise_pending()
        self._extend(None, {"errors": rows})

    def add_rows(self, prompt_id: str, tables: dict[str, list[dict[str, Any]]]) -> None:
        """Buffer one prompt's rows of any of this writer's tables; the prompt is committed even
        with no rows, so a resumed run can skip it."""
        self._raise_pending()
        unknown = sorted(set(tables) - set(self.tables))
        if unknown:
            raise ValueError(
                f"shard writer for {self.root}: no table {unknown} (it writes {list(self.tables)})"
            )
        self._extend(prompt_id, tables)

    def _new_shard(self) -> _Shard:
        return _Shard({table: [] for table in self.tables})

    def _extend(self, prompt_id: str | None, tables: dict[str, list[dict[str, Any]]]) -> None:
        """Rotate before a prompt that would overflow the shard, so a limit is only exceeded by
        a single prompt larger than it (a prompt is never split)."""
        counted = len(tables.get(self._counted, ()))
        nbytes = sum(row_nbytes(row) for rows in tables.values() for row in rows)
        buffered = len(self._buffer.tables[self._counted])
        if buffered + counted > self.shard_rows or self._buffer.nbytes + nbytes > self.shard_bytes:
            self._hand_over()
        if prompt_id is not None:
            self._buffer.prompt_ids.append(prompt_id)
        for table, rows in tables.items():
            self._buffer.tables[table].extend(rows)
        self._buffer.nbytes += nbytes
        if (
            len(self._buffer.tables[self._counted]) >= self.shard_rows
            or self._buffer.nbytes >= self.shard_bytes
        ):
            self._hand_over()

    def _hand_over(self) -> None:
        if self._buffer:
            self._queue.put(self._buffer)
            self._buffer = self._new_shard()

    def flush(self) -> None:
        """Commit everything buffered; returns when it is committed."""
        self._raise_pending()
        self._hand_over()
        self._queue.join()
        self._raise_pending()

    def close(self) -> None:
        """Flush, make every table directory readable, and stop the background thread."""
        if self._closed:
            return
        try:
            if self._error is not None:  # buffered prompts will not be written either
                self.unwritten += self._buffer.prompt_ids
                self._buffer = self._new_shard()
            self.flush()
            self._commit_missing_tables()
        finally:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _raise_pending(self) -> None:
        if self._closed and self._error is None:
            raise RuntimeError(f"shard writer for {self.root} is closed")
        if self._error is not None:
            raise RuntimeError(
                f"shard writer for {self.root}: a commit failed: {redact(str(self._error))}; "
                f"{self._unwritten_text()}"
            ) from self._error

    def _unwritten_text(self) -> str:
        ids = self.unwritten
        named = ", ".join(ids[:NAMED_PROMPTS]) + (
            f" and {len(ids) - NAMED_PROMPTS} more" if len(ids) > NAMED_PROMPTS else ""
        )
        what = f"{len(ids)} prompts not written ({named})" if ids else "no prompt lost"
        return f"{what}; they are searched again when the run resumes"

    def _commit_missing_tables(self) -> None:
        missing = self._retry.run(self._tables_without_files, f"listing the tables of {self.root}")
        if missing:
            self._commit(self._new_shard(), force_empty=tuple(missing))

    def _tables_without_files(self) -> list[str]:
        missing = []
        for table in self.tables:
            directory = self._path(table)
            self.fs.invalidate_cache(directory)
            if not (self.fs.exists(directory) and self.fs.ls(directory, detail=False)):
                missing.append(table)
        return missing

    # -- committing (background thread) --------------------------------------------------------

    def _drain(self) -> None:
        while True:
            shard = self._queue.get()
            try:
                if shard is _STOP:
                    return
                if self._error is None:  # after a failure nothing more is committed
                    self._commit(shard)
                else:
                    self.unwritten += shard.prompt_ids
            except BaseException as error:  # handed to the caller's thread
                self.unwritten += shard.prompt_ids
                self._error = error
            finally:
                self._queue.task_done()

    def _commit(self, shard: _Shard, force_empty: tuple[str, ...] = ()) -> None:
        """Publish the shard's table files, then its commit record. If that fails for good, the
        table files it did publish are deleted again (one try: storage may be down, and then the
        next writer of this id deletes them), so no part of the shard stays visible."""
        seq = self._next_seq
        stem = record_name(self.writer_id, seq)
        name = f"part-{stem}.parquet"
        files: dict[str, str] = {}
        encoded = {
            table: _parquet_bytes(shard.tables[table], schema)
            for table, schema in self.tables.items()
            if shard.tables[table] or table in force_empty
        }
        try:
            for table, data in encoded.items():
                self._publish_retried(self._path(table, name), data)
                files[table] = posixpath.join(table, name)
            record = CommitRecord.of_shard(self.writer_id, seq, files, shard.tables, shard.prompt_ids)
            self._publish_retried(self._path(COMMITS, f"{stem}.json"), record.to_json())
        except Exception:  # failed for good (an interrupt is a crash: the next writer cleans up)
            for path in files.values():
                with contextlib.suppress(Exception):
                    self.fs.rm_file(self._path(path))
            raise
        self._next_seq = seq + 1
        self.shards_written += 1
        self.prompts_written += len(shard.prompt_ids)
        for table, rows in shard.tables.items():
            self.rows_written[table] += len(rows)

    def _publish_retried(self, path: str, data: bytes) -> None:
        self._retry.run(lambda: self._publish(path, data), f"writing {path}")

    def _publish(self, path: str, data: bytes) -> None:
        """Make ``path`` appear whole: rename from staging locally, one upload elsewhere."""
        if not self._local:
            self.fs.pipe_file(path, data)
            return
        self.fs.makedirs(self._staging, exist_ok=True)
        self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        temporary = posixpath.join(self._staging, posixpath.relpath(path, self.root).replace("/", "--"))
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())  # the bytes are on disk before the name says they are
        except BaseException:
            with contextlib.suppress(OSError):  # a full disk: give the space of the partial file back
                os.remove(temporary)
            raise
        os.replace(temporary, path)
        _fsync_directory(posixpath.dirname(path))


def _fsync_directory(path: str) -> None:
    """Make a rename durable: without this a power loss can forget it (POSIX only)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _parquet_bytes(rows: list[dict[str, Any]], schema: pa.Schema) -> bytes:
    """One Parquet file, with the table's schema and metadata so ``datasets`` decodes images.

    List columns keep Arrow's ``item`` child name, so a reader gets back exactly the schema of
    ``schemas/tables.py`` (Parquet's compliant naming would turn it into ``element``). An empty
    file has no row group at all: ``datasets`` fails on a row group of zero rows.
    """
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, schema, use_compliant_nested_type=False) as parquet:
        if rows:
            parquet.write_table(pa.Table.from_pylist(rows, schema=schema))
    return sink.getvalue().to_pybytes()
