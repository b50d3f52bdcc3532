"""The label flow on Ray (toy models, the session's shared local Ray): same rows as in-process,
a replica killed mid-run costs a retry, a killed driver costs a rerun that resumes exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray
from label_helpers import ROOT, SMOKE_PROMPTS, TOY, prompts_written, read

from workflows.label import main

pytestmark = pytest.mark.ray
PER_PROMPT = 2 * 4
ONE_REPLICA = ["--generator.resources.replicas", "1", "--judge.resources.replicas", "1"]
"""Each replica is a process that imports torch: one of each keeps these tests quick."""


def sample_rows(run_dir: Path) -> list[tuple]:
    rows = read(run_dir, "samples").to_pylist()
    return sorted(
        (r["prompt"], r["image_index"], r["candidate"], tuple(r["image_tokens"]), r["outcome"], r["selected"])
        for r in rows
    )


@pytest.fixture(scope="module")
def uninterrupted(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    assert main(["--config", TOY, "--output", str(out), "--run-id", "u", *ONE_REPLICA]) == 0
    return out / "u"


def one_replica_run(output: Path, run_id: str, max_in_flight: int) -> list[str]:
    """Arguments of a toy run on one generator replica, few prompts in flight (slow enough to interrupt)."""
    run = ["--output", str(output), "--run-id", run_id, "--run.max_in_flight", str(max_in_flight)]
    return ["--config", TOY, *run, *ONE_REPLICA]


def test_ray_run_writes_the_same_rows_as_the_in_process_run(uninterrupted: Path, tmp_path: Path) -> None:
    assert main(["--config", TOY, "--output", str(tmp_path), "--run-id", "l", "--run.backend", "local"]) == 0
    assert sample_rows(uninterrupted) == sample_rows(tmp_path / "l")
    assert len(prompts_written(uninterrupted)) == len(SMOKE_PROMPTS) * PER_PROMPT


def test_a_replica_killed_mid_run_costs_a_retry_not_the_run(uninterrupted: Path, tmp_path: Path) -> None:
    result: list[int] = []
    args = one_replica_run(tmp_path, "k", max_in_flight=2)
    args += ["--generator.options.delay_ms", "40", "--run.retries", "0"]
    runner = threading.Thread(target=lambda: result.append(main(args)))
    runner.start()
    deadline = time.monotonic() + 60
    victim = None
    while victim is None and time.monotonic() < deadline:
        names = [n for n in ray.util.list_named_actors() if n.startswith("parmflow-k-") and "generator" in n]
        if names and not list((tmp_path / "k" / "_commits").glob("*.json")):
            victim = ray.get_actor(sorted(names)[0])
            ray.get(victim.info.remote())  # loaded and serving
            time.sleep(0.3)
        time.sleep(0.05)
    assert victim is not None and runner.is_alive(), "the run ended before a replica could be killed"
    ray.kill(victim, no_restart=False)
    runner.join(timeout=120)
    assert result == [0]  # no prompt failed, although retries were 0: Ray reran the lost calls
    assert sample_rows(tmp_path / "k") == sample_rows(uninterrupted)  # all prompts, same rows


def test_a_killed_driver_resumes_to_exactly_the_uninterrupted_prompts(
    uninterrupted: Path, tmp_path: Path
) -> None:
    args = one_replica_run(tmp_path, "i", max_in_flight=1)
    args += ["--output.shard_rows", str(PER_PROMPT), "--generator.options.delay_ms", "40"]
    address = ray.get_runtime_context().gcs_address
    driver = subprocess.Popen(
        [sys.executable, "workflows/label.py", *args, "--ray.address", address],
        cwd=ROOT,
        env={**os.environ, "RAY_ADDRESS": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    commits = tmp_path / "i" / "_commits"
    deadline = time.monotonic() + 120
    while not list(commits.glob("*.json")) and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    partial = prompts_written(tmp_path / "i")
    assert 0 < len(partial) < len(SMOKE_PROMPTS) * PER_PROMPT, "the driver was not killed mid-run"
    assert main(args) == 0
    assert sample_rows(tmp_path / "i") == sample_rows(uninterrupted)  # every prompt, none twice
