"""The shard writer: rotation, prompts kept whole, exactly-once commits across crashes, S3."""

from __future__ import annotations

import io
import json
import os
import posixpath
import threading
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.fs as arrow_fs
import pyarrow.parquet as pq
import pytest
from PIL import Image

from schemas.prompts import BadRow, PromptRecord
from schemas.tables import ERRORS, SAMPLES, STEPS
from workflows.output.rows import PromptRows, input_error_row, prompt_error_row, prompt_rows
from workflows.output.writer import ShardWriter
from workflows.search.types import Candidate, Cost, SearchResult, SearchTask, TraceRow

TABLES = {"samples": SAMPLES, "steps": STEPS, "errors": ERRORS}


def image_of(prompt_index: int, candidate: int) -> np.ndarray:
    return np.full((4, 5, 3), (prompt_index * 16 + candidate) % 256, dtype=np.uint8)


def rows_for(prompt_index: int, samples: int = 3, steps: int = 2) -> PromptRows:
    record = PromptRecord(f"p{prompt_index}", f"prompt {prompt_index}")
    result = SearchResult(
        [Candidate(c, prompt_index, image_of(prompt_index, c), np.arange(4) + c) for c in range(samples)],
        [TraceRow(0, s, "clarity", 0.5, True) for s in range(steps)],
        Cost(nfe=samples),
    )
    task = SearchTask(record.prompt_id, record.prompt, 0, prompt_index)
    return prompt_rows("run", record, [(task, result)], strategy="sample", generator="toy", judge=None)


def table_files(run: Path, table: str) -> list[str]:
    return sorted(os.listdir(run / table))


def prompts_by_file(run: Path, table: str) -> dict[str, set[str]]:
    return {
        name: set(pq.read_table(run / table / name, columns=["prompt_id"])["prompt_id"].to_pylist())
        for name in table_files(run, table)
    }


def test_shards_rotate_by_rows_and_keep_each_prompt_whole(tmp_path: Path) -> None:
    writer = ShardWriter(str(tmp_path), "run", shard_rows=6)
    for i in range(7):
        writer.add(rows_for(i))
    writer.close()
    run = tmp_path / "run"
    assert table_files(run, "samples") == [f"part-0-{seq:05d}.parquet" for seq in range(4)]
    samples, steps = prompts_by_file(run, "samples"), prompts_by_file(run, "steps")
    assert samples == steps
    assert list(samples.values()) == [{"p0", "p1"}, {"p2", "p3"}, {"p4", "p5"}, {"p6"}]
    assert writer.committed_prompt_ids() == {f"p{i}" for i in range(7)}
    assert (writer.prompts_written, writer.shards_written) == (7, 5)  # + one empty errors file
    assert writer.rows_written == {"steps": 14, "errors": 0, "samples": 21}
    assert not (run / "_staging" / "0").exists() or not os.listdir(run / "_staging" / "0")


def test_a_shard_exceeds_its_row_limit_only_for_one_large_prompt(tmp_path: Path) -> None:
    with ShardWriter(str(tmp_path), "run", shard_rows=5) as writer:
        for i, samples in enumerate((2, 2, 3, 7, 1)):
            writer.add(rows_for(i, samples=samples))
    run = tmp_path / "run"
    assert list(prompts_by_file(run, "samples").values()) == [{"p0", "p1"}, {"p2"}, {"p3"}, {"p4"}]
    sizes = [pq.read_metadata(run / "samples" / name).num_rows for name in table_files(run, "samples")]
    assert sizes == [4, 3, 7, 1]


def test_shards_rotate_by_bytes(tmp_path: Path) -> None:
    one = max(rows_for(i).nbytes for i in range(5))
    with ShardWriter(str(tmp_path), "run", shard_rows=1000, shard_bytes=2 * one) as writer:
        for i in range(5):
            writer.add(rows_for(i))
    assert list(prompts_by_file(tmp_path / "run", "samples").values()) == [{"p0", "p1"}, {"p2", "p3"}, {"p4"}]


