"""The smoke recipe end to end on the tiny real models: to a local directory, to S3, and as a
``ray job submit`` to a real head node; the output read back with pyarrow and ``datasets``."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from label_helpers import ROOT, SMOKE, SMOKE_PROMPTS, prompts_written, read, run_json

from workflows.label import main

pytestmark = pytest.mark.ray
PER_PROMPT = 2  # search.n x images_per_prompt in configs/smoke.yaml


def assert_complete(samples: list[dict]) -> None:
    assert sorted({r["prompt"] for r in samples}) == sorted(SMOKE_PROMPTS)
    assert len(samples) == len(SMOKE_PROMPTS) * PER_PROMPT
    judge = "llava(tiny:llava, layout=pad, score=raw)"
    assert all(r["generator"].startswith("showo(tiny:showo") and r["judge"] == judge for r in samples)
    assert all(r["image"]["bytes"].startswith(b"\x89PNG") for r in samples)
    assert sum(r["selected"] for r in samples) == len(SMOKE_PROMPTS)  # PARM picks one per search


def test_smoke_recipe_to_a_local_directory_reads_back_with_pyarrow_and_datasets(
    ray_cluster: None, tmp_path: Path
) -> None:
    import datasets

    assert main(["--config", SMOKE, "--output", str(tmp_path), "--run-id", "s"]) == 0
    run_dir = tmp_path / "s"
    assert_complete(read(run_dir, "samples").to_pylist())
    assert set(prompts_written(run_dir).values()) == {1}
    steps = read(run_dir, "steps").to_pylist()
    assert {r["question"] for r in steps} >= {"clarity", "potential"}
    tags = {json.loads(r["metadata"])["tag"] for r in read(run_dir, "samples").to_pylist()}
    assert tags == {"single_object", "two_object", "counting", "colors", "position", "color_attr"}
    assert run_json(run_dir)["counts"]["images"] == len(SMOKE_PROMPTS) * PER_PROMPT
    samples = read(run_dir, "samples").to_pylist()
    # the tiny judge answers like a trained one, so the smoke run reaches PARM's every branch
    assert any(r["pruned_at"] is not None for r in samples)
    assert any(r["selected"] and r["potential"] >= 0.5 for r in samples)  # a survivor was chosen

    table = datasets.load_dataset(
        "parquet",
        data_files=str(run_dir / "samples" / "*.parquet"),
        split="train",
        cache_dir=str(tmp_path / "hf"),
    )
    image = table[0]["image"]
    side = table[0]["width"]
    assert image.size == (side, side) and image.mode == "RGB"


def test_janus_smoke_recipe_in_process(tmp_path: Path) -> None:
    janus = str(ROOT / "configs" / "smoke_janus.yaml")
    assert (
        main(["--config", janus, "--output", str(tmp_path), "--run-id", "j", "--run.backend", "local"]) == 0
    )
    samples = read(tmp_path / "j", "samples").to_pylist()
    assert sorted({r["prompt"] for r in samples}) == sorted(SMOKE_PROMPTS)
    assert all(r["generator"].startswith("janus(tiny:janus") for r in samples)
    assert sum(r["selected"] for r in samples) == len(SMOKE_PROMPTS)
    assert all(-1 not in r["image_tokens"] for r in samples if r["pruned_at"] is None)


@pytest.mark.s3
def test_smoke_recipe_to_s3(ray_cluster: None, s3_server: dict[str, str], tmp_path: Path) -> None:
    import boto3
    from pyarrow import fs

    boto3.client("s3").create_bucket(Bucket="smoke")
    assert main(["--config", SMOKE, "--output", "s3://smoke/runs", "--run-id", "s3"]) == 0
    endpoint = s3_server["AWS_ENDPOINT_URL"].removeprefix("http://")
    s3 = fs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1")
    samples = pq.read_table("smoke/runs/s3/samples", filesystem=s3).to_pylist()
    assert_complete(samples)
    info = json.loads(s3.open_input_file("smoke/runs/s3/run.json").read())
    assert info["status"] == "complete" and info["config"]["output"]["uri"] == "s3://smoke/runs"


def test_ray_job_submit_of_the_smoke_recipe(ray_head: str, tmp_path: Path) -> None:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    runtime_env = {"env_vars": {"PARMFLOW_CACHE": os.environ["PARMFLOW_CACHE"]}}
    submit = [
        "ray", "job", "submit", "--address", ray_head, "--working-dir", ".",
        "--runtime-env-json", json.dumps(runtime_env), "--", "python", "workflows/label.py",
        "--config", "configs/smoke.yaml", "--output", str(tmp_path), "--run-id", "j",
    ]  # fmt: skip
    deadline = time.monotonic() + 180
    while True:  # a fresh head's job agent takes a while to register; until then nothing is submitted
        done = subprocess.run(submit, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
        if "No available agent" not in done.stderr or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout + done.stderr
    assert_complete(read(tmp_path / "j", "samples").to_pylist())
    assert run_json(tmp_path / "j")["status"] == "complete"
