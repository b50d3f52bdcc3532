"""``run.json``: what a run was (resolved config, code, models) and the resume guard.

A resumed run must produce rows the first session would have produced, so it refuses a config
whose hash differs. The hash leaves out what only changes how the run executes, not what it
writes: the run id, where Ray runs, replica counts and batching, in-flight and retry limits,
the input limit (raising it to label more of the file is a normal resume) and credentials.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from schemas.config import JobConfig
from schemas.errors import ConfigError
from schemas.tables import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]

RUN_LOCAL: tuple[tuple[str, ...], ...] = (
    ("output", "run_id"),
    ("output", "uri"),
    ("output", "storage_options"),
    ("output", "allow_config_change"),
    ("output", "shard_rows"),
    ("output", "shard_bytes"),
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
    """The resolved config as written to run.json: storage option values are not written."""
    data = cfg.model_dump(mode="json")
    data["output"]["storage_options"] = {key: "<set>" for key in data["output"]["storage_options"]}
    return data


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


def check_resume(previous: dict | None, cfg: JobConfig, run_id: str) -> None:
    """Refuse to continue a run under a different config (it would mix two datasets)."""
    if previous is None or cfg.output.allow_config_change:
        return
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


def run_record(
    cfg: JobConfig, run_id: str, models: dict[str, str | None], started_at: str, previous: dict | None
) -> dict[str, Any]:
    """The record of a run as it starts this session. ``counts`` will hold the totals over all
    sessions (from the commit records); ``sessions`` keeps each session's own counts."""
    return {
        "run_id": run_id,
        "config": public_config(cfg),
        "config_hash": config_hash(cfg),
        "schema_version": SCHEMA_VERSION,
        "code_version": code_version(),
        "models": models,
        "started_at": (previous or {}).get("started_at", started_at),
        "ended_at": None,
        "status": "running",
        "counts": (previous or {}).get("counts", {}),
        "sessions": [*(previous or {}).get("sessions", []), {"started_at": started_at}],
    }


def finish_record(
    info: dict[str, Any],
    ended_at: str,
    session: dict[str, int],
    totals: dict[str, int],
    stopped: bool = False,
) -> None:
    """Close this session's entry; the run is complete when no prompt and no input row of any
    session is left failed, and ``stopped`` when this session could not go on."""
    info["sessions"][-1].update(ended_at=ended_at, counts=session, stopped=stopped)
    info.update(ended_at=ended_at, counts=totals)
    failed = totals["prompts_failed"] or totals["input_errors"]
    info["status"] = "stopped" if stopped else "incomplete" if failed else "complete"
