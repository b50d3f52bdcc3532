"""What a label run checks before any model loads: a run that cannot finish fails in seconds,
not after minutes of loading a 7B judge onto GPUs, and says which recipe field to fix.

- The prompt source yields a first row (an empty file is a wrong path far more often than a
  wish); a source that cannot be opened at all failed earlier, in ``read_prompts``.
- The output can be written with the credentials given: a small probe object is written under
  the run's directory and deleted, which fails on a bucket that does not exist, an endpoint
  that does not answer, credentials that are refused or a read-only disk.
- An existing run may be resumed under this config (``run_record.check_resume``).
- Each model's checkpoint, when it is a local path, exists and holds weights this run may load
  (``actors.loading.check_checkpoint``: safetensors, or pickled only with ``trust_pickle``), and
  a judge's questions file exists.

Each failure is a :class:`~schemas.errors.FieldError` naming the field; ``label.py`` adds where
it was set and exits 1. What only loading can tell (a tokenizer that splits yes/no, weights that
do not fit the config) is refused when the models load, still before any prompt is searched.
"""

from __future__ import annotations

import itertools
import json
import posixpath
import secrets
from collections.abc import Iterator
from typing import Any, TypeVar

from fsspec.implementations.local import LocalFileSystem

from actors.loading import check_checkpoint
from schemas.config import JobConfig, OutputConfig
from schemas.errors import FieldError, InputError
from workflows.output.run_record import RunRecord, check_resume
from workflows.output.secrets import redact
from workflows.output.storage import output_fs

T = TypeVar("T")

PROBE_ATTEMPTS = 2
"""Tries per request of the output check: at start there is nothing to lose, so answer fast."""


def require_rows(rows: Iterator[T], uri: str) -> Iterator[T]:
    """``rows`` unchanged, once its first row is read; a source without any row is refused."""
    try:
        first = next(rows)
    except StopIteration:
        raise InputError(uri, None, None, "no prompts: the source is empty") from None
    return itertools.chain([first], rows)


def check_output(output: OutputConfig, run_id: str) -> dict[str, Any] | None:
    """Write and delete a probe in the run's directory; return the run's ``run.json`` if it has one."""
    fs, root = output_fs(output.uri, output.storage_options, attempts=PROBE_ATTEMPTS)
    run = posixpath.join(root.rstrip("/"), run_id)
    probe = posixpath.join(run, f"_probe-{secrets.token_hex(4)}")
    try:
        if isinstance(fs, LocalFileSystem):
            fs.makedirs(run, exist_ok=True)
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
        fs.invalidate_cache(run)
        record = posixpath.join(run, "run.json")
        previous = fs.cat_file(record) if fs.exists(record) else None
    except Exception as exc:
        reason = redact(f"{type(exc).__name__}: {exc}")
        raise FieldError(("output", "uri"), f"cannot write to {redact(output.uri)}: {reason}") from None
    return None if previous is None else json.loads(previous)


def check_models(cfg: JobConfig) -> None:
    specs = [("generator", cfg.generator)] + ([("judge", cfg.judge)] if cfg.judge else [])
    for name, spec in specs:
        try:
            check_checkpoint(spec.checkpoint, spec.trust_pickle)
        except ValueError as exc:
            raise FieldError((name, "checkpoint"), str(exc)) from None
    if cfg.judge is not None and cfg.judge.questions is not None:
        try:
            with open(cfg.judge.questions, encoding="utf-8"):
                pass
        except OSError as exc:
            raise FieldError(("judge", "questions"), f"{cfg.judge.questions}: {exc.strerror}") from None


def preflight(cfg: JobConfig, run_id: str) -> RunRecord | None:
    """Everything above but the prompt source; returns the record of the run's earlier sessions."""
    previous = check_resume(check_output(cfg.output, run_id), cfg, run_id)
    check_models(cfg)
    return previous
