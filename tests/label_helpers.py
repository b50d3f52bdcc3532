"""Shared by the label tests: run the entry point and read back what it wrote."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

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
