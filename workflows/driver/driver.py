"""The driver's loop: stream prompts, search a bounded number at once, retry, hand rows on.

Every search of every in-flight prompt runs as a task on one event loop, so their generator
and judge requests meet in the clients' coalescers and leave as full batches. The prompt
source is pulled one row at a time, and only when a slot is free: memory holds at most
``run.max_in_flight`` prompts whatever the size of the file.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator
from typing import Any, TypeVar

from schemas.config import InputConfig, JobConfig
from schemas.errors import InputError
from schemas.prompts import BadRow, PromptRecord, read_prompts
from workflows.driver.errors import RUN_ENDING, RunStopped
from workflows.driver.progress import Progress
from workflows.output.secrets import redact
from workflows.output.sink import Committed, PromptRowsError, SinkClient
from workflows.search import run_search, tasks_for
from workflows.search.types import SearchResult, SearchTask
from workflows.serving.backends import Backend

T = TypeVar("T")

REASON_CHARS = 4000
"""Most characters of a failure's message kept in the errors row (remote tracebacks are long)."""

Row = PromptRecord | BadRow


def limit_prompts(rows: Iterable[Row], limit: int | None) -> Iterator[Row]:
    """Stop after ``limit`` prompts; bad rows met on the way do not count towards it."""
    seen = 0
    for row in rows:
        if limit is not None and seen >= limit:
            return
        seen += isinstance(row, PromptRecord)
        yield row


def start_counting(source: InputConfig, progress: Progress) -> None:
    """Learn the total in the background (a second streaming read), so progress can show an ETA.

    A daemon thread, not the loop's executor: a run that ends before a long remote source is
    counted must not wait for the count at exit."""

    def count() -> None:
        try:
            prompts = read_prompts(source.uri, source.format, max_prompt_chars=source.max_prompt_chars)
            rows = limit_prompts(prompts, source.limit)
            progress.total = sum(isinstance(row, PromptRecord) for row in rows)
        except Exception:  # the total is a nicety: a source the run can read is good enough
            progress.total = None

    threading.Thread(target=count, name="parmflow-count", daemon=True).start()


async def pull(rows: Iterable[Row]) -> AsyncIterator[Row]:
    """Rows read in a worker thread (a remote source blocks), one at a time.

    In strict mode the source raises at its first bad row: that row is yielded as a BadRow,
    so it is recorded like any other, and the stream ends there.
    """
    iterator = iter(rows)
    while True:
        try:
            row = await asyncio.to_thread(next, iterator, None)
        except InputError as exc:
            yield BadRow(exc.uri, exc.line or 0, exc.field, exc.reason)
            return
        if row is None:
            return
        yield row


async def all_or_nothing(coros: list[Awaitable[Any]]) -> list[Any]:
    """Like ``gather``, but the first failure cancels the siblings instead of leaving them running."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class Driver:
    def __init__(self, cfg: JobConfig, backend: Backend, sink: SinkClient, progress: Progress):
        self.cfg, self.backend, self.sink, self.progress = cfg, backend, sink, progress

    async def run(self, rows: Iterable[Row], committed: Committed) -> None:
        slots = asyncio.Semaphore(self.cfg.run.max_in_flight)
        running: set[asyncio.Task[None]] = set()

        crashed: list[BaseException] = []

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            slots.release()
            if not task.cancelled() and task.exception() is not None:
                crashed.append(task.exception())  # type: ignore[arg-type]

        async for row in pull(rows):
            if crashed:
                break
            if isinstance(row, BadRow):
                self.progress.input_error(f"{row.source}:{row.line}", row.reason)
                if (row.source, row.line) not in committed.input_errors:
                    await self._writing(self.sink.write_input_error(row))
                continue
            if row.prompt_id in committed.prompt_ids:
                self.progress.prompt_skipped()
                continue
            await slots.acquire()
            if crashed:
                slots.release()
                break
            task = asyncio.create_task(self.label_prompt(row))
            running.add(task)
            task.add_done_callback(finished)
        if crashed:  # the run cannot go on: stop the prompts in flight instead of letting them fail
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise crashed[0]
        await all_or_nothing(list(running))

    async def label_prompt(self, record: PromptRecord) -> None:
        """Search a prompt, retrying the whole prompt; after the last retry it becomes an errors row.

        Only the prompt's own failures are retried: its search, or its rows (an image lost with
        a node, one that cannot be encoded). A failure of what every prompt needs (no replica
        left, a writer that cannot commit) ends the run (``errors.RUN_ENDING``)."""
        attempts = self.cfg.run.retries + 1
        reason = ""
        for _ in range(attempts):
            try:
                results = await self.search(record)
                images = await self._writing(self.sink.write_prompt(record, results))
            except RUN_ENDING:
                raise
            except Exception as exc:
                reason = redact(f"{type(exc).__name__}: {exc}")[:REASON_CHARS]
                continue
            self.progress.prompt_ok(images, [result.cost for _, result in results])
            return
        await self._writing(self.sink.write_prompt_error(record, reason, attempts))
        self.progress.prompt_failed(record.prompt_id, attempts, reason)

    @staticmethod
    async def _writing(call: Awaitable[T]) -> T:
        """A sink call: a prompt whose rows cannot be built fails alone; any other failure is the
        writer's, which no retry mends."""
        try:
            return await call
        except PromptRowsError:
            raise
        except Exception as exc:
            raise RunStopped(f"the writer failed: {type(exc).__name__}: {exc}") from exc

    async def search(self, record: PromptRecord) -> list[tuple[SearchTask, SearchResult]]:
        tasks = tasks_for(record, self.cfg.search)
        gen, judge, search = self.backend.generator, self.backend.judge, self.cfg.search
        results = await all_or_nothing([run_search(task, gen, judge, search) for task in tasks])
        return list(zip(tasks, results, strict=True))
