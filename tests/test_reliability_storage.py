"""Storage failing during a run: an S3 server that stops and comes back, one that answers a share
of requests with 500/503/SlowDown, and a local disk that fills up.

A run either ends complete or stops with exit 3 naming what it did not write, and a rerun with the
same run id completes it; no part of a shard is ever visible. Each run is read back through its
commit records, as a user reads it, and compared sample by sample (images included) with a run
that met no fault (``uninterrupted_toy``).
"""

from __future__ import annotations

import itertools
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest
import s3fs
from label_helpers import ROOT, TOY, committed_samples, prompt_ids
from s3_faults import FaultyS3
from test_writer import rows_for

from workflows.label import main
from workflows.output.dataset import committed_files
from workflows.output.storage import Retry, StorageFailed
from workflows.output.writer import ShardWriter

PER_PROMPT = 8
"""Samples of one prompt in configs/toy.yaml; a shard this size holds one prompt."""
SLOW_RUN = [
    "--output.shard_rows",
    str(PER_PROMPT),
    "--generator.options.delay_ms",
    "20",
    "--run.max_in_flight",
    "1",
]
"""One prompt a shard, one at a time, slow enough that storage can fail between two commits."""
TABLES = ("samples", "steps", "errors")


# -- the retry itself -------------------------------------------------------------------------------


def test_retry_backs_off_with_jitter_and_gives_up_after_its_budget() -> None:
    said: list[str] = []
    calls: list[float] = []

    def failing() -> None:
        calls.append(time.monotonic())
        raise OSError("connection refused")

    retry = Retry(budget_s=0.6, first_s=0.05, cap_s=0.2, report=said.append)
    began = time.monotonic()
    with pytest.raises(
        StorageFailed, match=r"writing x: gave up after \d+ attempts over 0\.[6-9] s.*refused"
    ):
        retry.run(failing, "writing x")
    assert 0.6 <= time.monotonic() - began < 1.0
    waits = [b - a for a, b in itertools.pairwise(calls)]
    assert len(calls) >= 4 and max(waits) < 0.2 + 0.05  # capped
    assert len(set(round(w, 3) for w in waits)) > 1  # drawn, not fixed
    assert len(said) == len(calls) - 1 and "retry 1 in" in said[0]


def test_a_transient_storage_failure_costs_a_retry_not_the_shard(tmp_path: Path) -> None:
    writer = ShardWriter(str(tmp_path), "run", shard_rows=1, retry_s=5)
    writer._retry.first_s = 0.01
    publish, failures = writer._publish, [OSError("No space left on device")] * 3

    def flaky(path: str, data: bytes) -> None:
        if failures:
            raise failures.pop()
        publish(path, data)

    writer._publish = flaky  # type: ignore[method-assign]
    writer.add(rows_for(0))
    writer.close()
    assert writer.committed_prompt_ids() == {"p0"} and not failures


def test_a_shard_that_cannot_be_written_names_its_prompts_and_leaves_nothing_visible(tmp_path: Path) -> None:
    writer = ShardWriter(str(tmp_path), "run", shard_rows=6, retry_s=0)
    writer.add(rows_for(0))
    writer.flush()
    publish = writer._publish

    def commit_record_fails(path: str, data: bytes) -> None:
        if "/_commits/" in path:
            raise OSError(28, "No space left on device")
        publish(path, data)

    writer._publish = commit_record_fails  # type: ignore[method-assign]
    writer.add(rows_for(1))
    writer.add(rows_for(2))
    with pytest.raises(RuntimeError) as caught:
        writer.close()
    message = str(caught.value)
    assert "No space left on device" in message and "2 prompts not written (p1, p2)" in message
    run = tmp_path / "run"
    for table in TABLES:  # the failed shard's table files were deleted again
        assert sorted(os.listdir(run / table)) == sorted(
            posixpath.basename(f) for f in committed_files(str(run), table)
        )


# -- S3 -----------------------------------------------------------------------------------------------


@pytest.fixture
def faulty_s3(s3_server: dict[str, str]) -> FaultyS3:
    """A second moto server, on a port of its own, that the test may stop, restart and make fail."""
    server = FaultyS3()
    server.start()
    yield server
    server.stop()


