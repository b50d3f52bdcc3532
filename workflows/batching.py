"""Coalesce many small requests from concurrent search tasks into one call per batch.

A cross-process call costs its caller about a millisecond of CPU whatever its size, so the
driver must never make one call per path. Every search task awaits ``submit`` with its own
few items; requests with the same key (method and arguments) queue together and leave as
one ``dispatch`` call when ``max_batch`` items are waiting or the oldest has waited
``wait_ms``. Requests are never split across two dispatches, so a task's items stay in order.
A batch that fails is retried request by request, so one bad request (a prompt that breaks
the model) fails only its own caller, not the searches that happened to share its batch.

This is written here rather than taken from Ray Serve's ``@serve.batch`` because Serve's
handle call costs several milliseconds per request and caps batches at
``max_ongoing_requests`` (see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

Dispatch = Callable[[Hashable, list[Any]], Awaitable[Sequence[Any]]]


@dataclass
class _Pending:
    items: list[Any]
    future: asyncio.Future[list[Any]]


@dataclass
class _Queue:
    pending: list[_Pending] = field(default_factory=list)
    size: int = 0
    timer: asyncio.TimerHandle | None = None


class Coalescer:
    """Batches ``submit(key, items)`` calls into ``dispatch(key, all_items)`` calls.

    ``dispatch`` must return one result per item, in order. Several dispatches may run at
    once (one per replica); ``max_concurrent`` bounds them so that queued work keeps
    coalescing while every replica is busy.
    """

    def __init__(
        self,
        dispatch: Dispatch,
        max_batch: int = 64,
        wait_ms: float = 5.0,
        max_concurrent: int = 1,
    ):
        self._dispatch = dispatch
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000.0
        self._slots = asyncio.Semaphore(max_concurrent)
        self._queues: dict[Hashable, _Queue] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0
        self.items = 0

    async def submit(self, key: Hashable, items: Sequence[Any]) -> list[Any]:
        if not items:
            return []
        loop = asyncio.get_running_loop()
        queue = self._queues.setdefault(key, _Queue())
        pending = _Pending(list(items), loop.create_future())
        queue.pending.append(pending)
        queue.size += len(pending.items)
        if queue.size >= self.max_batch:
            self._flush(key)
        elif queue.timer is None:
            queue.timer = loop.call_later(self.wait_s, self._flush, key)
        return await pending.future

    def _flush(self, key: Hashable) -> None:
        queue = self._queues.get(key)
        if queue is None or not queue.pending:
            return
        if queue.timer is not None:
            queue.timer.cancel()
            queue.timer = None
        batch: list[_Pending] = []
        size = 0
        while queue.pending and (not batch or size + len(queue.pending[0].items) <= self.max_batch):
            item = queue.pending.pop(0)
            batch.append(item)
            size += len(item.items)
        queue.size -= size
        if queue.pending:
            if queue.size >= self.max_batch:
                asyncio.get_running_loop().call_soon(self._flush, key)
            else:
                queue.timer = asyncio.get_running_loop().call_later(self.wait_s, self._flush, key)
        task = asyncio.get_running_loop().create_task(self._run(key, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Hashable, batch: list[_Pending]) -> None:
        flat = [item for pending in batch for item in pending.items]
        try:
            async with self._slots:
                self.calls += 1
                self.items += len(flat)
                results = list(await self._dispatch(key, flat))
            if len(results) != len(flat):
                raise RuntimeError(f"dispatch returned {len(results)} results for {len(flat)} items")
        except Exception as exc:
            if len(batch) > 1:  # isolate the failure: each request alone, so one bad one fails only itself
                live = [pending for pending in batch if not pending.future.done()]
                await asyncio.gather(*(self._run(key, [pending]) for pending in live))
                return
            self._fail(batch, exc)
            return
        except BaseException as exc:  # cancelled: every waiter must hear about it
            self._fail(batch, exc)
            raise
        offset = 0
        for pending in batch:
            n = len(pending.items)
            if not pending.future.done():
                pending.future.set_result(results[offset : offset + n])
            offset += n

    @staticmethod
    def _fail(batch: list[_Pending], exc: BaseException) -> None:
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(exc)
