"""Models that misbehave during a run: out of memory on a batch, raising on one input, answering
NaN or out-of-range scores and tokens. Each run is compared, sample by sample, with a run that
met no fault (``uninterrupted_toy``): what the fault did not touch must come out identical."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from label_helpers import PROMPTS, TOY, committed_samples, run_json, without

from schemas.prompts import PromptRecord, read_prompts
from workflows.label import main

LOCAL = ["--run.backend", "local"]
ONE_REPLICA = ["--generator.resources.replicas", "1", "--judge.resources.replicas", "1"]
KITE = next(
    r.prompt_id for r in read_prompts(str(PROMPTS)) if isinstance(r, PromptRecord) and "kite" in r.prompt
)


def label(out: Path, run_id: str, *args: str) -> int:
    return main(["--config", TOY, "--output", str(out), "--run-id", run_id, *args])


def errors(run: Path) -> list[dict]:
    return pq.read_table(run / "errors").to_pylist()


def check_out_of_memory_run(expected: dict[str, tuple], out: Path, err: str) -> None:
    """The toy generator raised torch's OutOfMemoryError for every call of more than 6 paths, as a
    GPU replica does; 8 prompts in flight put up to 64 paths in one batch."""
    assert committed_samples(str(out)) == expected  # nothing lost, nothing changed
    lowered = run_json(out)["sessions"][-1]["max_batch"]["generator"]
    assert 1 <= lowered <= 6
    lines = [line for line in err.splitlines() if "ran out of memory" in line]
    assert "generator ran out of memory on a batch: max_batch lowered from 64 to" in lines[0]
    assert lines[-1].endswith(
        f"to {lowered} for the rest of the run (the batch was split and rerun; nothing is lost)"
    )


OUT_OF_MEMORY = ["--generator.options.oom_above", "6", "--run.retries", "0"]
"""No prompt retry: the batch must be split, not the prompt failed and searched again."""


def test_a_batch_out_of_memory_is_split_and_max_batch_lowered_for_the_run(
    uninterrupted_toy: dict[str, tuple], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert label(tmp_path, "m", *OUT_OF_MEMORY, *LOCAL) == 0
    check_out_of_memory_run(uninterrupted_toy, tmp_path / "m", capsys.readouterr().err)


@pytest.mark.ray
def test_a_replica_out_of_memory_tells_the_driver_without_torch(
    ray_cluster: None, uninterrupted_toy: dict[str, tuple], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On Ray the replica turns torch's error into BatchTooLarge before it travels."""
    assert label(tmp_path, "m", *OUT_OF_MEMORY, *ONE_REPLICA) == 0
    check_out_of_memory_run(uninterrupted_toy, tmp_path / "m", capsys.readouterr().err)


def test_a_model_that_raises_on_one_input_fails_that_prompt_only(
    uninterrupted_toy: dict[str, tuple], tmp_path: Path
) -> None:
    args = ["--generator.options.fail_prompts", '["kite"]', "--run.retries", "1", *LOCAL]
    assert label(tmp_path, "r", *args) == 2
    assert committed_samples(str(tmp_path / "r")) == without(uninterrupted_toy, {KITE})
    assert [(e["kind"], e["prompt_id"], e["attempts"]) for e in errors(tmp_path / "r")] == [
        ("prompt", KITE, 2)
    ]


BAD_ANSWERS = {
    "nan_score": (["--judge.options.bad_score_prompts", '["kite"]'], "P(yes)=nan"),
    "score_above_one": (
        ["--judge.options.bad_score_prompts", '["kite"]', "--judge.options.bad_score", "1.7"],
        "P(yes)=1.7",
    ),
    "negative_score": (
        ["--judge.options.bad_score_prompts", '["kite"]', "--judge.options.bad_score", "-0.25"],
        "P(yes)=-0.25",
    ),
    "token_outside_the_codebook": (
        ["--generator.options.bad_token_prompts", '["kite"]'],
        "finished with token 263 outside [0, 256)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ANSWERS))
def test_a_bad_score_or_token_is_caught_at_the_boundary_and_never_written(
    case: str, uninterrupted_toy: dict[str, tuple], tmp_path: Path
) -> None:
    args, cause = BAD_ANSWERS[case]
    assert label(tmp_path, "b", *args, "--run.retries", "1", *LOCAL) == 2
    run = tmp_path / "b"
    assert committed_samples(str(run)) == without(uninterrupted_toy, {KITE})
    (error,) = errors(run)
    assert (error["kind"], error["prompt_id"], error["attempts"]) == ("prompt", KITE, 2)
    assert "ModelOutputError" in error["reason"] and cause in error["reason"]
    steps = pq.read_table(run / "steps").to_pylist()
    assert KITE not in {s["prompt_id"] for s in steps}
    scores = [s["p_yes"] for s in steps] + [s["p_no"] for s in steps]
    assert all(math.isfinite(p) and 0 <= p <= 1 for p in scores)
    assert json.loads((run / "run.json").read_text())["counts"]["prompts_failed"] == 1
