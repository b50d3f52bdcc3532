"""What a search strategy talks to: async, batched clients of a generator and a judge.

Strategies only ever await these methods, with as many paths as they have at hand; the
client coalesces the calls of every concurrent search into full batches. A client is one
batcher (a :class:`~workflows.serving.batching.Coalescer`) and a table saying how one batch of
each method runs on its backend: in-process models (tests, notebooks, ``run.backend: local``;
below) or Ray replicas (``ray_clients.py``). A call is queued under its batch function and
arguments, so calls that can share a batch (same method, same steps, same question) do.

Images handed out by a client are opaque handles: arrays in-process, object-store references
under Ray. A strategy passes them on (to the judge, into its result) and never looks at the pixels.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from actors.interfaces import Advanced, Finished, Generator, Judge, PathSpec, PathState, Question
from schemas.config import Resources
from workflows.serving.batching import Coalescer
from workflows.serving.checks import checked_answers, checked_tokens
from workflows.serving.memory import memory_checked

BatchCall = Callable[..., Awaitable[Sequence[Any]]]
"""Runs one batch of one method: ``(items, *arguments)``, one result per item."""

Pairs = list[tuple[Any, str]]
"""A judge batch: (image, prompt) per item."""

DEFAULTS = Resources()
"""The recipe's batching defaults, for clients built without a recipe (tests, notebooks)."""


async def run_batch(key: Hashable, items: list[Any]) -> Sequence[Any]:
    """Every client's dispatch: a queue's key is the batch call and its arguments."""
    call, *args = key  # type: ignore[misc]
    return await call(items, *args)


def batcher(max_batch: int, wait_ms: float, max_concurrent: int = 1) -> Coalescer:
    return Coalescer(run_batch, max_batch, wait_ms, max_concurrent)


@dataclass(frozen=True)
class GeneratorCalls:
    """How one batch of each generator method runs on a backend."""

    start: Callable[[list[PathSpec]], Awaitable[list[PathState]]]
    advance: Callable[[list[PathState], int, bool], Awaitable[list[tuple[PathState, Any]]]]
    """One (state, preview or None) per path, so the batch splits back per caller."""
    finish: Callable[[list[PathState]], Awaitable[list[Finished]]]


@dataclass(frozen=True)
class JudgeCalls:
    """How one batch of each judge method runs on a backend."""

    ask: Callable[[Pairs, Question], Awaitable[Sequence[Any]]]
    """A (P(yes), P(no)) row per pair."""
    reflect: Callable[[Pairs], Awaitable[list[str]]]


class ModelClient:
    """What both clients share: the batcher, whose ``max_batch`` an out-of-memory error lowers."""

    def __init__(self, batcher: Coalescer):
        self._batcher = batcher

    def on_max_batch_lowered(self, report: Callable[[int, int], None]) -> None:
        """``report(old, new)`` each time an out-of-memory error lowers ``max_batch``."""
        self._batcher.on_lowered = report


class GeneratorClient(ModelClient):
    """``codebook_size``, when the generator declares one, bounds the token ids it may finish with."""

    def __init__(
        self,
        name: str,
        identity: str,
        num_steps: int,
        calls: GeneratorCalls,
        batcher: Coalescer,
        codebook_size: int | None = None,
    ):
        super().__init__(batcher)
        self.name, self.identity, self.num_steps = name, identity, num_steps
        self.codebook_size = codebook_size
        self._calls = calls

    async def start(self, specs: Sequence[PathSpec]) -> list[PathState]:
        return await self._batcher.submit((self._calls.start,), specs)

    async def advance(self, states: Sequence[PathState], steps: int = 1, previews: bool = False) -> Advanced:
        pairs = await self._batcher.submit((self._calls.advance, steps, previews), states)
        return Advanced([s for s, _ in pairs], [p for _, p in pairs] if previews else None)

    async def finish(self, states: Sequence[PathState]) -> list[Finished]:
        finished = await self._batcher.submit((self._calls.finish,), states)
        return checked_tokens(finished, self.identity, self.codebook_size)


class JudgeClient(ModelClient):
    """``name`` is the judge's kind (``judge.kind`` in a recipe); ``answers`` the questions it
    can answer, and ``reflect`` when it writes reflections."""

    def __init__(
        self, name: str, identity: str, answers: frozenset[str], calls: JudgeCalls, batcher: Coalescer
    ):
        super().__init__(batcher)
        self.name, self.identity, self.answers = name, identity, answers
        self._calls = calls

    async def ask(self, images: Sequence[Any], prompts: Sequence[str], question: Question) -> np.ndarray:
        """(n, 2) float64: P(yes) and P(no) per image, as ``actors.interfaces.Judge.ask``."""
        pairs = list(zip(images, prompts, strict=True))
        rows = await self._batcher.submit((self._calls.ask, question), pairs)
        return checked_answers(rows, self.identity, question)

    async def reflect(self, images: Sequence[Any], prompts: Sequence[str]) -> list[str]:
        return await self._batcher.submit((self._calls.reflect,), list(zip(images, prompts, strict=True)))


def per_path(states: Sequence[PathState], previews: Sequence[Any] | None) -> list[tuple[PathState, Any]]:
    """A batch's advanced states with their previews (or None), one pair per path."""
    return list(zip(states, previews or [None] * len(states), strict=True))


def unzip(pairs: Pairs) -> tuple[list[Any], list[str]]:
    return [image for image, _ in pairs], [prompt for _, prompt in pairs]


def in_thread(work: Callable[..., Any]) -> BatchCall:
    """``work`` in a worker thread, so the event loop keeps collecting the next batch meanwhile;
    out of memory, it raises :class:`~workflows.serving.memory.BatchTooLarge` as a replica does."""
    checked = memory_checked(work)

    async def run(*args: Any) -> Any:
        return await asyncio.to_thread(checked, *args)

    return run


class LocalGeneratorClient(GeneratorClient):
    """A generator in this process."""

    def __init__(
        self, model: Generator, max_batch: int = DEFAULTS.max_batch, wait_ms: float = DEFAULTS.batch_wait_ms
    ):
        def advance(states: list[PathState], steps: int, previews: bool) -> list[tuple[PathState, Any]]:
            moved = model.advance(states, steps, previews)
            return per_path(moved.states, moved.previews)

        calls = GeneratorCalls(in_thread(model.start), in_thread(advance), in_thread(model.finish))
        batches = batcher(max_batch, wait_ms)
        codebook = getattr(model, "codebook_size", None)
        super().__init__(model.name, model.identity, model.num_steps, calls, batches, codebook)


class LocalJudgeClient(JudgeClient):
    """A judge in this process."""

    def __init__(
        self, model: Judge, max_batch: int = DEFAULTS.max_batch, wait_ms: float = DEFAULTS.batch_wait_ms
    ):
        calls = JudgeCalls(
            ask=in_thread(lambda pairs, question: model.ask(*unzip(pairs), question)),
            reflect=in_thread(lambda pairs: model.reflect(*unzip(pairs))),
        )
        super().__init__(model.name, model.identity, model.answers, calls, batcher(max_batch, wait_ms))
