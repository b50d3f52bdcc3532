"""Search results become table rows: exact column values, lossless images and tokens."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from actors.interfaces import UNKNOWN
from actors.toy import ToyGenerator, ToyJudge
from schemas.config import SearchConfig
from schemas.prompts import BadRow, PromptRecord
from schemas.tables import ERRORS, SAMPLES, STEPS
from workflows.output.rows import RAW_LIMIT, input_error_row, prompt_error_row, prompt_rows
from workflows.search import run_search, tasks_for
from workflows.search.types import Candidate, Cost, SearchResult, SearchTask, TraceRow
from workflows.serving.clients import LocalGeneratorClient, LocalJudgeClient

RECORD = PromptRecord("p7", "a red cube", {"tag": "color", "include": [{"class": "cube"}]}, "in.jsonl", 7)


def pixels(width: int, height: int, offset: int) -> np.ndarray:
    """A non-square image whose every pixel differs, so a transposed or lossy encode shows."""
    values = (np.arange(height * width * 3) + offset) % 256
    return values.astype(np.uint8).reshape(height, width, 3)


def decode(struct: dict) -> np.ndarray:
    assert struct["path"] is None
    return np.asarray(Image.open(io.BytesIO(struct["bytes"])).convert("RGB"))


def hand_results() -> list[tuple[SearchTask, SearchResult]]:
    first = SearchResult(
        candidates=[
            Candidate(0, 11, pixels(6, 4, 0), np.array([5, 9, 200, 3]), outcome=0.9, selected=True, rank=0),
            Candidate(
                1,
                12,
                pixels(6, 4, 50),
                np.array([7, UNKNOWN, UNKNOWN, UNKNOWN]),
                potential=0.2,
                clarity_step=1,
                pruned_at=1,
                rank=1,
            ),
        ],
        trace=[
            TraceRow(0, 1, "clarity", 0.8, True, preview=pixels(32, 16, 3), elapsed_ms=1.5, p_no=0.15),
            TraceRow(1, 1, "potential", 0.2, False, preview=pixels(32, 16, 4), elapsed_ms=2.5),
        ],
        cost=Cost(nfe=5, judge_calls=3, paths_pruned=1, steps_saved=2),
    )
    second = SearchResult(
        candidates=[
            Candidate(
                0,
                21,
                pixels(6, 4, 99),
                np.array([1, 2, 3, 4]),
                round=1,
                prompt="a red cube, redder",
                reflection="not red enough",
                selected=True,
            )
        ],
        cost=Cost(nfe=4, judge_calls=1),
    )
    return [(SearchTask("p7", "a red cube", 0, 11), first), (SearchTask("p7", "a red cube", 1, 21), second)]


def test_sample_rows_carry_every_column() -> None:
    rows = prompt_rows("run1", RECORD, hand_results(), strategy="parm", generator="gen@1", judge="judge@2")
    assert rows.prompt_id == "p7" and rows.errors == []
    assert [r["sample_id"] for r in rows.samples] == ["p7/0/0/0", "p7/0/0/1", "p7/1/1/0"]
    kept, pruned, reflected = rows.samples
    assert kept["run_id"] == "run1" and kept["prompt"] == "a red cube"
    assert json.loads(kept["metadata"]) == RECORD.metadata
    assert (kept["image_index"], kept["candidate"], kept["round"], kept["seed"]) == (0, 0, 0, 11)
    assert (kept["width"], kept["height"]) == (6, 4)
    assert (kept["outcome"], kept["selected"], kept["rank"], kept["pruned_at"]) == (0.9, True, 0, None)
    assert (kept["strategy"], kept["generator"], kept["judge"]) == ("parm", "gen@1", "judge@2")
    assert kept["generated_prompt"] is None and kept["reflection"] is None
    assert (pruned["potential"], pruned["clarity_step"], pruned["pruned_at"]) == (0.2, 1, 1)
    assert pruned["image_tokens"] == [7, -1, -1, -1]
    for row in (kept, pruned):
        assert (row["nfe"], row["judge_calls"], row["paths_pruned"], row["steps_saved"]) == (5, 3, 1, 2)
    assert (reflected["nfe"], reflected["judge_calls"], reflected["paths_pruned"]) == (4, 1, 0)
    assert reflected["generated_prompt"] == "a red cube, redder"
    assert reflected["reflection"] == "not red enough"
    assert (reflected["image_index"], reflected["round"], reflected["seed"]) == (1, 1, 21)


def test_images_and_tokens_round_trip_through_arrow() -> None:
    results = hand_results()
    rows = prompt_rows("run1", RECORD, results, strategy="parm", generator="g", judge=None)
    table = pa.Table.from_pylist(rows.samples, schema=SAMPLES)
    table.validate(full=True)
    candidates = [c for _, result in results for c in result.candidates]
    for row, candidate in zip(table.to_pylist(), candidates, strict=True):
        np.testing.assert_array_equal(decode(row["image"]), candidate.image)
        assert row["image_tokens"] == candidate.tokens.tolist()
    assert table.schema.field("image_tokens").type == pa.list_(pa.int32())


def test_steps_rows_and_previews_only_when_asked() -> None:
    plain = prompt_rows("run1", RECORD, hand_results(), strategy="parm", generator="g", judge="j")
    assert [
        (r["candidate"], r["step"], r["question"], r["p_yes"], r["p_no"], r["decision"]) for r in plain.steps
    ] == [
        (0, 1, "clarity", 0.8, 0.15, True),
        (1, 1, "potential", 0.2, None, False),  # a trace row without P(no) leaves the column null
    ]
    assert all(r["preview"] is None and r["image_index"] == 0 and r["round"] == 0 for r in plain.steps)
    assert [r["elapsed_ms"] for r in plain.steps] == [1.5, 2.5]
    with_previews = prompt_rows(
        "run1",
        RECORD,
        hand_results(),
        strategy="parm",
        generator="g",
        judge="j",
        previews_in_steps=True,
        thumbnail=8,
    )
    pa.Table.from_pylist(with_previews.steps, schema=STEPS).validate(full=True)
    thumb = decode(with_previews.steps[0]["preview"])
    assert thumb.shape == (4, 8, 3)  # 32x16 fitted into 8 px, aspect kept
    assert with_previews.nbytes > plain.nbytes


def test_nbytes_counts_the_encoded_images() -> None:
    rows = prompt_rows("run1", RECORD, hand_results(), strategy="parm", generator="g", judge="j")
    image_bytes = sum(len(r["image"]["bytes"]) for r in rows.samples)
    assert image_bytes < rows.nbytes < image_bytes + 2000


def test_bad_image_and_wrong_prompt_are_named() -> None:
    task, result = hand_results()[0]
    result.candidates[1].image = np.zeros((4, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"prompt 'p7' image 0 candidate 1: image must be a uint8"):
        prompt_rows("r", RECORD, [(task, result)], strategy="parm", generator="g", judge="j")
    other = SearchTask("p8", "x", 0, 1)
    with pytest.raises(ValueError, match="'p8' handed in with prompt 'p7'"):
        prompt_rows("r", RECORD, [(other, SearchResult([]))], strategy="parm", generator="g", judge="j")


def test_error_rows() -> None:
    bad = input_error_row("r", BadRow("in.jsonl", 3, "prompt", "missing", "x" * (RAW_LIMIT + 10)))
    failed = prompt_error_row("r", RECORD, "judge died", 3)
    pa.Table.from_pylist([bad, failed], schema=ERRORS).validate(full=True)
    assert (bad["kind"], bad["prompt_id"], bad["source"], bad["line"], bad["field"]) == (
        "input",
        None,
        "in.jsonl",
        3,
        "prompt",
    )
    assert bad["reason"] == "missing" and len(bad["raw"]) == RAW_LIMIT
    assert (failed["kind"], failed["prompt_id"], failed["source"], failed["line"]) == (
        "prompt",
        "p7",
        "in.jsonl",
        7,
    )
    assert (failed["reason"], failed["attempts"], failed["raw"]) == ("judge died", 3, None)


def test_rows_of_a_toy_parm_search_keep_its_pixels_and_tokens() -> None:
    """A real search on the toy models: the toy's red channel is the mean of the decided tokens,
    so every decoded image must agree with the tokens stored beside it."""
    cfg = SearchConfig(strategy="parm", n=3, images_per_prompt=2, previews_in_steps=True)

    async def search() -> list[tuple[SearchTask, SearchResult]]:
        gen, judge = LocalGeneratorClient(ToyGenerator()), LocalJudgeClient(ToyJudge())
        return [(task, await run_search(task, gen, judge, cfg)) for task in tasks_for(RECORD, cfg)]

    results = asyncio.run(search())
    rows = prompt_rows(
        "run1",
        RECORD,
        results,
        strategy="parm",
        generator="toy",
        judge="toy-judge",
        previews_in_steps=True,
        thumbnail=4,
    )
    assert len(rows.samples) == 6 and len(rows.steps) == sum(len(r.trace) for _, r in results)
    assert all(r["preview"] is not None for r in rows.steps)
    for (task, result), image_rows in zip(results, (rows.samples[:3], rows.samples[3:]), strict=True):
        assert [r["selected"] for r in image_rows].count(True) == 1
        assert {r["seed"] for r in image_rows} == {task.seed}
        for row, candidate in zip(image_rows, result.candidates, strict=True):
            assert row["nfe"] == result.cost.nfe and row["paths_pruned"] == result.cost.paths_pruned
            assert row["pruned_at"] == candidate.pruned_at
            np.testing.assert_array_equal(decode(row["image"]), candidate.image)
            tokens = np.array(row["image_tokens"])
            assert round(tokens[tokens != UNKNOWN].mean()) == decode(row["image"])[0, 0, 0]
    assert any(r["pruned_at"] is not None and UNKNOWN in r["image_tokens"] for r in rows.samples)
