"""Prompt sources: every bad-input case is named by file, line and field; good rows go on."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.spec import AbstractFileSystem

from schemas.errors import InputError
from schemas.prompts import BadRow, PromptRecord, read_prompts

GENEVAL = Path(__file__).resolve().parent.parent / "configs/prompts/geneval/evaluation_metadata.jsonl"
"""GenEval's prompt metadata, as the GenEval recipes read it (see SOURCE.md beside it)."""
GENEVAL_TAGS = {"single_object", "two_object", "counting", "colors", "position", "color_attr"}

GOOD_BEFORE = b'{"prompt": "a red cube"}'
GOOD_AFTER = b'{"prompt": "a blue ball", "metadata": {"k": 1}}'

# (bad line, field the report must name, words the reason must contain)
BAD_LINES = {
    "malformed_json": (b'{"prompt": "a cat"', None, "malformed JSON"),
    "invalid_utf8": (b'{"prompt": "caf\xe9 \xff"}', None, "invalid UTF-8"),
    "not_an_object": (b'["a cat"]', None, "expected a JSON object"),
    "empty_prompt": (b'{"prompt": ""}', "prompt", "empty prompt"),
    "whitespace_prompt": (b'{"prompt": " \\t  "}', "prompt", "empty prompt"),
    "missing_prompt": (b'{"id": "x1", "text": "a cat"}', "prompt", "missing required field"),
    "null_prompt": (b'{"prompt": null}', "prompt", "missing required field"),
    "prompt_not_string": (b'{"prompt": 5}', "prompt", "expected a string, got int"),
    "metadata_not_object": (b'{"prompt": "a cat", "metadata": [1]}', "metadata", "expected an object"),
    "id_wrong_type": (b'{"prompt": "a cat", "id": [1]}', "id", "expected a string or an integer"),
    "id_bool": (b'{"prompt": "a cat", "prompt_id": true}', "prompt_id", "expected a string or an integer"),
    "id_empty": (b'{"prompt": "a cat", "id": " "}', "id", "empty id"),
    "geneval_include_not_list": (
        b'{"tag": "counting", "include": "cat", "prompt": "a cat"}',
        "include",
        "expected a list of objects",
    ),
}


def write(path: Path, *lines: bytes) -> str:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


def split(rows: list[PromptRecord | BadRow]) -> tuple[list[PromptRecord], list[BadRow]]:
    return [r for r in rows if isinstance(r, PromptRecord)], [r for r in rows if isinstance(r, BadRow)]


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_row_is_reported_and_the_stream_goes_on(tmp_path: Path, case: str) -> None:
    bad_line, field, reason = BAD_LINES[case]
    uri = write(tmp_path / "p.jsonl", GOOD_BEFORE, b"", bad_line, GOOD_AFTER)

    good, bad = split(list(read_prompts(uri)))

    assert [(r.line, r.prompt) for r in good] == [(1, "a red cube"), (4, "a blue ball")]
    assert good[1].metadata == {"k": 1}
    assert len(bad) == 1
    assert (bad[0].source, bad[0].line, bad[0].field) == (uri, 3, field)
    assert reason in bad[0].reason
    assert bad[0].raw  # the offending text is kept for the errors table


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_strict_mode_raises_naming_file_line_and_field(tmp_path: Path, case: str) -> None:
    bad_line, field, reason = BAD_LINES[case]
    uri = write(tmp_path / "p.jsonl", GOOD_BEFORE, b"", bad_line, GOOD_AFTER)
    stream = read_prompts(uri, strict=True)

    assert next(stream).prompt == "a red cube"  # rows before the bad one still arrive
    with pytest.raises(InputError) as info:
        next(stream)

    assert (info.value.uri, info.value.line, info.value.field) == (uri, 3, field)
    message = str(info.value)
    assert f"{uri}:3:" in message and reason in message
    if field is not None:
        assert repr(field) in message


