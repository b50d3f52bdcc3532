"""Prompt sources: JSONL, plain text and Parquet, from any fsspec URI, streamed row by row.

Rules a user can rely on:

- Files are read in blocks and split into lines as bytes, then each line is decoded on its
  own: one line of invalid UTF-8 becomes one bad row and its line number stays right.
- Surrounding whitespace of a prompt is stripped. A blank line (JSONL or text) is not a row
  and is skipped silently; a row whose prompt field is empty or whitespace is a bad row.
- ``prompt_id`` is the row's ``id`` (or ``prompt_id``) field when it has one, else a hash of
  the prompt and its line (row index for Parquet). It does not depend on where the file
  lives (local, gzip, s3), so a rerun over the same content resumes with the same ids.
- JSONL keys other than prompt/id/metadata (GenEval's ``tag``, ``include``, ``exclude``)
  are kept in ``metadata``, next to the keys of an explicit ``metadata`` object.
- A bad row becomes a :class:`BadRow` and the stream goes on, unless ``strict`` asks for an
  :class:`~schemas.errors.InputError` at the first one. A missing file, an unknown format or
  a Parquet file without a ``prompt`` column is always an ``InputError``: no row can be read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import fsspec
from fsspec.utils import infer_compression

from schemas.errors import InputError


@dataclass(frozen=True)
class PromptRecord:
    """One prompt to search. ``prompt_id`` is stable across reruns (explicit id, else a hash
    of content and position) so that a resumed run can skip what was written."""

    prompt_id: str
    prompt: str
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    line: int = 0


@dataclass(frozen=True)
class BadRow:
    """A row that could not become a prompt; it is recorded in the ``errors`` table."""

    source: str
    line: int
    field: str | None
    reason: str
    raw: str = ""


FORMATS_BY_SUFFIX = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",  # read as JSON Lines: one object a line
    ".txt": "text",
    ".parquet": "parquet",
    ".pq": "parquet",
}
FORMATS = ("jsonl", "text", "parquet")
ID_FIELDS = ("id", "prompt_id")
CLAUSE_FIELDS = ("include", "exclude")  # GenEval: lists of {"class", "count", ...} objects
RAW_CHARS = 500
BLOCK_BYTES = 1 << 20
PARQUET_BATCH_ROWS = 1024


def read_prompts(
    uri: str, format: str = "auto", strict: bool = False, storage_options: dict[str, Any] | None = None
) -> Iterator[PromptRecord | BadRow]:
    """Stream the prompts of one source, in file order.

    The format and the file's existence are checked here, before the first row is asked
    for, so a typo in a recipe fails when the job starts rather than when it first pulls.
    """
    fmt = resolve_format(uri, format)
    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    if not fs.exists(path):
        raise InputError(uri, None, None, "file not found")
    rows = _read_parquet(fs, path, uri) if fmt == "parquet" else _read_lines(fs, path, uri, fmt)
    return _raise_first_bad(rows) if strict else rows


def resolve_format(uri: str, format: str) -> str:
    """``auto`` picks by extension, ignoring a compression suffix (``.jsonl.gz`` is JSONL)."""
    if format in FORMATS:
        return format
    if format != "auto":
        raise InputError(uri, None, "format", f"unknown format {format!r}; expected auto or one of {FORMATS}")
    name = uri.rstrip("/").rsplit("/", 1)[-1].lower()
    if infer_compression(name) is not None:
        name = name.rsplit(".", 1)[0]
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    if suffix not in FORMATS_BY_SUFFIX:
        raise InputError(
            uri,
            None,
            "format",
            f"cannot tell the format from the extension {suffix or '(none)'!r}; "
            f"name the file *{', *'.join(FORMATS_BY_SUFFIX)} or set the format to one of {FORMATS}",
        )
    return FORMATS_BY_SUFFIX[suffix]


def _raise_first_bad(rows: Iterator[PromptRecord | BadRow]) -> Iterator[PromptRecord]:
    for row in rows:
        if isinstance(row, BadRow):
            raise InputError(row.source, row.line, row.field, row.reason)
        yield row


def _read_lines(
    fs: fsspec.AbstractFileSystem, path: str, uri: str, fmt: str
) -> Iterator[PromptRecord | BadRow]:
    seen_ids: dict[str, int] = {}
    with fs.open(path, "rb", compression="infer") as f:
        for line_no, raw in enumerate(_split_lines(f), start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield BadRow(uri, line_no, None, f"invalid UTF-8 at byte {exc.start}", _shorten(raw))
                continue
            if line_no == 1:
                text = text.removeprefix("\ufeff")  # a byte-order mark is not part of the prompt
            if not text.strip():
                continue
            if fmt == "text":
                yield _record(text.strip(), None, {}, uri, line_no)
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                yield BadRow(
                    uri, line_no, None, f"malformed JSON: {exc.msg} (column {exc.colno})", text[:RAW_CHARS]
                )
                continue
            if not isinstance(row, dict):
                reason = f"expected a JSON object, got {_type_name(row)}"
                yield BadRow(uri, line_no, None, reason, text[:RAW_CHARS])
                continue
            yield _from_mapping(row, uri, line_no, text, seen_ids)


def _read_parquet(fs: fsspec.AbstractFileSystem, path: str, uri: str) -> Iterator[PromptRecord | BadRow]:
    import pyarrow.parquet as pq

    seen_ids: dict[str, int] = {}
    with fs.open(path, "rb") as f:
        parquet = pq.ParquetFile(f)
        if "prompt" not in parquet.schema_arrow.names:
            raise InputError(
                uri, None, "prompt", f"no 'prompt' column (columns: {parquet.schema_arrow.names})"
            )
        row_no = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                row_no += 1
                yield _from_mapping(row, uri, row_no, None, seen_ids)


def _split_lines(f: IO[bytes]) -> Iterator[bytes]:
    """Lines as bytes, read a block at a time: any file-like works, memory stays bounded."""
    tail = b""
    while block := f.read(BLOCK_BYTES):
        lines = (tail + block).split(b"\n")
        tail = lines.pop()
        for line in lines:
            yield line.removesuffix(b"\r")
    if tail:
        yield tail.removesuffix(b"\r")


def _from_mapping(
    row: dict[str, Any], uri: str, line: int, text: str | None, seen_ids: dict[str, int]
) -> PromptRecord | BadRow:
    """Validate one JSON object or Parquet row; ``seen_ids`` maps explicit ids to their line."""

    def bad(name: str, reason: str) -> BadRow:
        raw = text if text is not None else json.dumps(row, default=str, ensure_ascii=False)
        return BadRow(uri, line, name, reason, raw[:RAW_CHARS])

    prompt = row.get("prompt")
    if prompt is None:
        return bad("prompt", "missing required field")
    if not isinstance(prompt, str):
        return bad("prompt", f"expected a string, got {_type_name(prompt)}")
    if not prompt.strip():
        return bad("prompt", "empty prompt")
    id_field = next((name for name in ID_FIELDS if row.get(name) is not None), None)
    explicit_id = None
    if id_field is not None:
        value = row[id_field]
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return bad(id_field, f"expected a string or an integer, got {_type_name(value)}")
        explicit_id = str(value).strip()
        if not explicit_id:
            return bad(id_field, "empty id")
        if explicit_id in seen_ids:
            return bad(id_field, f"duplicate id {explicit_id!r} (first on line {seen_ids[explicit_id]})")
    metadata = row.get("metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        return bad("metadata", f"expected an object, got {_type_name(metadata)}")
    for name in CLAUSE_FIELDS:
        clauses = row.get(name)
        if clauses is not None and not (
            isinstance(clauses, list) and all(isinstance(c, dict) for c in clauses)
        ):
            return bad(name, f"expected a list of objects, got {_type_name(clauses)}")
    skip = {"prompt", "metadata", *(name for name in ID_FIELDS if name == id_field or row.get(name) is None)}
    extras = {k: v for k, v in row.items() if k not in skip}
    if explicit_id is not None:
        seen_ids[explicit_id] = line
    return _record(prompt.strip(), explicit_id, {**extras, **metadata}, uri, line)


def _record(
    prompt: str, explicit_id: str | None, metadata: dict[str, Any], uri: str, line: int
) -> PromptRecord:
    return PromptRecord(explicit_id or content_id(prompt, line), prompt, metadata, uri, line)


def content_id(prompt: str, position: int) -> str:
    """A short id from the prompt and its position: the same prompt twice in one file
    (GenEval repeats some) still gets two ids, and moving the file keeps them."""
    digest = hashlib.sha256(f"{position}\n{prompt}".encode()).hexdigest()
    return f"p{digest[:16]}"


def _shorten(raw: bytes) -> str:
    return raw[: RAW_CHARS * 4].decode("utf-8", errors="replace")[:RAW_CHARS]


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )
