"""The Coalescer cuts batches only when a slot is free, never splits a request, isolates failures by
bisection, and splits a batch that ran out of memory.

The dispatch double records every batch and blocks on an ``asyncio.Event`` until the test
opens it, so "every replica is busy" is a state the test holds, not a timing it hopes for.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Hashable, Sequence
from typing import Any

import pytest

from workflows.serving.batching import Coalescer
from workflows.serving.memory import BatchTooLarge


class GatedDispatch:
    """Returns ``item * 10`` per item once ``gate`` is open; items equal to ``bad`` fail the batch."""

    def __init__(self, bad: int | None = None):
        self.gate = asyncio.Event()
        self.batches: list[list[int]] = []
        self.bad = bad

    async def __call__(self, key: Hashable, items: list[int]) -> Sequence[int]:
        self.batches.append(list(items))
        await self.gate.wait()
        if self.bad in items:
            raise ValueError(f"bad item {self.bad}")
        return [item * 10 for item in items]


async def idle() -> None:
    """Lets every ready callback and zero-delay timer run (a few loop turns)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def occupy_the_only_slot(batcher: Coalescer) -> asyncio.Task[list[Any]]:
    first = asyncio.create_task(batcher.submit("k", [0]))
    await idle()
    return first


def run(main: Any) -> Any:
    return asyncio.run(main())


def test_requests_queued_while_all_slots_are_busy_leave_as_one_full_batch() -> None:
    async def main() -> tuple[list[list[int]], list[list[int]]]:
        dispatch = GatedDispatch()
        batcher = Coalescer(dispatch, max_batch=4, wait_ms=0, max_concurrent=1)
        first = await occupy_the_only_slot(batcher)
        waiting = []
        for i in range(1, 5):  # each timer fires while the slot is still busy
            waiting.append(asyncio.create_task(batcher.submit("k", [i])))
            await idle()
        assert dispatch.batches == [[0]]
        dispatch.gate.set()
        results = await asyncio.gather(first, *waiting)
        return dispatch.batches, results

    batches, results = run(main)
    assert batches == [[0], [1, 2, 3, 4]]
    assert results == [[0], [10], [20], [30], [40]]


def test_max_batch_is_respected_and_requests_are_never_split() -> None:
    async def main() -> tuple[list[list[int]], list[list[int]], Coalescer]:
        dispatch = GatedDispatch()
        batcher = Coalescer(dispatch, max_batch=4, wait_ms=0, max_concurrent=1)
        first = await occupy_the_only_slot(batcher)
        requests = [[1, 2], [3, 4, 5], [6], [7, 8, 9, 10], [11]]
        waiting = [asyncio.create_task(batcher.submit("k", r)) for r in requests]
        await idle()
        dispatch.gate.set()
        results = await asyncio.gather(first, *waiting)
        return dispatch.batches, results, batcher

    batches, results, batcher = run(main)
    assert batches == [[0], [1, 2], [3, 4, 5, 6], [7, 8, 9, 10], [11]]
    assert results[1:] == [[10, 20], [30, 40, 50], [60], [70, 80, 90, 100], [110]]
    assert (batcher.calls, batcher.items) == (5, 12)


def test_an_oversized_request_goes_alone() -> None:
    async def main() -> tuple[list[list[int]], list[list[int]]]:
        dispatch = GatedDispatch()
        batcher = Coalescer(dispatch, max_batch=3, wait_ms=0, max_concurrent=1)
        first = await occupy_the_only_slot(batcher)
        requests = [[1], [2, 3, 4, 5, 6], [7]]
        waiting = [asyncio.create_task(batcher.submit("k", r)) for r in requests]
        await idle()
        dispatch.gate.set()
        return dispatch.batches, await asyncio.gather(first, *waiting)

    batches, results = run(main)
    assert batches == [[0], [1], [2, 3, 4, 5, 6], [7]]
    assert results[2] == [20, 30, 40, 50, 60]


def test_keys_queue_apart_and_each_caller_gets_its_own_results_in_order() -> None:
    async def main() -> tuple[list[list[int]], list[list[int]]]:
        dispatch = GatedDispatch()
        dispatch.gate.set()
        batcher = Coalescer(dispatch, max_batch=64, wait_ms=5, max_concurrent=2)
        requests = [("a", [3, 1, 2]), ("b", [9]), ("a", [5, 4]), ("b", [8, 7])]
        results = await asyncio.gather(*(batcher.submit(key, items) for key, items in requests))
        return dispatch.batches, results

    batches, results = run(main)
    assert sorted(batches) == [[3, 1, 2, 5, 4], [9, 8, 7]]
    assert results == [[30, 10, 20], [90], [50, 40], [80, 70]]