def test_output_reads_back_with_pyarrow_and_datasets(tmp_path: Path) -> None:
    import datasets

    with ShardWriter(str(tmp_path), "run", shard_rows=4) as writer:
        for i in range(3):
            writer.add(rows_for(i))
        writer.add_errors([input_error_row("run", BadRow("in.jsonl", 9, "prompt", "empty"))])
    run = tmp_path / "run"
    for table, schema in TABLES.items():
        dataset = ds.dataset(run / table, format="parquet")
        assert dataset.schema.equals(schema, check_metadata=True)
    samples = ds.dataset(run / "samples", format="parquet").to_table().sort_by("sample_id")
    assert samples.num_rows == 9 and ds.dataset(run / "steps").count_rows() == 6
    loaded = datasets.load_dataset(
        "parquet", data_dir=str(run / "samples"), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert len(loaded) == 9
    row = next(r for r in loaded if r["sample_id"] == "p2/0/0/1")
    assert isinstance(row["image"], Image.Image)
    np.testing.assert_array_equal(np.asarray(row["image"]), image_of(2, 1))
    assert row["image_tokens"] == [1, 2, 3, 4]
    errors = datasets.load_dataset(
        "parquet", data_dir=str(run / "errors"), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert errors["line"] == [9]


def test_empty_tables_stay_readable(tmp_path: Path) -> None:
    """A table with no rows gets one file without row groups: pyarrow reads it, and ``datasets``
    reads the table once a later writer adds rows beside it."""
    import datasets

    with ShardWriter(str(tmp_path), "run") as writer:
        writer.add_errors([input_error_row("run", BadRow("in.jsonl", 2, None, "not JSON"))])
    run = tmp_path / "run"
    assert ds.dataset(run / "samples", format="parquet").to_table().num_rows == 0
    assert ds.dataset(run / "steps", format="parquet").schema.equals(STEPS, check_metadata=True)
    assert writer.committed_input_errors() == {("in.jsonl", 2)}
    with ShardWriter(str(tmp_path), "run") as resumed:
        resumed.add(rows_for(3))
    assert len(table_files(run, "samples")) == 2
    loaded = datasets.load_dataset(
        "parquet", data_dir=str(run / "samples"), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert sorted(loaded["sample_id"]) == ["p3/0/0/0", "p3/0/0/1", "p3/0/0/2"]


def test_prompt_errors_count_as_committed(tmp_path: Path) -> None:
    failed = prompt_error_row("run", PromptRecord("p9", "x"), "replica died", 3)
    with ShardWriter(str(tmp_path), "run") as writer:
        writer.add(rows_for(1))
        writer.add(PromptRows("p8", [], [], [prompt_error_row("run", PromptRecord("p8", "y"), "oom", 2)]))
        writer.add_errors([failed, input_error_row("run", BadRow("a.txt", 4, None, "blank"))])
    again = ShardWriter(str(tmp_path), "run")
    assert again.committed_prompt_ids() == {"p1", "p8", "p9"}
    assert again.committed_input_errors() == {("a.txt", 4)}
    again.close()


def test_add_returns_while_a_shard_is_being_written(tmp_path: Path) -> None:
    writer = ShardWriter(str(tmp_path), "run", shard_rows=1)
    started, gate = threading.Event(), threading.Event()
    publish = writer._publish

    def slow_publish(path: str, data: bytes) -> None:
        started.set()
        assert gate.wait(30)
        publish(path, data)

    writer._publish = slow_publish  # type: ignore[method-assign]
    writer.add(rows_for(0))
    assert started.wait(30)
    writer.add(rows_for(1))  # the first shard is still blocked in storage
    assert writer.shards_written == 0
    gate.set()
    writer.close()
    assert writer.committed_prompt_ids() == {"p0", "p1"}


def test_commit_errors_reach_the_caller(tmp_path: Path) -> None:
    writer = ShardWriter(str(tmp_path), "run")

    def failing_publish(path: str, data: bytes) -> None:
        raise OSError("disk full")

    writer._publish = failing_publish  # type: ignore[method-assign]
    writer.add(rows_for(0))
    with pytest.raises(RuntimeError, match="a commit failed") as caught:
        writer.flush()
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(RuntimeError, match="a commit failed"):
        writer.add(rows_for(1))
    with pytest.raises(RuntimeError, match="a commit failed"):
        writer.close()
    assert writer.committed_prompt_ids() == set()


def crash_before_commit_record(writer: ShardWriter) -> None:
    """Let table files land but fail the commit record, as a driver killed between the two."""
    publish = writer._publish

    def publish_tables_only(path: str, data: bytes) -> None:
        if "/_commits/" in path:
            raise KeyboardInterrupt
        publish(path, data)

    writer._publish = publish_tables_only  # type: ignore[method-assign]


def test_a_crash_before_the_commit_record_is_cleaned_and_redone(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = ShardWriter(str(tmp_path), "run", shard_rows=3, writer_id="w-1")
    first.add(rows_for(0))
    first.flush()
    crash_before_commit_record(first)
    first.add(rows_for(1))
    with pytest.raises(RuntimeError):
        first.close()
    assert "part-w-1-00001.parquet" in table_files(run, "samples")  # visible but not committed
    (run / "_staging" / "w-1").mkdir(parents=True, exist_ok=True)
    (run / "_staging" / "w-1" / "samples--part-w-1-00002.parquet").write_bytes(b"half a file")
    other = ShardWriter(str(tmp_path), "run", writer_id="w")  # another writer's files stay
    other.add(rows_for(5))
    other.close()

    second = ShardWriter(str(tmp_path), "run", shard_rows=3, writer_id="w-1")
    assert second.committed_prompt_ids() == {"p0", "p5"}
    assert table_files(run, "samples") == ["part-w-00000.parquet", "part-w-1-00000.parquet"]
    assert not (run / "_staging" / "w-1").exists()
    second.add(rows_for(1))
    second.close()
    assert "part-w-1-00001.parquet" in table_files(run, "samples")
    samples = ds.dataset(run / "samples", format="parquet").to_table()
    assert sorted(samples["sample_id"].to_pylist()) == sorted(
        f"p{i}/0/0/{c}" for i in (0, 1, 5) for c in range(3)
    )


def test_sequence_continues_after_committed_shards(tmp_path: Path) -> None:
    with ShardWriter(str(tmp_path), "run", shard_rows=1) as writer:
        writer.add(rows_for(0))
        writer.add(rows_for(1))
    with ShardWriter(str(tmp_path), "run", shard_rows=1) as writer:
        writer.add(rows_for(2))
    records = sorted(os.listdir(tmp_path / "run" / "_commits"))
    assert records == [f"0-{seq:05d}.json" for seq in range(4)]  # seq 2: the empty errors file
    last = json.loads((tmp_path / "run" / "_commits" / "0-00003.json").read_text())
    assert (last["prompt_ids"], last["files"]["samples"]) == (["p2"], "samples/part-0-00003.parquet")


def test_run_json_round_trip(tmp_path: Path) -> None:
    writer = ShardWriter(str(tmp_path / "out"), "run")
    assert writer.read_run_json() is None
    info = {"config": {"search": {"n": 4}}, "counts": {"prompts": 3}, "started": "2026-01-01T00:00:00"}
    writer.write_run_json(info)
    writer.close()
    assert ShardWriter(str(tmp_path / "out"), "run").read_run_json() == info


def test_bad_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="run id 'a/b'"):
        ShardWriter(str(tmp_path), "a/b")
    with pytest.raises(ValueError, match="writer id ''"):
        ShardWriter(str(tmp_path), "run", writer_id="")


@pytest.mark.s3
def test_s3_output_reads_back_and_resumes(s3_server: dict[str, str]) -> None:
    import boto3
    import s3fs

    boto3.client("s3").create_bucket(Bucket="labels")
    uri = "s3://labels/out"
    writer = ShardWriter(uri, "run", shard_rows=3)
    writer.write_run_json({"run_id": "run"})
    for i in range(3):
        writer.add(rows_for(i))
    writer.close()
    crashed = ShardWriter(uri, "run", shard_rows=3)
    crash_before_commit_record(crashed)
    crashed.add(rows_for(3))
    with pytest.raises(RuntimeError):
        crashed.close()

    fs = s3fs.S3FileSystem()
    assert "labels/out/run/samples/part-0-00004.parquet" in fs.ls("labels/out/run/samples", refresh=True)
    resumed = ShardWriter(uri, "run")
    assert resumed.committed_prompt_ids() == {"p0", "p1", "p2"}
    assert resumed.read_run_json() == {"run_id": "run"}
    resumed.close()
    endpoint = s3_server["AWS_ENDPOINT_URL"].removeprefix("http://")
    s3 = arrow_fs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1")  # pyarrow's own
    samples = ds.dataset("labels/out/run/samples", filesystem=s3, format="parquet").to_table()
    assert sorted(set(samples["prompt_id"].to_pylist())) == ["p0", "p1", "p2"]
    assert samples.schema.equals(SAMPLES, check_metadata=True)
    first = samples.filter(ds.field("sample_id") == "p1/0/0/2").to_pylist()[0]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(first["image"]["bytes"]))), image_of(1, 2))
    for table in ("steps", "errors"):
        assert ds.dataset(posixpath.join("labels/out/run", table), filesystem=s3).schema.equals(TABLES[table])
