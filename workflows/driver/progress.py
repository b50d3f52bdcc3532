"""What a running job tells its user on stderr: prompts done/total, images/s, ETA, failures.

A line at most every ``every_s`` seconds (a job log is read by people, and a cluster's log
collector pays per line), plus one line per failed prompt and a final summary.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from workflows.output.run_record import RunRecord
from workflows.output.secrets import redact
from workflows.search.types import Cost


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def one_line(reason: str) -> str:
    """A failure in one line: a remote error (``RayTaskError(...): <where>`` then a traceback)
    keeps its type and its last line, the error the model raised; the errors row keeps it all."""
    lines = [line.strip() for line in reason.strip().splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    return lines[0] if len(lines) == 1 else f"{lines[0].split(':', 1)[0]}: {lines[-1]}"


@dataclass
class Progress:
    total: int | None = None
    every_s: float = 5.0
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    input_errors: int = 0
    images: int = 0
    cost: Cost = field(default_factory=Cost)
    max_batch: dict[str, int] = field(default_factory=dict)
    """Per model, the ``max_batch`` an out-of-memory error lowered it to (run.json keeps it)."""
    started: float = field(default_factory=time.monotonic)
    _last_report: float = 0.0

    @property
    def done(self) -> int:
        return self.ok + self.failed + self.skipped

    def prompt_ok(self, images: int, costs: Sequence[Cost] = ()) -> None:
        self.ok += 1
        self.images += images
        for cost in costs:
            self.cost.add(cost)
        self.report()

    def prompt_failed(self, prompt_id: str, attempts: int, reason: str) -> None:
        self.failed += 1
        self._print(f"prompt {prompt_id} failed after {attempts} attempts: {one_line(reason)}")
        self.report()

    def prompt_skipped(self) -> None:
        self.skipped += 1

    def max_batch_lowered(self, model: str, old: int, new: int) -> None:
        self.max_batch[model] = new
        self._print(
            f"{model} ran out of memory on a batch: max_batch lowered from {old} to {new} for the rest "
            "of the run (the batch was split and rerun; nothing is lost)"
        )

    def input_error(self, where: str, reason: str) -> None:
        self.input_errors += 1
        self._print(f"bad input row {where}: {reason}")

    async def heartbeat(self) -> None:
        """A line every ``every_s`` even while no prompt finishes: one prompt of a 7B PARM run
        at N=20 takes minutes, and a silent job looks like a hung one."""
        while True:
            await asyncio.sleep(self.every_s)
            self.report()

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_report >= self.every_s:
            self._last_report = now
            self._print(self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        ran = self.ok + self.failed
        total = "?" if self.total is None else str(self.total)
        eta = "?"
        if self.total is not None and ran:
            eta = _duration(max(self.total - self.done, 0) * elapsed / ran)
        return (
            f"prompts {self.done}/{total} ({self.skipped} resumed) | {self.images / elapsed:.2f} images/s"
            f" | ETA {eta} | failed {self.failed} | bad rows {self.input_errors}"
            f" | elapsed {_duration(elapsed)}"
        )

    def summary(self, run_uri: str, complete: bool | None = None) -> str:
        """This session's counts; the verdict is the whole run's when ``complete`` is given."""
        elapsed = time.monotonic() - self.started
        if complete is None:
            complete = not (self.failed or self.input_errors)
        verdict = "run complete" if complete else "INCOMPLETE: see the errors table"
        return (
            f"done in {_duration(elapsed)}: {self.ok} prompts labelled, {self.images} images, "
            f"{self.skipped} already committed, {self.failed} failed, {self.input_errors} bad input rows "
            f"-> {run_uri} ({verdict})"
        )

    def cost_line(self) -> str:
        """What the searches of this session cost, and what pruning saved of it."""
        cost = self.cost
        would_be = cost.nfe + cost.steps_saved
        saved = f" ({100 * cost.steps_saved / would_be:.0f}% of {would_be})" if would_be else ""
        return (
            f"cost: {cost.nfe} generator path-steps, {cost.judge_calls} judge calls, "
            f"{cost.paths_pruned} paths pruned saving {cost.steps_saved} path-steps{saved}"
        )

    def start(self, what: str) -> None:
        self._print(what)
        self.report(force=True)

    def finish(self, run_uri: str, record: RunRecord) -> None:
        """This session's summary and cost, and (after a resume) where the whole run stands."""
        self.report(force=True)
        self._print(self.summary(run_uri, complete=record.status == "complete"))
        self._print(self.cost_line())
        if len(record.sessions) > 1 and record.totals is not None:
            totals = record.totals
            self._print(
                f"run so far ({len(record.sessions)} sessions): {totals.prompts_ok} prompts labelled, "
                f"{totals.prompts_failed} failed, {totals.input_errors} bad input rows"
            )

    def counts(self) -> dict[str, int]:
        return {
            "prompts_ok": self.ok,
            "prompts_failed": self.failed,
            "prompts_resumed": self.skipped,
            "input_errors": self.input_errors,
            "images": self.images,
            "nfe": self.cost.nfe,
            "judge_calls": self.cost.judge_calls,
            "paths_pruned": self.cost.paths_pruned,
            "steps_saved": self.cost.steps_saved,
        }

    def _print(self, text: str) -> None:
        print(f"[parmflow] {redact(text)}", file=self.stream, flush=True)