def test_a_partial_batch_leaves_on_the_timer_when_a_slot_is_free() -> None:
    async def main() -> tuple[list[list[int]], list[list[int]]]:
        dispatch = GatedDispatch()
        dispatch.gate.set()
        batcher = Coalescer(dispatch, max_batch=64, wait_ms=5, max_concurrent=4)
        results = await asyncio.gather(batcher.submit("k", [1]), batcher.submit("k", [2, 3]))
        return dispatch.batches, results

    batches, results = run(main)
    assert batches == [[1, 2, 3]]  # one batch, far below max_batch: the timer sent it
    assert results == [[10], [20, 30]]


def test_a_failing_batch_fails_only_the_bad_request() -> None:
    async def main() -> tuple[list[list[int]], list[Any]]:
        dispatch = GatedDispatch(bad=2)
        dispatch.gate.set()
        batcher = Coalescer(dispatch, max_batch=64, wait_ms=5, max_concurrent=2)
        requests = [[1], [2, 3], [4]]
        outcomes = await asyncio.gather(*(batcher.submit("k", r) for r in requests), return_exceptions=True)
        return dispatch.batches, outcomes

    batches, outcomes = run(main)
    # bisected: [1] | [2, 3] [4], then the failing half again: [2, 3] | [4]
    assert batches[0] == [1, 2, 3, 4] and sorted(batches[1:]) == [[1], [2, 3], [2, 3, 4], [4]]
    assert outcomes[0] == [10] and outcomes[2] == [40]
    assert isinstance(outcomes[1], ValueError) and "bad item 2" in str(outcomes[1])


def test_a_request_whose_bad_batch_mate_left_is_rerun_alone() -> None:
    """The request that broke the batch was cancelled while the batch ran (its search failed
    elsewhere): the one left must be rerun, not blamed."""

    async def main() -> tuple[list[list[int]], list[int], bool]:
        dispatch = GatedDispatch(bad=1)
        batcher = Coalescer(dispatch, max_batch=4, wait_ms=0, max_concurrent=1)
        bad = asyncio.create_task(batcher.submit("k", [1]))
        good = asyncio.create_task(batcher.submit("k", [2]))
        await idle()
        assert dispatch.batches == [[1, 2]]
        bad.cancel()
        await idle()
        dispatch.gate.set()
        return dispatch.batches, await good, bad.cancelled()

    batches, result, cancelled = run(main)
    assert cancelled and result == [20]
    assert batches == [[1, 2], [2]]


class PoisonedModel:
    """A model double that raises for a whole batch if any input in it is poisoned, and runs out of
    memory on batches above ``fits`` items; it counts its calls."""

    def __init__(self, poisoned: set[int] = frozenset(), fits: int | None = None):
        self.poisoned, self.fits = poisoned, fits
        self.sizes: list[int] = []

    async def __call__(self, key: Hashable, items: list[int]) -> list[int]:
        self.sizes.append(len(items))
        await asyncio.sleep(0)
        if self.fits is not None and len(items) > self.fits:
            raise BatchTooLarge(f"out of memory at {len(items)} items")
        if self.poisoned & set(items):
            raise ValueError(f"poisoned input in {sorted(self.poisoned & set(items))}")
        return [item * 10 for item in items]


async def submit_all(batcher: Coalescer, requests: list[list[int]]) -> list[Any]:
    return await asyncio.gather(*(batcher.submit("k", r) for r in requests), return_exceptions=True)


