"""The label entry point on the toy models: exit codes, errors rows, resume, config guard.

Most tests run the in-process backend (``run.backend local``): the flow is the same code as
under Ray, so what they check holds for both; tests/test_label_ray.py runs it on Ray.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from label_helpers import PROMPTS, SMOKE_PROMPTS, TOY, prompts_written, read, run_json

from schemas.config import validate_config
from schemas.tables import SCHEMA_VERSION
from workflows.driver import driver
from workflows.driver.errors import RunStopped
from workflows.label import main
from workflows.output import sink

LOCAL = ["--run.backend", "local"]
PER_PROMPT = 2 * 4  # images_per_prompt x n in configs/toy.yaml


def test_local_run_writes_every_prompt_once_and_exits_0(tmp_path: Path) -> None:
    assert main(["--config", TOY, "--output", str(tmp_path), "--run-id", "a", *LOCAL]) == 0
    run_dir = tmp_path / "a"
    written = prompts_written(run_dir)
    assert sorted({p for p, *_ in written}) == sorted(SMOKE_PROMPTS)
    assert set(written.values()) == {1} and len(written) == len(SMOKE_PROMPTS) * PER_PROMPT
    assert read(run_dir, "errors").num_rows == 0
    info = run_json(run_dir)
    assert info["status"] == "complete" and info["ended_at"]
    assert info["counts"]["prompts_ok"] == len(SMOKE_PROMPTS)
    assert info["counts"]["images"] == len(SMOKE_PROMPTS) * PER_PROMPT
    assert info["models"] == {"generator": "toy(steps=6,tokens=12)", "judge": "toy-judge"}
    assert info["config"]["search"]["strategy"] == "parm" and info["code_version"]


def test_a_prompt_that_always_fails_becomes_an_errors_row_and_exit_2(tmp_path: Path) -> None:
    failing = ["--generator.options.fail_prompts", '["kite"]', "--run.retries", "2"]
    assert main(["--config", TOY, "--output", str(tmp_path), "--run-id", "f", *LOCAL, *failing]) == 2
    errors = read(tmp_path / "f", "errors").to_pylist()
    assert [(e["kind"], e["attempts"]) for e in errors] == [("prompt", 3)]
    assert "kite" in errors[0]["reason"] and errors[0]["line"] == 1
    others = {p for p, *_ in prompts_written(tmp_path / "f")}
    assert others == set(SMOKE_PROMPTS) - {"a photo of a kite"}  # its batch-mates were not dragged down
    assert run_json(tmp_path / "f")["counts"]["prompts_failed"] == 1


def test_a_prompt_whose_rows_cannot_be_built_is_retried_then_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the search (rows, images, the sink) must not lose the prompt silently."""
    real_rows = sink.prompt_rows

    def rows_failing_for_kites(run_id, record, *args, **kwargs):
        if "kite" in record.prompt:
            raise ValueError("image could not be encoded")
        return real_rows(run_id, record, *args, **kwargs)

    monkeypatch.setattr(sink, "prompt_rows", rows_failing_for_kites)
    assert (
        main(["--config", TOY, "--output", str(tmp_path), "--run-id", "w", *LOCAL, "--run.retries", "1"]) == 2
    )
    errors = read(tmp_path / "w", "errors").to_pylist()
    assert [(e["kind"], e["attempts"]) for e in errors] == [("prompt", 2)]
    assert "could not be encoded" in errors[0]["reason"]
    assert {p for p, *_ in prompts_written(tmp_path / "w")} == set(SMOKE_PROMPTS) - {"a photo of a kite"}


def test_a_sink_that_cannot_write_stops_the_run_with_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(sink.ShardWriter, "add", broken)
    monkeypatch.setattr(sink.ShardWriter, "add_errors", broken)
    assert main(["--config", TOY, "--output", str(tmp_path), "--run-id", "x", *LOCAL]) == 3
    err = capsys.readouterr().err
    assert "run stopped: RunStopped: the writer failed: OSError: disk full" in err and "--run-id x" in err
    assert run_json(tmp_path / "x")["status"] == "stopped"  # never claimed complete


def test_a_resume_retries_failed_prompts_only_when_asked(tmp_path: Path) -> None:
    """The first session's kites fail (a transient fault, say); resumes see a healthy generator."""
    args = ["--config", TOY, "--output", str(tmp_path), "--run-id", "t", *LOCAL, "--run.retries", "0"]
    args += ["--output.allow_config_change", "true"]  # the fault is injected through the config
    assert main([*args, "--generator.options.fail_prompts", '["kite"]']) == 2
    assert main(args) == 2  # the failed prompt stays committed as failed: the run is incomplete
    assert run_json(tmp_path / "t")["status"] == "incomplete"
    assert "a photo of a kite" not in {p for p, *_ in prompts_written(tmp_path / "t")}
    assert main([*args, "--run.retry_failed", "true"]) == 0
    assert "a photo of a kite" in {p for p, *_ in prompts_written(tmp_path / "t")}
    info = run_json(tmp_path / "t")
    assert info["status"] == "complete" and info["counts"]["prompts_failed"] == 0
    assert [s["counts"]["prompts_ok"] for s in info["sessions"]] == [len(SMOKE_PROMPTS) - 1, 0, 1]


