"""Search results as table rows: plain dicts laid out as the schemas in ``schemas/tables.py``.

This is where pixels become PNG bytes, once, on their way to disk: everything upstream keeps
images as ``uint8`` arrays (or object-store references resolved before this point). PNG
encoding is CPU work of a few milliseconds per image, so a caller on an event loop runs
``prompt_rows`` in a worker thread.

Every row of one prompt comes out of one call, as one ``PromptRows``, which the shard writer
keeps together so that a prompt is committed (and skipped on resume) as a unit.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from schemas.prompts import BadRow, PromptRecord
from workflows.search.types import Candidate, Cost, SearchResult, SearchTask, TraceRow

PNG_COMPRESS_LEVEL = 1
"""zlib level for PNG, lossless at any level. Encoding runs on the driver's CPU, so speed wins:
against the default 6, level 1 took 1/4 of the time on a smooth 256 px image for a 1.35x larger
file, and 0.65-0.9 of it on a noisy one for a 1.09x larger file (bench/writer.py)."""

RAW_LIMIT = 4096
"""Most characters of an offending input row kept in ``errors.raw``."""

ROW_OVERHEAD = 64
"""Bytes assumed per row besides its strings, binaries and lists (for shard sizing only)."""


@dataclass
class PromptRows:
    """All rows one prompt adds to the three tables."""

    prompt_id: str
    samples: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    errors: list[dict[str, Any]]

    @property
    def nbytes(self) -> int:
        """A cheap upper-bound-ish estimate of the Parquet bytes, for bounding shard size."""
        return sum(row_nbytes(row) for rows in (self.samples, self.steps, self.errors) for row in rows)


def row_nbytes(row: dict[str, Any]) -> int:
    """Bytes a row adds to a shard, roughly: its strings, binaries and lists, plus a constant."""
    size = ROW_OVERHEAD
    for value in row.values():
        if isinstance(value, str | bytes):
            size += len(value)
        elif isinstance(value, list):
            size += 4 * len(value)
        elif isinstance(value, dict) and value.get("bytes") is not None:
            size += len(value["bytes"])
    return size


def png_struct(image: Any, what: str, thumbnail: int | None = None) -> tuple[dict[str, Any], int, int]:
    """PNG bytes in the ``datasets`` Image layout, plus the width and height of the encoded image.

    ``thumbnail`` bounds the longer side (aspect kept, never enlarged).
    """
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{what}: image must be a uint8 array (H, W, 3), got {array.dtype} {array.shape}")
    picture = Image.fromarray(array)
    if thumbnail is not None:
        picture.thumbnail((thumbnail, thumbnail))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return {"bytes": buffer.getvalue(), "path": None}, picture.width, picture.height


def sample_id(prompt_id: str, image_index: int, round_: int, candidate: int) -> str:
    """Stable across reruns, so pairs and notebooks can refer to one sample."""
    return f"{prompt_id}/{image_index}/{round_}/{candidate}"


def prompt_rows(
    run_id: str,
    record: PromptRecord,
    results: list[tuple[SearchTask, SearchResult]],
    *,
    strategy: str,
    generator: str,
    judge: str | None,
    previews_in_steps: bool = False,
    thumbnail: int = 64,
) -> PromptRows:
    """The ``samples`` and ``steps`` rows of every search one prompt ran (one per image index)."""
    metadata = json.dumps(record.metadata, sort_keys=True) if record.metadata else None
    samples: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    for task, result in results:
        if task.prompt_id != record.prompt_id:
            raise ValueError(
                f"search of prompt {task.prompt_id!r} handed in with prompt {record.prompt_id!r}"
            )
        for candidate in result.candidates:
            samples.append(
                _sample_row(
                    run_id, record, task, candidate, result.cost, metadata, strategy, generator, judge
                )
            )
        for trace in result.trace:
            steps.append(_step_row(run_id, task, trace, thumbnail if previews_in_steps else None))
    return PromptRows(record.prompt_id, samples, steps, [])


def _sample_row(
    run_id: str,
    record: PromptRecord,
    task: SearchTask,
    candidate: Candidate,
    cost: Cost,
    metadata: str | None,
    strategy: str,
    generator: str,
    judge: str | None,
) -> dict[str, Any]:
    where = f"prompt {record.prompt_id!r} image {task.image_index} candidate {candidate.path_index}"
    image, width, height = png_struct(candidate.image, where)
    return {
        "run_id": run_id,
        "sample_id": sample_id(record.prompt_id, task.image_index, candidate.round, candidate.path_index),
        "prompt_id": record.prompt_id,
        "prompt": record.prompt,
        "metadata": metadata,
        "image_index": task.image_index,
        "candidate": candidate.path_index,
        "round": candidate.round,
        "seed": candidate.seed,
        "strategy": strategy,
        "generated_prompt": candidate.prompt,
        "reflection": candidate.reflection,
        "image": image,
        "image_tokens": np.asarray(candidate.tokens, dtype=np.int32).ravel().tolist(),
        "width": width,
        "height": height,
        "outcome": candidate.outcome,
        "process": candidate.process,
        "potential": candidate.potential,
        "clarity_step": candidate.clarity_step,
        "selected": candidate.selected,
        "rank": candidate.rank,
        "pruned_at": candidate.pruned_at,
        "generator": generator,
        "judge": judge,
        "nfe": cost.nfe,
        "judge_calls": cost.judge_calls,
        "paths_pruned": cost.paths_pruned,
        "steps_saved": cost.steps_saved,
    }


def _step_row(run_id: str, task: SearchTask, trace: TraceRow, thumbnail: int | None) -> dict[str, Any]:
    preview = None
    if thumbnail is not None and trace.preview is not None:
        where = (
            f"prompt {task.prompt_id!r} image {task.image_index} path {trace.path_index} step {trace.step}"
        )
        preview, _, _ = png_struct(trace.preview, where, thumbnail)
    return {
        "run_id": run_id,
        "prompt_id": task.prompt_id,
        "image_index": task.image_index,
        "round": trace.round,
        "candidate": trace.path_index,
        "step": trace.step,
        "question": trace.question,
        "p_yes": float(trace.p_yes),
        "p_no": None if trace.p_no is None else float(trace.p_no),
        "decision": bool(trace.decision),
        "preview": preview,
        "elapsed_ms": trace.elapsed_ms,
    }


def input_error_row(run_id: str, bad: BadRow) -> dict[str, Any]:
    """A prompt-source row that could not become a prompt; keyed by (source, line) on resume."""
    return {
        "run_id": run_id,
        "kind": "input",
        "prompt_id": None,
        "source": bad.source,
        "line": bad.line,
        "field": bad.field,
        "reason": bad.reason,
        "attempts": None,
        "raw": bad.raw[:RAW_LIMIT],
    }


def prompt_error_row(run_id: str, record: PromptRecord, reason: str, attempts: int) -> dict[str, Any]:
    """A prompt whose search still failed after its retries; it counts as done on resume."""
    return {
        "run_id": run_id,
        "kind": "prompt",
        "prompt_id": record.prompt_id,
        "source": record.source or None,
        "line": record.line or None,
        "field": None,
        "reason": reason,
        "attempts": attempts,
        "raw": None,
    }
