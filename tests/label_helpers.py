"""Shared by the label tests: run the entry point and read back what it wrote."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from workflows.output.dataset import read_table

ROOT = Path(__file__).resolve().parent.parent
TOY = str(ROOT / "configs" / "toy.yaml")
SMOKE = str(ROOT / "configs" / "smoke.yaml")
PROMPTS = ROOT / "configs" / "prompts" / "smoke.jsonl"
SMOKE_PROMPTS = [json.loads(line)["prompt"] for line in PROMPTS.read_text().splitlines() if line.strip()]


def read(run_dir: Path, table: str) -> pa.Table:
    return pq.read_table(run_dir / table)


def prompts_written(run_dir: Path) -> Counter[str]:
    """How many times each prompt's search was written: its samples per image index must be one search."""
    samples = read(run_dir, "samples").to_pylist()
    return Counter((r["prompt"], r["image_index"], r["candidate"], r["round"]) for r in samples)


def run_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def committed_samples(run: str, storage_options: dict | None = None) -> dict[str, tuple]:
    """sample id -> (prompt id, PNG bytes, token ids, outcome, selected) of what the run committed,
    read as a reader reads it (through the commit records, never a listing), so a fault test
    compares exactly what a user of the run would get with the uninterrupted run's."""
    columns = ["sample_id", "prompt_id", "image", "image_tokens", "outcome", "selected"]
    rows = read_table(run, "samples", columns=columns, storage_options=storage_options).to_pylist()
    samples = {
        r["sample_id"]: (
            r["prompt_id"],
            r["image"]["bytes"],
            tuple(r["image_tokens"]),
            r["outcome"],
            r["selected"],
        )
        for r in rows
    }
    assert len(samples) == len(rows), "a sample was committed twice"
    return samples


def prompt_ids(samples: dict[str, tuple]) -> set[str]:
    return {prompt for prompt, *_ in samples.values()}


def without(samples: dict[str, tuple], prompts: set[str]) -> dict[str, tuple]:
    """``samples`` less those of ``prompts``."""
    return {key: value for key, value in samples.items() if value[0] not in prompts}
