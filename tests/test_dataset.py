"""Readers of a run see exactly the committed files: never a file a crashed session published.
A script that reads a run exits cleanly, and ``load_dataset`` works offline on S3 too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image
from test_writer import crash_before_commit_record, image_of, rows_for

from schemas.tables import ERRORS, PAIRS, SAMPLES, STEPS
from workflows.output.dataset import committed_files, load_dataset, read_table
from workflows.output.writer import ShardWriter

ROOT = Path(__file__).resolve().parent.parent
ORPHAN = "samples/part-w-1-00001.parquet"
COMMITTED = ["samples/part-w-00000.parquet", "samples/part-w-00001.parquet", "samples/part-w-1-00000.parquet"]


def crashed_run(uri: str) -> None:
    """Writer ``w-1`` commits p0 then dies after publishing p1's files; ``w`` commits p5, p6."""
    crashed = ShardWriter(uri, "run", shard_rows=3, writer_id="w-1")
    crashed.add(rows_for(0))
    crashed.flush()
    crash_before_commit_record(crashed)
    crashed.add(rows_for(1))
    with pytest.raises(RuntimeError, match="a commit failed"):
        crashed.close()
    with ShardWriter(uri, "run", shard_rows=3, writer_id="w") as other:
        other.add(rows_for(5))
        other.add(rows_for(6))


def sample_ids(prompts: tuple[int, ...]) -> list[str]:
    return sorted(f"p{i}/0/0/{c}" for i in prompts for c in range(3))


def test_the_orphan_of_a_crash_is_on_disk_but_not_read(tmp_path: Path) -> None:
    crashed_run(str(tmp_path))
    run = tmp_path / "run"
    assert (run / ORPHAN).exists()
    assert committed_files(str(run), "samples") == [str(run / name) for name in COMMITTED]
    steps_files = [str(run / name.replace("samples", "steps")) for name in COMMITTED]
    assert committed_files(f"{run}/", "steps") == steps_files

    samples = read_table(str(run), "samples")
    assert samples.schema.equals(SAMPLES, check_metadata=True)
    assert sorted(samples["sample_id"].to_pylist()) == sample_ids((0, 5, 6))
    steps = read_table(str(run), "steps", columns=["prompt_id", "step"])
    assert steps.column_names == ["prompt_id", "step"]
    assert sorted(steps["prompt_id"].to_pylist()) == ["p0", "p0", "p5", "p5", "p6", "p6"]
    errors = read_table(str(run), "errors")  # one empty file, committed by w's close
    assert errors.num_rows == 0 and errors.schema.equals(ERRORS, check_metadata=True)


def test_load_dataset_decodes_the_committed_images(tmp_path: Path) -> None:
    crashed_run(str(tmp_path / "out"))
    loaded = load_dataset(str(tmp_path / "out" / "run"), cache_dir=str(tmp_path / "hf"))
    assert sorted(loaded["sample_id"]) == sample_ids((0, 5, 6))
    row = next(r for r in loaded if r["sample_id"] == "p5/0/0/2")
    assert isinstance(row["image"], Image.Image)
    np.testing.assert_array_equal(np.asarray(row["image"]), image_of(5, 2))
    assert row["image_tokens"] == [2, 3, 4, 5]


def test_a_table_with_nothing_committed_is_empty_with_its_schema(tmp_path: Path) -> None:
    with ShardWriter(str(tmp_path), "run") as writer:
        writer.add_errors([])  # no rows at all: close commits one empty file per table
    run = str(tmp_path / "run")
    assert committed_files(run, "pairs") == []
    assert len(committed_files(run, "steps")) == 1
    for table, schema in (("pairs", PAIRS), ("steps", STEPS)):
        empty = read_table(run, table)
        assert empty.num_rows == 0 and empty.schema.equals(schema, check_metadata=True)
    loaded = load_dataset(run, "steps")
    assert len(loaded) == 0 and isinstance(loaded.features["preview"], datasets.Image)


