"""``run.json``: what a run was (resolved config, code, models), how each session went, and the
resume guard.

A resumed run must produce rows the first session would have produced, so it refuses a config
whose hash differs, or a run written with another table schema version. The hash leaves out what
only changes how the run executes, not what it writes: the run id, where Ray runs, replica counts
and batching, in-flight and retry limits (of prompts and of writes), the input limit (raising it
to label more of the file is a normal resume) and credentials. The run's totals and status come
from the commit records (the only record that spans sessions); each session keeps its own counts
beside them.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Literal

from schemas.config import JobConfig
from schemas.errors import ConfigError
from schemas.tables import SCHEMA_VERSION
from workflows import ROOT
from workflows.output.commits import Totals
from workflows.output.secrets import redacted

RUN_LOCAL: tuple[tuple[str, ...], ...] = (
    ("output", "run_id"),
    ("output", "uri"),
    ("output", "storage_options"),
    ("output", "allow_config_change"),
    ("output", "shard_rows"),
    ("output", "shard_bytes"),
    ("output", "retry_s"),
    ("input", "limit"),
    ("input", "strict"),
    ("generator", "resources"),
    ("judge", "resources"),
    ("ray",),
    ("run",),
)


def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def public_config(cfg: JobConfig) -> dict[str, Any]:
    """The resolved config as written to run.json (and printed): storage option values are not
    written, and no credential either, wherever it hides (a password in a URI)."""
    data = cfg.model_dump(mode="json")
    data["output"]["storage_options"] = {key: "<set>" for key in data["output"]["storage_options"]}
    return redacted(data)


def config_hash(cfg: JobConfig) -> str:
    data = cfg.model_dump(mode="json")
    for path in RUN_LOCAL:
        node = data
        for key in path[:-1]:
            node = node.get(key) or {}
        node.pop(path[-1], None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def code_version() -> str:
    """``git describe`` of the checkout when there is one (a job's working dir has no .git)."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return f"git:{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return f"parmflow {metadata.version('parmflow')}"
    except metadata.PackageNotFoundError:
        return "unknown"


Status = Literal["running", "complete", "incomplete", "stopped"]


@dataclass
class Session:
    """One invocation of the entry point on the run; ``counts`` are its own progress counts."""

    started_at: str
    ended_at: str | None = None
    counts: dict[str, int] | None = None
    stopped: bool | None = None
    max_batch: dict[str, int] | None = None
    """Per model whose batch ran out of memory, the ``max_batch`` it was lowered to."""

    def to_json(self) -> dict[str, Any]:
        """A session still running has only ``started_at``."""
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass
class RunRecord:
    run_id: str
    config: dict[str, Any]
    """The resolved config, storage option values hidden."""
    config_hash: str
    schema_version: int | None
    code_version: str
    models: dict[str, str | None]
    started_at: str
    ended_at: str | None = None
    status: Status = "running"
    totals: Totals | None = None
    """Over every session, from the commit records; None until a session has ended."""
    sessions: list[Session] = field(default_factory=list)

    @classmethod
    def begin(
        cls, cfg: JobConfig, run_id: str, models: dict[str, str | None], now: str, previous: RunRecord | None
    ) -> RunRecord:
        """The record of a run as this session starts, continuing the earlier sessions' record."""
        return cls(
            run_id,
            public_config(cfg),
            config_hash(cfg),
            SCHEMA_VERSION,
            code_version(),
            models,
            started_at=previous.started_at if previous else now,
            totals=previous.totals if previous else None,
            sessions=[*(previous.sessions if previous else []), Session(now)],
        )

    def end(
        self,
        now: str,
        session: dict[str, int],
        totals: Totals,
        stopped: bool = False,
        max_batch: dict[str, int] | None = None,
    ) -> None:
        """Close this session's entry. The run is complete when no prompt and no input row of any
        session is left failed, and ``stopped`` when this session could not go on."""
        current = self.sessions[-1]
        current.ended_at, current.counts, current.stopped = now, session, stopped
        current.max_batch = max_batch or None
        self.ended_at, self.totals = now, totals
        failed = totals.prompts_failed or totals.input_errors
        self.status = "stopped" if stopped else "incomplete" if failed else "complete"

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "config": self.config,
            "config_hash": self.config_hash,
            "schema_version": self.schema_version,
            "code_version": self.code_version,
            "models": self.models,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "status": self.status,
            "counts": asdict(self.totals) if self.totals else {},
            "sessions": [session.to_json() for session in self.sessions],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        return cls(
            data["run_id"],
            data["config"],
            data["config_hash"],
            data.get("schema_version"),
            data["code_version"],
            data["models"],
            data["started_at"],
            data.get("ended_at"),
            data.get("status", "running"),
            Totals(**data["counts"]) if data.get("counts") else None,
            [Session(**session) for session in data.get("sessions", [])],
        )


def check_resume(previous: dict[str, Any] | None, cfg: JobConfig, run_id: str) -> RunRecord | None:
    """The record of the run's earlier sessions, if ``cfg`` may continue it: a run under another
    config, or written with another table schema, would mix two datasets in one."""
    if previous is None:
        return None
    if not cfg.output.allow_config_change:
        _refuse_a_changed_run(previous, cfg, run_id)
    try:
        return RunRecord.from_json(previous)
    except (KeyError, TypeError) as exc:
        raise ConfigError(
            f"run {run_id!r} in {cfg.output.uri}: run.json is not a run record this parmflow can read "
            f"({type(exc).__name__}: {exc}). Use a new --run-id."
        ) from None


def _refuse_a_changed_run(previous: dict[str, Any], cfg: JobConfig, run_id: str) -> None:
    if previous.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(
            f"run {run_id!r} in {cfg.output.uri} was written with table schema version "
            f"{previous.get('schema_version')}, this parmflow writes {SCHEMA_VERSION}; resuming would mix "
            "two table layouts. Use a new --run-id."
        )
    before = previous.get("config_hash")
    if before != config_hash(cfg):
        raise ConfigError(
            f"run {run_id!r} in {cfg.output.uri} was started with another config (hash {before}, now "
            f"{config_hash(cfg)}); resuming would mix two datasets. Use a new --run-id, or set "
            "--output.allow_config_change true to continue anyway."
        )
