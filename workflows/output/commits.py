"""Commit records: the one proof that a shard exists, read alike by the writer and the readers.

A record ``_commits/<writer>-<seq>.json`` names the files one shard published, its rows per
table, the prompts it holds, the prompts it records as failed and the bad input rows it records.
A shard's table files may sit in their directories without a record (a crash between publishing
them and publishing it); nothing counts them. The writer resumes from these records
(``writer.py``), the readers take their file lists from them (``dataset.py``), and a run's
totals over all its sessions are computed from them (``run_record.py``), so all three agree on
what is committed.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import fsspec

COMMITS = "_commits"


@dataclass(frozen=True)
class CommitRecord:
    writer_id: str
    seq: int
    files: dict[str, str]
    """Table -> file, relative to the run directory."""
    rows: dict[str, int]
    prompt_ids: list[str]
    failed_prompt_ids: list[str]
    """Prompts committed as an errors row (failed after their retries)."""
    input_errors: list[tuple[str, int]]
    """(source, line) of each bad input row committed as an errors row."""

    @classmethod
    def of_shard(
        cls,
        writer_id: str,
        seq: int,
        files: dict[str, str],
        tables: dict[str, list[dict[str, Any]]],
        prompt_ids: Iterable[str],
    ) -> CommitRecord:
        errors = tables.get("errors", [])
        return cls(
            writer_id,
            seq,
            files,
            rows={table: len(rows) for table, rows in tables.items()},
            prompt_ids=sorted(prompt_ids),
            failed_prompt_ids=sorted({e["prompt_id"] for e in errors if e["kind"] == "prompt"}),
            input_errors=sorted({(e["source"], e["line"]) for e in errors if e["kind"] == "input"}),
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CommitRecord:
        """Records written before failed prompts were recorded have no ``failed_prompt_ids``."""
        return cls(
            data["writer_id"],
            data["seq"],
            data["files"],
            data["rows"],
            data["prompt_ids"],
            data.get("failed_prompt_ids", []),
            [(source, line) for source, line in data["input_errors"]],
        )

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()


def record_name(writer_id: str, seq: int) -> str:
    return f"{writer_id}-{seq:05d}"


def split_name(path: str) -> tuple[str, int]:
    """``.../<writer>-<seq>.<ext>`` -> (writer, seq); the writer id itself may contain '-'."""
    stem = posixpath.splitext(posixpath.basename(path))[0]
    writer, _, seq = stem.rpartition("-")
    return writer, int(seq)


def read_commit_records(
    fs: fsspec.AbstractFileSystem, root: str, writer_id: str | None = None
) -> dict[str, CommitRecord]:
    """Commit records of the run at ``root`` by file name, of one writer or all; none when the
    run has no ``_commits`` yet."""
    directory = posixpath.join(root, COMMITS)
    fs.invalidate_cache(directory)
    if not fs.exists(directory):
        return {}
    names = [p for p in fs.ls(directory, detail=False) if p.endswith(".json")]
    if writer_id is not None:
        names = [p for p in names if split_name(p)[0] == writer_id]
    if not names:
        return {}
    contents = fs.cat(names)
    return {posixpath.basename(p): CommitRecord.from_json(json.loads(contents[p])) for p in names}


@dataclass(frozen=True)
class Totals:
    """A run's counts over all its sessions."""

    prompts_ok: int
    prompts_failed: int
    """Prompts whose latest state is a failure: one retried later with success is not counted."""
    input_errors: int
    images: int

    @classmethod
    def of(cls, records: Iterable[CommitRecord]) -> Totals:
        records = list(records)
        ok = {pid for record in records for pid in record.prompt_ids}
        failed = {pid for record in records for pid in record.failed_prompt_ids} - ok
        return cls(
            prompts_ok=len(ok),
            prompts_failed=len(failed),
            input_errors=len(committed_input_errors(records)),
            images=sum(record.rows.get("samples", 0) for record in records),
        )


def committed_prompt_ids(records: Iterable[CommitRecord], failed: bool = True) -> set[str]:
    """Prompts committed with rows and, with ``failed``, those committed as failed."""
    return {
        pid
        for record in records
        for pid in (*record.prompt_ids, *(record.failed_prompt_ids if failed else ()))
    }


def committed_input_errors(records: Iterable[CommitRecord]) -> set[tuple[str, int]]:
    return {(source, line) for record in records for source, line in record.input_errors}