def test_a_missing_run_or_an_unknown_table_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=f"run {missing}: no commit records at {missing}/_commits"):
        committed_files(str(missing), "samples")
    (tmp_path / "bare" / "samples").mkdir(parents=True)  # files without records are not a run
    with pytest.raises(FileNotFoundError, match="bare/_commits"):
        read_table(str(tmp_path / "bare"), "samples")
    with pytest.raises(ValueError, match="no table 'sample'"):
        committed_files(str(missing), "sample")


@pytest.mark.s3
def test_an_s3_run_reads_only_its_committed_files(s3_server: dict[str, str], tmp_path: Path) -> None:
    import boto3
    import s3fs

    boto3.client("s3").create_bucket(Bucket="reads")
    crashed_run("s3://reads/out")
    run = "s3://reads/out/run"
    assert s3fs.S3FileSystem().exists(f"{run}/{ORPHAN}")
    assert committed_files(run, "samples") == [f"{run}/{name}" for name in COMMITTED]
    assert sorted(read_table(run, "samples")["sample_id"].to_pylist()) == sample_ids((0, 5, 6))
    loaded = load_dataset(run, storage_options={"anon": False}, cache_dir=str(tmp_path / "hf"))
    row = next(r for r in loaded if r["sample_id"] == "p0/0/0/1")
    np.testing.assert_array_equal(np.asarray(row["image"]), image_of(0, 1))


NO_PYTHON_FILESYSTEM = """
import pyarrow.fs

def refuse(*args, **kwargs):
    raise AssertionError("a reader wrapped a Python filesystem in pyarrow (PyFileSystem)")

pyarrow.fs.PyFileSystem = refuse
"""
"""The abort at exit is a race (frequent, not certain), so the scripts also refuse its cause."""

READ_TABLE = """
import json, sys
from workflows.output.dataset import read_table

table = read_table(sys.argv[1], "samples")
print(json.dumps({
    "ids": sorted(table["sample_id"].to_pylist()),
    "tokens": sorted(table["image_tokens"].to_pylist()),
}))
"""

LOAD_DATASET = """
import json, sys
import numpy as np
from workflows.output.dataset import load_dataset

loaded = load_dataset(sys.argv[1], cache_dir=sys.argv[2])
row = next(r for r in loaded if r["sample_id"] == "p5/0/0/2")
print(json.dumps({"ids": sorted(loaded["sample_id"]), "image": np.asarray(row["image"]).tolist()}))
"""


def in_a_script(code: str, run: str, cache: Path) -> dict:
    """What a pipeline step sees: a fresh interpreter (offline, as on a cluster without hub
    access) that reads the run and must exit 0. One reader per script: a later ``datasets``
    load can mask the abort at exit that a bare ``read_table`` can cause."""
    done = subprocess.run(
        [sys.executable, "-c", NO_PYTHON_FILESYSTEM + code, run, str(cache)],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-3000:]}"
    return json.loads(done.stdout)


def assert_read_back_in_scripts(run: str, cache: Path) -> None:
    table = in_a_script(READ_TABLE, run, cache)
    assert table["ids"] == sample_ids((0, 5, 6))
    assert table["tokens"] == sorted([c, c + 1, c + 2, c + 3] for _ in (0, 5, 6) for c in range(3))
    loaded = in_a_script(LOAD_DATASET, run, cache)
    assert loaded["ids"] == sample_ids((0, 5, 6))
    assert loaded["image"] == image_of(5, 2).tolist()


def test_a_script_reading_a_local_run_exits_cleanly(tmp_path: Path) -> None:
    crashed_run(str(tmp_path / "out"))
    assert_read_back_in_scripts(str(tmp_path / "out" / "run"), tmp_path / "hf")


@pytest.mark.s3
def test_a_script_reading_an_s3_run_offline_exits_cleanly(s3_server: dict[str, str], tmp_path: Path) -> None:
    import boto3

    boto3.client("s3").create_bucket(Bucket="offline")
    crashed_run("s3://offline/out")
    assert_read_back_in_scripts("s3://offline/out/run", tmp_path / "hf")