def test_losing_every_replica_stops_the_run_instead_of_failing_each_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    async def no_replica_left(*args, **kwargs):
        calls.append(args[0].prompt_id)
        raise RunStopped("all 2 replicas died and will not restart")

    monkeypatch.setattr(driver, "run_search", no_replica_left)
    args = ["--config", TOY, "--output", str(tmp_path), "--run-id", "n", *LOCAL, "--run.max_in_flight", "1"]
    assert main(args) == 3
    assert read(tmp_path / "n", "errors").num_rows == 0  # no prompt is blamed for the cluster
    assert run_json(tmp_path / "n")["status"] == "stopped"
    assert len(set(calls)) == 1  # no further prompt was started, none retried


def test_bad_input_rows_are_recorded_once_across_a_resume(tmp_path: Path) -> None:
    source = tmp_path / "prompts.jsonl"
    lines = PROMPTS.read_text().splitlines()
    source.write_text("\n".join([lines[0], '{"prompt": ""}', "not json", lines[1]]) + "\n")
    args = ["--config", TOY, "--output", str(tmp_path / "out"), "--run-id", "b", *LOCAL]
    args += ["--input.uri", str(source)]
    assert main(args) == 2
    assert main(args) == 2  # resumed: still says the input had bad rows, writes nothing twice
    errors = read(tmp_path / "out" / "b", "errors").to_pylist()
    assert sorted((e["kind"], e["line"]) for e in errors) == [("input", 2), ("input", 3)]
    assert len(prompts_written(tmp_path / "out" / "b")) == 2 * PER_PROMPT


def test_strict_input_stops_at_the_first_bad_row_and_records_it(tmp_path: Path) -> None:
    source = tmp_path / "prompts.jsonl"
    lines = PROMPTS.read_text().splitlines()
    source.write_text("\n".join([lines[0], '{"text": "x"}', lines[1]]) + "\n")
    args = ["--config", TOY, "--output", str(tmp_path), "--run-id", "s", *LOCAL, "--input.uri", str(source)]
    assert main([*args, "--input.strict", "true"]) == 2
    errors = read(tmp_path / "s", "errors").to_pylist()
    assert [(e["line"], e["field"]) for e in errors] == [(2, "prompt")]
    assert {p for p, *_ in prompts_written(tmp_path / "s")} == {SMOKE_PROMPTS[0]}


def test_resume_skips_committed_prompts_and_refuses_a_changed_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--config", TOY, "--output", str(tmp_path), "--run-id", "r", *LOCAL]
    assert main([*args, "--input.limit", "2"]) == 0
    assert main(args) == 0  # raising the limit is a resume, not a change
    assert set(prompts_written(tmp_path / "r").values()) == {1}
    assert len(prompts_written(tmp_path / "r")) == len(SMOKE_PROMPTS) * PER_PROMPT
    info = run_json(tmp_path / "r")
    assert [s["counts"]["prompts_ok"] for s in info["sessions"]] == [2, len(SMOKE_PROMPTS) - 2]
    assert info["sessions"][1]["counts"]["prompts_resumed"] == 2
    assert info["counts"]["prompts_ok"] == len(SMOKE_PROMPTS) and info["status"] == "complete"
    capsys.readouterr()
    assert main([*args, "--search.n", "3"]) == 1
    assert "another config" in capsys.readouterr().err
    record = tmp_path / "r" / "run.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "schema_version": 0}))
    assert main(args) == 1
    assert "table schema version 0" in capsys.readouterr().err
    record.write_text(json.dumps({**json.loads(record.read_text()), "schema_version": SCHEMA_VERSION}))
    assert main([*args, "--search.n", "3", "--output.allow_config_change", "true"]) == 0


def test_config_errors_exit_1_and_name_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", TOY, "--output", str(tmp_path), "--search.nn", "3"]) == 1
    assert "search.nn" in capsys.readouterr().err
    assert main(["--config", TOY, "--output", str(tmp_path), "--input.uri", str(tmp_path / "no.jsonl")]) == 1
    assert "file not found" in capsys.readouterr().err


def test_progress_and_summary_go_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", TOY, "--output", str(tmp_path), "--run-id", "p", *LOCAL]) == 0
    err = capsys.readouterr().err
    assert f"prompts {len(SMOKE_PROMPTS)}/{len(SMOKE_PROMPTS)}" in err and "images/s" in err and "ETA" in err
    assert f"{len(SMOKE_PROMPTS)} prompts labelled" in err and "run complete" in err


def test_run_json_hides_storage_option_values(tmp_path: Path) -> None:
    options = json.dumps({"key": "secret-value"})
    args = ["--config", TOY, "--output", str(tmp_path), "--run-id", "k", *LOCAL, "--input.limit", "1"]
    assert main([*args, "--output.storage_options", options]) == 0
    assert "secret-value" not in (tmp_path / "k" / "run.json").read_text()


def test_a_judge_that_cannot_answer_the_strategy_is_refused_before_any_search(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = ["--judge.kind", "clip", "--judge.checkpoint", "tiny:clip"]
    assert main(["--config", TOY, "--output", str(tmp_path), "--run-id", "c", *LOCAL, *clip]) == 1
    err = capsys.readouterr().err
    assert "judge.kind 'clip' cannot answer clarity, potential" in err and "'parm'" in err
    assert not list((tmp_path / "c").glob("_commits/*.json"))  # nothing was searched or written
    best_of_n = ["--search.strategy", "best_of_n"]
    assert main(["--config", TOY, "--output", str(tmp_path), "--run-id", "d", *LOCAL, *clip, *best_of_n]) == 0


def test_print_config_shows_every_field_resolved(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", TOY, "--print-config", "--search.n", "7"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["search"]["n"] == 7 and printed["search"]["threshold"] == 0.5  # a default shown
    assert validate_config(printed).search.n == 7