def s3_args(server: FaultyS3, bucket: str, run_id: str, **retries: int) -> list[str]:
    boto3.client("s3", endpoint_url=server.endpoint).create_bucket(Bucket=bucket)
    options: dict = {"endpoint_url": server.endpoint}
    if retries:
        options["config_kwargs"] = {"retries": retries}
    return [
        *("--config", TOY, "--output", f"s3://{bucket}/runs", "--run-id", run_id, "--run.backend", "local"),
        *("--output.storage_options", json.dumps(options), *SLOW_RUN),
    ]


def run_in_thread(args: list[str]) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(main(args)))
    thread.start()
    return thread, result


def when_first_commit(server: FaultyS3, action: Callable[[], None]) -> threading.Event:
    """Run ``action`` (in its own thread) once the run's first commit record has reached S3."""
    fired = threading.Event()

    def watch(method: str, path: str) -> None:
        if method == "PUT" and "/_commits/" in path and not fired.is_set():
            fired.set()
            threading.Thread(target=action).start()

    server.watch = watch
    return fired


def check_visible_files_are_committed(run: str, options: dict) -> None:
    """Every table file under the run is one a commit record lists: no part of a shard is visible."""
    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    for table in TABLES:
        listed = sorted(fs.ls(f"{run.removeprefix('s3://')}/{table}", refresh=True))
        assert listed == sorted(
            f.removeprefix("s3://") for f in committed_files(run, table, storage_options=options)
        )


@pytest.mark.s3
def test_s3_stopped_for_a_while_mid_run_costs_a_pause_not_the_run(
    faulty_s3: FaultyS3, uninterrupted_toy: dict[str, tuple]
) -> None:
    outage_s = 3.0
    commits_before: list[int] = []

    def outage() -> None:
        faulty_s3.stop()
        commits_before.append(sum("/_commits/" in path for _, path in faulty_s3.seen))
        time.sleep(outage_s)
        faulty_s3.start()

    fired = when_first_commit(faulty_s3, outage)
    began = time.monotonic()
    thread, result = run_in_thread(s3_args(faulty_s3, "outage-pause", "o"))
    thread.join(timeout=120)
    assert fired.is_set() and result == [0]
    assert time.monotonic() - began > outage_s  # the run waited for the server ...
    commits_after = sum("/_commits/" in path for _, path in faulty_s3.seen)
    assert commits_after > commits_before[0]  # ... and committed after it came back
    options = {"endpoint_url": faulty_s3.endpoint}
    assert committed_samples("s3://outage-pause/runs/o", options) == uninterrupted_toy
    check_visible_files_are_committed("s3://outage-pause/runs/o", options)


@pytest.mark.s3
def test_s3_down_past_the_retry_budget_stops_with_exit_3_and_a_rerun_completes(
    faulty_s3: FaultyS3, uninterrupted_toy: dict[str, tuple], capsys: pytest.CaptureFixture[str]
) -> None:
    """Down for good (as far as this session can wait): no request retry in botocore, a write
    budget of one second, so the session gives up quickly."""
    args = [*s3_args(faulty_s3, "outage-stop", "s", max_attempts=1), "--output.retry_s", "1"]
    fired = when_first_commit(faulty_s3, faulty_s3.stop)
    thread, result = run_in_thread(args)
    thread.join(timeout=120)
    assert fired.is_set() and result == [3]
    err = capsys.readouterr().err
    assert "run stopped" in err and "gave up after" in err and "--run-id s" in err
    not_written = set(re.search(r"prompts not written \(([^)]*)\)", err).group(1).split(", "))

    faulty_s3.start()
    options = {"endpoint_url": faulty_s3.endpoint}
    first = prompt_ids(committed_samples("s3://outage-stop/runs/s", options))
    assert first and first < prompt_ids(uninterrupted_toy)  # stopped mid-run
    assert not_written and not not_written & first  # what it named was indeed not committed
    assert not_written <= prompt_ids(uninterrupted_toy)

    assert main(args) == 0
    assert committed_samples("s3://outage-stop/runs/s", options) == uninterrupted_toy  # every prompt once
    check_visible_files_are_committed("s3://outage-stop/runs/s", options)


