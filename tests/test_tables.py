"""The output tables: versioned Arrow schemas whose Parquet files `datasets` reads as images."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from schemas.tables import SAMPLES, SCHEMA_VERSION, TABLES


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 60)).save(buffer, format="PNG")
    return buffer.getvalue()


def sample_row(**changes: Any) -> dict[str, Any]:
    row = {
        "run_id": "run-1",
        "sample_id": "run-1/p1/0/2/0",
        "prompt_id": "p1",
        "prompt": "a photo of a cat",
        "metadata": '{"tag": "single_object"}',
        "image_index": 0,
        "candidate": 2,
        "round": 0,
        "seed": 2**40 + 3,
        "strategy": "parm",
        "generated_prompt": None,
        "reflection": None,
        "image": {"bytes": png(24, 16), "path": None},
        "image_tokens": [0, 8191, -1, 2**31 - 1],
        "width": 24,
        "height": 16,
        "outcome": 0.75,
        "potential": 0.6,
        "clarity_step": 9,
        "selected": True,
        "rank": 0,
        "pruned_at": None,
        "generator": "showo@tiny",
        "judge": "llava@tiny",
        "nfe": 72,
        "judge_calls": 40,
        "paths_pruned": 1,
        "steps_saved": 9,
    }
    row.update(changes)
    return row


def test_samples_parquet_decodes_through_datasets(tmp_path: Path) -> None:
    path = tmp_path / "part-0-0.parquet"
    pq.write_table(pa.Table.from_pylist([sample_row()], schema=SAMPLES), path)

    dataset = datasets.Dataset.from_parquet(str(path), cache_dir=str(tmp_path / "hf-cache"))
    (row,) = dataset

    assert isinstance(row["image"], Image.Image)
    assert row["image"].size == (24, 16)
    assert row["image"].getpixel((3, 5)) == (200, 30, 60)
    assert row["image_tokens"] == [0, 8191, -1, 2**31 - 1]
    assert row["seed"] == 2**40 + 3 and row["selected"] is True and row["pruned_at"] is None
    assert dataset.data.schema.field("image_tokens").type == pa.list_(pa.int32())


def test_tokens_are_stored_as_int32(tmp_path: Path) -> None:
    path = tmp_path / "part-0-0.parquet"
    pq.write_table(pa.Table.from_pylist([sample_row()], schema=SAMPLES), path)

    table = pq.read_table(path)
    assert table.schema.field("image_tokens").type == pa.list_(pa.int32())
    assert table.column("image_tokens").to_pylist() == [[0, 8191, -1, 2**31 - 1]]
    with pytest.raises(pa.ArrowInvalid):  # a token id beyond int32 is refused, not wrapped
        pa.Table.from_pylist([sample_row(image_tokens=[2**31])], schema=SAMPLES)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_table_carries_its_name_and_version(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.parquet"
    pq.write_table(TABLES[name].empty_table(), path)

    metadata = pq.read_schema(path).metadata
    assert metadata[b"parmflow.table"] == name.encode()
    assert metadata[b"parmflow.schema_version"] == str(SCHEMA_VERSION).encode()


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_table_has_datasets_features_for_each_column(name: str) -> None:
    schema = TABLES[name]
    features = datasets.Features.from_arrow_schema(schema)

    assert list(features) == schema.names
    images = [column for column, feature in features.items() if isinstance(feature, datasets.Image)]
    assert images == [
        f.name for f in schema if f.type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    ]