def test_duplicate_explicit_id_names_both_lines(tmp_path: Path) -> None:
    uri = write(
        tmp_path / "p.jsonl",
        b'{"id": "a", "prompt": "one"}',
        b'{"id": "b", "prompt": "two"}',
        b'{"id": "a", "prompt": "three"}',
        b'{"id": "c", "prompt": "four"}',
    )
    good, bad = split(list(read_prompts(uri)))

    assert [r.prompt_id for r in good] == ["a", "b", "c"]
    assert [(b.line, b.field) for b in bad] == [(3, "id")]
    assert "duplicate id 'a'" in bad[0].reason and "line 1" in bad[0].reason
    with pytest.raises(InputError, match=r"p\.jsonl:3: field 'id': duplicate"):
        list(read_prompts(uri, strict=True))


def test_invalid_utf8_keeps_later_line_numbers_right(tmp_path: Path) -> None:
    uri = write(tmp_path / "p.txt", b"first", b"\xc3\x28 broken", b"", "café".encode(), b"last")
    good, bad = split(list(read_prompts(uri)))

    assert [(r.line, r.prompt) for r in good] == [(1, "first"), (4, "café"), (5, "last")]
    assert [(b.line, b.field) for b in bad] == [(2, None)]
    assert "broken" in bad[0].raw


def test_missing_file_names_the_file_before_any_row_is_read(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.jsonl")
    with pytest.raises(InputError) as info:
        read_prompts(missing)  # no next(): the check is eager
    assert info.value.line is None and missing in str(info.value) and "not found" in str(info.value)


def test_unknown_format_is_a_clear_error(tmp_path: Path) -> None:
    csv = write(tmp_path / "p.csv", b"prompt")
    with pytest.raises(InputError, match=r"p\.csv: field 'format': cannot tell the format.*'\.csv'"):
        read_prompts(csv)
    with pytest.raises(InputError, match="unknown format 'csv'"):
        read_prompts(csv, format="csv")
    assert [r.prompt for r in read_prompts(csv, format="text")] == ["prompt"]


def test_ids_are_stable_explicit_or_hashed(tmp_path: Path) -> None:
    uri = write(
        tmp_path / "p.jsonl",
        b'{"prompt": "a cat"}',
        b'{"prompt": "a cat"}',
        b'{"id": 7, "prompt": "a dog"}',
        b'{"prompt_id": "q-1", "prompt": "a cow"}',
    )
    first = [r.prompt_id for r in read_prompts(uri)]
    second = [r.prompt_id for r in read_prompts(uri)]

    assert first == second
    assert first[2:] == ["7", "q-1"]
    assert first[0] != first[1]  # the same text at two positions is two prompts
    moved = tmp_path / "elsewhere" / "copy.jsonl"
    moved.parent.mkdir()
    moved.write_bytes(Path(uri).read_bytes())
    assert [r.prompt_id for r in read_prompts(str(moved))] == first  # ids do not depend on the path


def test_extra_keys_and_metadata_object_are_merged(tmp_path: Path) -> None:
    uri = write(tmp_path / "p.jsonl", b'{"prompt": " a cat ", "tag": "t", "metadata": {"a": 1}, "id": null}')
    (record,) = read_prompts(uri)
    assert record.prompt == "a cat"
    assert record.metadata == {"tag": "t", "a": 1}


def test_geneval_metadata_reads_553_tagged_prompts() -> None:
    rows = list(read_prompts(str(GENEVAL)))

    assert len(rows) == 553 and all(isinstance(r, PromptRecord) for r in rows)
    assert {r.metadata["tag"] for r in rows} == GENEVAL_TAGS
    assert all(isinstance(r.metadata["include"], list) and r.metadata["include"] for r in rows)
    assert any("exclude" in r.metadata for r in rows)
    assert len({r.prompt_id for r in rows}) == 553
    assert rows[0].line == 1 and rows[-1].line == 553


def test_text_source_skips_blank_lines_and_strips(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_bytes(b"\xef\xbb\xbfa cat\r\n   \r\n\n  a dog on a sofa  \r\nlast without newline")
    rows = list(read_prompts(str(path)))

    assert [(r.line, r.prompt, r.metadata) for r in rows] == [
        (1, "a cat", {}),
        (4, "a dog on a sofa", {}),
        (5, "last without newline", {}),
    ]


def test_parquet_source_rows_and_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    table = pa.table(
        {
            "prompt": ["a cat", None, "  ", "a dog"],
            "id": [10, 11, 12, 13],
            "tag": ["counting", "colors", "position", "single_object"],
        }
    )
    pq.write_table(table, path, row_group_size=2)  # two row groups: line numbers run across batches
    good, bad = split(list(read_prompts(str(path))))

    assert [(r.line, r.prompt_id, r.prompt, r.metadata) for r in good] == [
        (1, "10", "a cat", {"tag": "counting"}),
        (4, "13", "a dog", {"tag": "single_object"}),
    ]
    assert [(b.line, b.field) for b in bad] == [(2, "prompt"), (3, "prompt")]
    assert '"id": 11' in bad[0].raw


def test_parquet_without_prompt_column_fails_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"text": ["a cat"]}), path)
    with pytest.raises(InputError, match=r"field 'prompt': no 'prompt' column"):
        list(read_prompts(str(path)))


