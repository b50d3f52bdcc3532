"""Prompt sources: JSONL, plain text and Parquet, from any fsspec URI, streamed row by row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