@pytest.mark.s3
def test_s3_answering_a_share_of_requests_with_500_503_and_slowdown_completes(
    faulty_s3: FaultyS3, uninterrupted_toy: dict[str, tuple]
) -> None:
    """From the run's first write on (the check before the models load has its own test), a
    quarter of all requests fail."""

    def fail_a_share(method: str, path: str) -> None:
        if method == "PUT" and path.endswith("/run.json"):
            faulty_s3.fail_share = 0.25

    args = s3_args(faulty_s3, "flaky", "f")
    faulty_s3.watch = fail_a_share
    assert main(args) == 0
    faulty_s3.fail_share = 0.0
    assert sum(faulty_s3.faults.values()) >= 3  # it did fail, several times
    options = {"endpoint_url": faulty_s3.endpoint}
    assert committed_samples("s3://flaky/runs/f", options) == uninterrupted_toy
    check_visible_files_are_committed("s3://flaky/runs/f", options)


# -- a local disk that fills up -------------------------------------------------------------------

DISK_SCRIPT = """
set -u
mount -t tmpfs -o size=200k parmflow-test "$DISK" || exit 10
head -c 120k /dev/zero > "$DISK/filler"    # 20 pages left: a toy shard takes about 7
"$PYTHON" workflows/label.py "$@" > "$SAVE/first.out" 2> "$SAVE/first.err"; echo $? > "$SAVE/first.rc"
cp -r "$DISK/out" "$SAVE/after-first"
rm "$DISK/filler"                          # space comes back
"$PYTHON" workflows/label.py "$@" > "$SAVE/second.out" 2> "$SAVE/second.err"; echo $? > "$SAVE/second.rc"
cp -r "$DISK/out" "$SAVE/after-second"
"""


def private_mounts() -> list[str] | None:
    """A command prefix that runs in a mount namespace of its own, where mounting a tmpfs is
    allowed (as root, or as a user mapped to root), or None where the system forbids it."""
    if shutil.which("unshare") is None:
        return None
    probe = subprocess.run(["unshare", "--mount", "--map-root-user", "true"], capture_output=True)
    return ["unshare", "--mount", "--map-root-user"] if probe.returncode == 0 else None


def test_a_local_disk_that_fills_up_stops_with_exit_3_and_a_rerun_completes(
    tmp_path: Path, uninterrupted_toy: dict[str, tuple]
) -> None:
    """A real ENOSPC: a 200 KiB tmpfs, mostly filled, mounted in a private mount namespace so
    nothing outside the test sees it. Writes are retried for one second (a disk may get space
    back), then the run stops; with the space freed, a rerun completes it."""
    prefix = private_mounts()
    if prefix is None:
        pytest.skip("this system allows no private mount namespace (unshare --mount --map-root-user)")
    disk, save = tmp_path / "disk", tmp_path / "save"
    disk.mkdir()
    save.mkdir()
    args = ["--config", TOY, "--output", f"{disk}/out", "--run-id", "d", "--run.backend", "local"]
    args += [*SLOW_RUN, "--output.retry_s", "1"]
    env = {**os.environ, "DISK": str(disk), "SAVE": str(save), "PYTHON": sys.executable}
    subprocess.run(
        [*prefix, "bash", "-c", DISK_SCRIPT, "disk", *args], cwd=ROOT, env=env, check=True, timeout=150
    )

    first_err = (save / "first.err").read_text()
    assert (save / "first.rc").read_text().strip() == "3", first_err
    assert "No space left on device" in first_err and "prompts not written" in first_err
    first = save / "after-first" / "d"
    committed = committed_samples(str(first))
    assert 0 < len(prompt_ids(committed)) < len(prompt_ids(uninterrupted_toy))  # it stopped mid-run
    assert committed == {k: v for k, v in uninterrupted_toy.items() if k in committed}
    for table in TABLES:  # nothing half-written is visible: every table file is a whole, committed one
        names = sorted(os.listdir(first / table))
        assert names == sorted(posixpath.basename(f) for f in committed_files(str(first), table))
        for name in names:
            pq.read_metadata(first / table / name)
    assert json.loads((first / "run.json").read_text())["status"] == "stopped"

    assert (save / "second.rc").read_text().strip() == "0", (save / "second.err").read_text()
    second = save / "after-second" / "d"
    assert committed_samples(str(second)) == uninterrupted_toy
    assert json.loads((second / "run.json").read_text())["status"] == "complete"