def test_gzip_jsonl_is_detected_and_gives_the_same_ids(tmp_path: Path) -> None:
    plain = write(tmp_path / "p.jsonl", GOOD_BEFORE, b"{", GOOD_AFTER)
    packed = tmp_path / "p.jsonl.gz"
    with gzip.open(packed, "wb") as f:
        f.write(Path(plain).read_bytes())

    from_gzip = list(read_prompts(str(packed)))
    assert [(type(r).__name__, r.line) for r in from_gzip] == [
        ("PromptRecord", 1),
        ("BadRow", 2),
        ("PromptRecord", 3),
    ]
    assert [r.prompt_id for r in split(from_gzip)[0]] == [
        r.prompt_id for r in split(list(read_prompts(plain)))[0]
    ]


@pytest.mark.s3
def test_s3_source(s3_server: dict[str, str]) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server["AWS_ENDPOINT_URL"])
    s3.create_bucket(Bucket="prompt-source")
    s3.put_object(Bucket="prompt-source", Key="in/p.jsonl", Body=b"\n".join([GOOD_BEFORE, b"{", GOOD_AFTER]))
    options = {"endpoint_url": s3_server["AWS_ENDPOINT_URL"]}

    good, bad = split(list(read_prompts("s3://prompt-source/in/p.jsonl", storage_options=options)))

    assert [r.prompt for r in good] == ["a red cube", "a blue ball"]
    assert [(b.source, b.line) for b in bad] == [("s3://prompt-source/in/p.jsonl", 2)]
    with pytest.raises(InputError, match=r"s3://prompt-source/in/missing\.jsonl: file not found"):
        read_prompts("s3://prompt-source/in/missing.jsonl", storage_options=options)


class EndlessPrompts(io.RawIOBase):
    """An endless JSONL file that fails the test if more than ``budget`` bytes are read."""

    LINE = b'{"prompt": "a photo of a cat"}\n'

    def __init__(self, budget: int) -> None:
        self.budget, self.served = budget, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:
        n = len(buffer)
        assert self.served + n <= self.budget, f"read {self.served + n} bytes: the source is not streamed"
        chunk = (self.LINE * (n // len(self.LINE) + 1))[:n]
        buffer[:n] = chunk
        self.served += n
        return n


class EndlessFileSystem(AbstractFileSystem):
    protocol = "endless"
    budget = 4 << 20
    opened: list[EndlessPrompts] = []  # noqa: RUF012 (the test reads what was opened)

    def info(self, path: str, **kwargs: object) -> dict[str, object]:
        return {"name": path, "size": None, "type": "file"}

    def _open(self, path: str, mode: str = "rb", **kwargs: object) -> io.BufferedReader:
        raw = EndlessPrompts(self.budget)
        self.opened.append(raw)
        return io.BufferedReader(raw)


def test_first_prompt_arrives_without_reading_the_whole_source() -> None:
    fsspec.register_implementation("endless", EndlessFileSystem, clobber=True)
    stream = read_prompts("endless://prompts.jsonl")

    first = [next(stream) for _ in range(3)]
    stream.close()

    assert [r.prompt for r in first] == ["a photo of a cat"] * 3
    assert [r.line for r in first] == [1, 2, 3]
    assert 0 < EndlessFileSystem.opened[-1].served <= EndlessFileSystem.budget
