"""Coalesce many small requests from concurrent search tasks into one call per batch.

A cross-process call costs its caller about a millisecond of CPU whatever its size, so the
driver must never make one call per path. Every search task awaits ``submit`` with its own
few items; requests with the same key (method and arguments) queue together. A batch is cut
only once a dispatch slot (a replica) is free: reaching ``max_batch`` items or the oldest
request waiting ``wait_ms`` merely asks for a drain, and the drain takes whatever is queued
when it gets its slot. So while every replica is busy, queued work keeps growing into full
batches instead of freezing into small ones at each timer tick, which is when full batches
matter most. Requests are never split across two batches, so a task's items stay in order.

A batch that fails is bisected: each half is rerun, and a half that fails again is halved in
turn, so one bad request (a prompt that breaks the model) fails only its own caller, not the
searches that happened to share its batch, and is found in about log2(n) rounds of calls rather
than n calls one request at a time. A batch that ran out of memory (:class:`BatchTooLarge`,
``memory.py``) is the replica's limit, not a bad request: it is dispatched again in halves,
items of one request included (a generator's paths and a judge's images do not depend on their
batch-mates), and ``max_batch`` is lowered to the half for the rest of the run, so later batches
fit at the first try; ``on_lowered`` reports each lowering.

This is written here rather than taken from Ray Serve's ``@serve.batch`` because Serve's
handle call costs several milliseconds per request and caps batches at
``max_ongoing_requests`` (5 by default). ``bench/batching.py`` measures what coalescing buys
over one call per path (bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from workflows.serving.memory import BatchTooLarge

Dispatch = Callable[[Hashable, list[Any]], Awaitable[Sequence[Any]]]


@dataclass
class _Pending:
    items: list[Any]
    future: asyncio.Future[list[Any]]


@dataclass
class _Queue:
    pending: deque[_Pending] = field(default_factory=deque)
    size: int = 0
    timer: asyncio.TimerHandle | None = None
    drain_waiting: bool = False
    """A drain is waiting for a slot; it will take what is queued then, so one is enough."""


class Coalescer:
    """Batches ``submit(key, items)`` calls into ``dispatch(key, all_items)`` calls.

    ``dispatch`` must return one result per item, in order. Up to ``max_concurrent``
    dispatches run at once (one per replica); a batch is fixed only when one of them is free,
    so queued work keeps coalescing while every replica is busy.
    """

    def __init__(self, dispatch: Dispatch, max_batch: int, wait_ms: float, max_concurrent: int = 1):
        self._dispatch = dispatch
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000.0
        self._slots = asyncio.Semaphore(max_concurrent)
        self._capacity = max_concurrent
        self._queues: dict[Hashable, _Queue] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0
        self.items = 0
        self.limit: int | None = None
        """Most items one dispatch may hold, learned from an out-of-memory error; None: no limit
        (a request larger than ``max_batch`` then goes alone, whole)."""
        self.on_lowered: Callable[[int, int], None] = lambda old, new: None
        """Called with (old, new) ``max_batch`` when an out-of-memory error lowers it."""

    def shrink(self) -> None:
        """One dispatch slot fewer, for good (a replica died): batches are then cut for the
        replicas that are left instead of queueing two on one. The last slot is never taken,
        so callers still reach the dispatch and hear that nothing is left."""
        if self._capacity > 1:
            self._capacity -= 1
            self._tasks.add(asyncio.get_running_loop().create_task(self._hold_one_slot()))

    async def _hold_one_slot(self) -> None:
        await self._slots.acquire()  # and never release it

    async def submit(self, key: Hashable, items: Sequence[Any]) -> list[Any]:
        if not items:
            return []
        queue = self._queues.setdefault(key, _Queue())
        pending = _Pending(list(items), asyncio.get_running_loop().create_future())
        queue.pending.append(pending)
        queue.size += len(pending.items)
        self._schedule(key, queue)
        return await pending.future

    def _schedule(self, key: Hashable, queue: _Queue) -> None:
        """A full queue asks for a drain now; a partial one after ``wait_ms``, unless one is coming."""
        if queue.size >= self.max_batch:
            self._request_drain(key)
        elif queue.pending and queue.timer is None and not queue.drain_waiting:
            queue.timer = asyncio.get_running_loop().call_later(self.wait_s, self._request_drain, key)

    def _request_drain(self, key: Hashable) -> None:
        queue = self._queues[key]
        if queue.timer is not None:
            queue.timer.cancel()
            queue.timer = None
        if queue.drain_waiting:
            return
        queue.drain_waiting = True
        self._spawn(self._drain(key))

    async def _drain(self, key: Hashable) -> None:
        queue = self._queues[key]
        try:
            await self._slots.acquire()
        finally:
            queue.drain_waiting = False
        batch = self._take(queue)
        self._schedule(key, queue)
        if not batch:  # every queued caller was cancelled
            self._slots.release()
            return
        await self._run(key, batch)

    def _take(self, queue: _Queue) -> list[_Pending]:
        """Whole requests from the head, up to ``max_batch`` items; an oversized one goes alone."""
        batch: list[_Pending] = []
        size = 0
        while queue.pending:
            head = queue.pending[0]
            live = not head.future.done()  # done while queued: its caller was cancelled
            if live and batch and size + len(head.items) > self.max_batch:
                break
            queue.pending.popleft()
            queue.size -= len(head.items)
            if live:
                batch.append(head)
                size += len(head.items)
        return batch

    async def _run(self, key: Hashable, batch: list[_Pending]) -> None:
        """Dispatches ``batch`` on the slot its caller acquired, and frees that slot."""
        flat = [item for pending in batch for item in pending.items]
        error: Exception | None = None
        try:
            results = await self._fitted(key, flat)
        except Exception as exc:
            error = exc
        except BaseException as exc:  # cancelled: every waiter must hear about it
            self._fail(batch, exc)
            raise
        finally:
            self._slots.release()
        if error is None:
            self._deliver(batch, results)
            return
        if len(batch) == 1:
            self._fail(batch, error)
            return
        # isolate the failure: rerun each half, halving again where it fails. Only the requests
        # still awaited: the one that broke the batch may have left meanwhile (its search was
        # cancelled), and then a request rerun alone may well pass.
        live = [pending for pending in batch if not pending.future.done()]
        middle = len(live) // 2
        halves = [half for half in (live[:middle], live[middle:]) if half]
        await asyncio.gather(*(self._rerun(key, half) for half in halves))

    async def _fitted(self, key: Hashable, items: list[Any]) -> list[Any]:
        """One dispatch of ``items``, or several of at most ``limit`` each, in turn on this slot; a
        dispatch that runs out of memory is halved, down to one item, and lowers the limit."""
        results: list[Any] = []
        done = 0
        while done < len(items):
            size = min(len(items) - done, self.limit or len(items))
            try:
                results += await self._call(key, items[done : done + size])
            except BatchTooLarge:
                if size == 1:
                    raise
                self._lower(size // 2)
                continue
            done += size
        return results

    async def _call(self, key: Hashable, items: list[Any]) -> list[Any]:
        self.calls += 1
        self.items += len(items)
        results = list(await self._dispatch(key, items))
        if len(results) != len(items):
            raise RuntimeError(f"dispatch returned {len(results)} results for {len(items)} items")
        return results

    def _lower(self, size: int) -> None:
        """At most ``size`` items a dispatch from now on (concurrent batches that ran out of memory
        together lower it once), and batches cut to that size."""
        if self.limit is not None and self.limit <= size:
            return
        old = self.max_batch
        self.limit = size
        self.max_batch = min(self.max_batch, size)
        if self.max_batch < old:
            self.on_lowered(old, self.max_batch)

    async def _rerun(self, key: Hashable, batch: list[_Pending]) -> None:
        try:
            await self._slots.acquire()
        except BaseException as exc:
            self._fail(batch, exc)
            raise
        await self._run(key, batch)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _deliver(batch: list[_Pending], results: list[Any]) -> None:
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
