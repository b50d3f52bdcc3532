"""Data the repository carries from other projects is what its SOURCE.md says, byte for byte.

Each SOURCE.md lists its files with their git blob ids; a file edited by hand, re-encoded or
truncated on the way in no longer hashes to its id."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTES = sorted([*ROOT.glob("configs/**/SOURCE.md"), *ROOT.glob("tests/fixtures/**/SOURCE.md")])
ROW = re.compile(r"^\| `(?P<file>[^`]+)` \| `[^`]+` \| `(?P<blob>[0-9a-f]{40})` \| (?P<bytes>\d+) \|$")


def git_blob_id(data: bytes) -> str:
    """What ``git hash-object`` prints for a file with these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def listed(note: Path) -> list[tuple[Path, str, int]]:
    rows = [ROW.match(line) for line in note.read_text(encoding="utf-8").splitlines()]
    return [(note.parent / m["file"], m["blob"], int(m["bytes"])) for m in rows if m]


def test_every_vendored_folder_has_a_note_listing_its_files() -> None:
    assert {note.parent.relative_to(ROOT).as_posix() for note in NOTES} == {
        "configs/prompts/geneval",
        "tests/fixtures/kuberay",
    }
    for note in NOTES:
        named = {path.name for path, _, _ in listed(note)}
        kept = {p.name for p in note.parent.iterdir() if p.name not in ("SOURCE.md", "LICENSE")}
        assert named and named == kept, f"{note}: lists {sorted(named)}, the folder holds {sorted(kept)}"


@pytest.mark.parametrize("note", NOTES, ids=lambda p: p.parent.name)
def test_vendored_files_match_their_git_blob_ids(note: Path) -> None:
    for path, blob, size in listed(note):
        data = path.read_bytes()
        assert (len(data), git_blob_id(data)) == (size, blob), f"{path} is not the file SOURCE.md names"
