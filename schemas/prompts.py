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
- A prompt longer than ``max_prompt_chars`` is a bad row: no model reads that far, and every
  samples row of the prompt would carry it.
- A compressed file that ends before its end marker (a cut-short download) yields the rows
  before the cut, then one bad row at the line where it was cut.
- A bad row becomes a :class:`BadRow` and the stream goes on, unless ``strict`` asks for an
  :class:`~schemas.errors.InputError` at the first one. A missing file, an unknown format, a
  file that is not Parquet under a Parquet name, or a Parquet file whose ``prompt`` (or ``id``)
  column is missing or of the wrong type is always an ``InputError``, raised when the source is
  opened: no row can be read.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import zlib
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
MAX_PROMPT_CHARS = 8192
"""The default longest prompt (``input.max_prompt_chars``); text models read a few hundred tokens."""
CUT_SHORT = (EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)
"""What decompressing a file that was cut short (or is corrupt) raises."""


def read_prompts(
    uri: str,
    format: str = "auto",
    strict: bool = False,
    storage_options: dict[str, Any] | None = None,
    max_prompt_chars: int = MAX_PROMPT_CHARS,
) -> Iterator[PromptRecord | BadRow]:
    """Stream the prompts of one source, in file order.

    The format, the file's existence and a Parquet file's schema are checked here, before the
    first row is asked for, so a typo in a recipe fails when the job starts rather than when
    it first pulls.
    """
    fmt = resolve_format(uri, format)
    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    if not fs.exists(path):
        raise InputError(uri, None, None, "file not found")
    if fmt == "parquet":
        rows = _read_parquet(fs, path, uri, max_prompt_chars)
    else:
        rows = _read_lines(fs, path, uri, fmt, max_prompt_chars)
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
    fs: fsspec.AbstractFileSystem, path: str, uri: str, fmt: str, max_chars: int
) -> Iterator[PromptRecord | BadRow]:
    seen_ids: dict[str, int] = {}
    line_no = 0
    with fs.open(path, "rb", compression="infer") as f:
        try:
            for line_no, raw in enumerate(_split_lines(f), start=1):
                yield from _line_row(raw, line_no, uri, fmt, max_chars, seen_ids)
        except CUT_SHORT as exc:
            reason = f"the file is cut short or corrupt: {type(exc).__name__}: {exc}"
            yield BadRow(uri, line_no + 1, None, reason)


def _line_row(
    raw: bytes, line_no: int, uri: str, fmt: str, max_chars: int, seen_ids: dict[str, int]
) -> Iterator[PromptRecord | BadRow]:
    """The row of one line: nothing for a blank one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        yield BadRow(uri, line_no, None, f"invalid UTF-8 at byte {exc.start}", _shorten(raw))
        return
    if line_no == 1:
        text = text.removeprefix("\ufeff")  # a byte-order mark is not part of the prompt
    if not text.strip():
        return
    if fmt == "text":
        yield _from_mapping({"prompt": text}, uri, line_no, text, seen_ids, max_chars)
        return
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        reason = f"malformed JSON: {exc.msg} (column {exc.colno})"
        yield BadRow(uri, line_no, None, reason, text[:RAW_CHARS])
        return
    if not isinstance(row, dict):
        yield BadRow(uri, line_no, None, f"expected a JSON object, got {_type_name(row)}", text[:RAW_CHARS])
        return
    yield _from_mapping(row, uri, line_no, text, seen_ids, max_chars)


def _read_parquet(
    fs: fsspec.AbstractFileSystem, path: str, uri: str, max_chars: int
) -> Iterator[PromptRecord | BadRow]:
    """Opens the file and checks its schema now; the rows come when asked for."""
    import pyarrow.parquet as pq

    f = fs.open(path, "rb")
    try:
        parquet = pq.ParquetFile(f)
        _check_parquet_schema(parquet.schema_arrow, uri)
    except Exception as exc:
        f.close()
        if isinstance(exc, InputError):
            raise
        raise InputError(
            uri, None, None, f"not a readable Parquet file: {type(exc).__name__}: {exc}"
        ) from None
    return _parquet_rows(f, parquet, uri, max_chars)


def _check_parquet_schema(schema: Any, uri: str) -> None:
    """A column of the wrong type would make every row bad: say so once, for the file."""
    import pyarrow as pa

    if "prompt" not in schema.names:
        raise InputError(uri, None, "prompt", f"no 'prompt' column (columns: {schema.names})")
    kinds = {
        "prompt": (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view),
        "id": (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view, pa.types.is_integer),
        "prompt_id": (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer),
        "metadata": (pa.types.is_struct,),
    }
    for name, accepts in kinds.items():
        if name in schema.names and not any(accept(schema.field(name).type) for accept in accepts):
            expected = {"prompt": "string", "metadata": "struct"}.get(name, "string or integer")
            raise InputError(
                uri, None, name, f"column {name!r} has type {schema.field(name).type}; expected {expected}"
            )


def _parquet_rows(f: IO[bytes], parquet: Any, uri: str, max_chars: int) -> Iterator[PromptRecord | BadRow]:
    seen_ids: dict[str, int] = {}
    with f:
        row_no = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                row_no += 1
                yield _from_mapping(row, uri, row_no, None, seen_ids, max_chars)


def _split_lines(f: IO[bytes]) -> Iterator[bytes]:
    """Lines as bytes, read a block at a time: any file-like works, memory stays bounded.

    ``read1`` where the file has it: a decompressor's ``read`` collects a whole block before it
    returns, so at a cut it would raise and lose the complete lines it had already decoded."""
    read = getattr(f, "read1", f.read)
    tail = b""
    while block := read(BLOCK_BYTES):
        lines = (tail + block).split(b"\n")
        tail = lines.pop()
        for line in lines:
            yield line.removesuffix(b"\r")
    if tail:
        yield tail.removesuffix(b"\r")


def _from_mapping(
    row: dict[str, Any],
    uri: str,
    line: int,
    text: str | None,
    seen_ids: dict[str, int],
    max_chars: int = MAX_PROMPT_CHARS,
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
    if len(prompt) > max_chars:
        return bad(
            "prompt", f"{len(prompt)} characters, more than the {max_chars} allowed (input.max_prompt_chars)"
        )
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