@pytest.mark.parametrize("n", [16, 64, 256])
def test_a_poisoned_request_is_found_by_bisection_in_log2_n_rounds(n: int) -> None:
    """One request of n breaks the model: 1 + 2 log2(n) calls find it, where rerunning each
    request alone took 1 + n."""
    model = PoisonedModel(poisoned={n // 3})

    async def main() -> list[Any]:
        return await submit_all(Coalescer(model, max_batch=n, wait_ms=5), [[i] for i in range(n)])

    outcomes = run(main)
    assert len(model.sizes) == 1 + 2 * math.log2(n) < 1 + n
    assert [o for i, o in enumerate(outcomes) if i != n // 3] == [[i * 10] for i in range(n) if i != n // 3]
    assert isinstance(outcomes[n // 3], ValueError)


def test_two_poisoned_requests_fail_alone_and_the_rest_are_served() -> None:
    model = PoisonedModel(poisoned={5, 40})

    async def main() -> list[Any]:
        return await submit_all(Coalescer(model, max_batch=64, wait_ms=5), [[i] for i in range(64)])

    outcomes = run(main)
    failed = [i for i, o in enumerate(outcomes) if isinstance(o, ValueError)]
    assert failed == [5, 40]
    assert all(outcomes[i] == [i * 10] for i in range(64) if i not in failed)
    assert len(model.sizes) <= 1 + 2 * 2 * math.log2(64) < 64


def test_out_of_memory_splits_the_batch_and_lowers_max_batch_for_good() -> None:
    model = PoisonedModel(fits=16)
    lowered: list[tuple[int, int]] = []

    async def main() -> tuple[list[Any], list[Any], Coalescer]:
        batcher = Coalescer(model, max_batch=64, wait_ms=5)
        batcher.on_lowered = lambda old, new: lowered.append((old, new))
        first = await submit_all(batcher, [[i, i + 1000] for i in range(32)])  # 64 items, 2 a request
        second = await submit_all(batcher, [[i] for i in range(40)])
        return first, second, batcher

    first, second, batcher = run(main)
    assert first == [[i * 10, (i + 1000) * 10] for i in range(32)]  # nothing lost
    assert second == [[i * 10] for i in range(40)]
    assert lowered == [(64, 32), (32, 16)] and (batcher.max_batch, batcher.limit) == (16, 16)
    assert model.sizes[:4] == [64, 32, 16, 16]  # halved until it fits, then in turn at that size
    assert max(model.sizes[4:]) == 16  # every later batch is cut to the lowered size at once


def test_one_request_larger_than_memory_is_split_across_dispatches() -> None:
    model = PoisonedModel(fits=3)

    async def main() -> list[Any]:
        batcher = Coalescer(model, max_batch=4, wait_ms=0)
        return await submit_all(batcher, [list(range(10))])

    assert run(main) == [[i * 10 for i in range(10)]]
    assert model.sizes == [10, 5, 2, 2, 2, 2, 2]  # 10 and 5 ran out; then pairs, in order


def test_a_single_item_that_does_not_fit_fails_only_its_caller() -> None:
    model = PoisonedModel(fits=0)

    async def main() -> list[Any]:
        return await submit_all(Coalescer(model, max_batch=4, wait_ms=5), [[1], [2]])

    outcomes = run(main)
    assert all(isinstance(o, BatchTooLarge) for o in outcomes)


def test_a_wrong_number_of_results_is_an_error_for_the_caller() -> None:
    async def short(key: Hashable, items: list[int]) -> list[int]:
        return items[:-1]

    async def main() -> None:
        await Coalescer(short, max_batch=8, wait_ms=0).submit("k", [1, 2])

    with pytest.raises(RuntimeError, match="1 results for 2 items"):
        run(main)


def test_a_cancelled_waiting_caller_leaves_the_others_served_and_is_not_dispatched() -> None:
    async def main() -> tuple[list[list[int]], list[list[int]], bool]:
        dispatch = GatedDispatch()
        batcher = Coalescer(dispatch, max_batch=4, wait_ms=0, max_concurrent=1)
        first = await occupy_the_only_slot(batcher)
        one, two, three = (asyncio.create_task(batcher.submit("k", [i])) for i in (1, 2, 3))
        await idle()
        two.cancel()
        await idle()
        dispatch.gate.set()
        results = await asyncio.gather(first, one, three)
        return dispatch.batches, results, two.cancelled()

    batches, results, cancelled = run(main)
    assert cancelled
    assert batches == [[0], [1, 3]]
    assert results == [[0], [10], [30]]


def test_a_cancelled_dispatch_reaches_every_caller_of_its_batch() -> None:
    async def cancelled(key: Hashable, items: list[int]) -> list[int]:
        raise asyncio.CancelledError

    async def main() -> list[Any]:
        batcher = Coalescer(cancelled, max_batch=8, wait_ms=5)
        return await asyncio.gather(
            batcher.submit("k", [1]), batcher.submit("k", [2]), return_exceptions=True
        )

    outcomes = run(main)
    assert len(outcomes) == 2 and all(isinstance(o, asyncio.CancelledError) for o in outcomes)


def test_a_retired_replica_takes_its_slot_with_it_but_never_the_last() -> None:
    async def main() -> tuple[int, int]:
        dispatch = GatedDispatch()
        batcher = Coalescer(dispatch, max_batch=1, wait_ms=0, max_concurrent=3)
        batcher.shrink()  # 3 replicas -> 2
        waiting = [asyncio.create_task(batcher.submit("k", [i])) for i in range(4)]
        await idle()
        concurrent_after_one_death = len(dispatch.batches)
        batcher.shrink()
        batcher.shrink()  # the last slot stays: callers must still hear "no replica left"
        dispatch.gate.set()
        await asyncio.gather(*waiting)
        more = [asyncio.create_task(batcher.submit("k", [i])) for i in range(4, 7)]
        dispatch.gate.clear()
        await idle()
        concurrent_at_the_end = len(dispatch.batches) - 4
        dispatch.gate.set()
        await asyncio.gather(*more)
        return concurrent_after_one_death, concurrent_at_the_end

    assert run(main) == (2, 1)
