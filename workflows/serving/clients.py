"""What a search strategy talks to: async, batched clients of a generator and a judge.

Strategies only ever await these methods, with as many paths as they have at hand; the
client coalesces the calls of every concurrent search into full batches. Two backends
implement the same surface: in-process models (tests, notebooks, ``run.backend: local``)
and Ray replicas (``workflows/replicas.py``). Images handed out by a client are opaque
handles: arrays in-process, object-store references under Ray. A strategy passes them on
(to the judge, into its result) and never looks at the pixels.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from typing import Any, Protocol

import numpy as np

from actors.interfaces import Advanced, Finished, Generator, Judge, PathSpec, PathState, Question
from workflows.serving.batching import Coalescer


class GeneratorClient(Protocol):
    name: str
    identity: str
    num_steps: int

    async def start(self, specs: Sequence[PathSpec]) -> list[PathState]: ...

    async def advance(
        self, states: Sequence[PathState], steps: int = 1, previews: bool = False
    ) -> Advanced: ...

    async def finish(self, states: Sequence[PathState]) -> list[Finished]: ...


class JudgeClient(Protocol):
    name: str
    identity: str
    answers: frozenset[str]

    async def ask(self, images: Sequence[Any], prompts: Sequence[str], question: Question) -> np.ndarray:
        """(n, 2) float64: P(yes) and P(no) per image, as ``actors.interfaces.Judge.ask``."""
        ...

    async def reflect(self, images: Sequence[Any], prompts: Sequence[str]) -> list[str]: ...


class BatchedGeneratorClient:
    """The client surface, written once: every call is queued in a :class:`Coalescer` keyed by
    (method, steps, previews) and leaves as one ``_run_batch`` per batch. A backend only says
    how one batch runs."""

    def __init__(self, name: str, identity: str, num_steps: int, batcher_args: dict[str, Any]):
        self.name, self.identity, self.num_steps = name, identity, num_steps
        self._batcher = Coalescer(self._dispatch, **batcher_args)

    async def _dispatch(self, key: Hashable, items: list[Any]) -> list[Any]:
        method, steps, previews = key  # type: ignore[misc]
        return await self._run_batch(method, items, steps, previews)

    async def _run_batch(self, method: str, items: list[Any], steps: int, previews: bool) -> list[Any]:
        """One result per item: a PathState (start), a (PathState, preview or None) pair
        (advance) or a Finished (finish)."""
        raise NotImplementedError

    async def start(self, specs: Sequence[PathSpec]) -> list[PathState]:
        return await self._batcher.submit(("start", 0, False), specs)

    async def advance(self, states: Sequence[PathState], steps: int = 1, previews: bool = False) -> Advanced:
        pairs = await self._batcher.submit(("advance", steps, previews), states)
        return Advanced([s for s, _ in pairs], [p for _, p in pairs] if previews else None)

    async def finish(self, states: Sequence[PathState]) -> list[Finished]:
        return await self._batcher.submit(("finish", 0, False), states)


class BatchedJudgeClient:
    """The judge side of :class:`BatchedGeneratorClient`: calls with the same question (or
    ``reflect``) coalesce; a backend only says how one batch runs."""

    def __init__(self, name: str, identity: str, answers: frozenset[str], batcher_args: dict[str, Any]):
        self.name, self.identity, self.answers = name, identity, answers
        self._batcher = Coalescer(self._dispatch, **batcher_args)

    async def _dispatch(self, key: Hashable, items: list[Any]) -> list[Any]:
        images = [image for image, _ in items]
        prompts = [prompt for _, prompt in items]
        return list(await self._run_batch(str(key), images, prompts))

    async def _run_batch(self, key: str, images: list[Any], prompts: list[str]) -> Sequence[Any]:
        """A (P(yes), P(no)) row per image for a question key, or reflections for ``reflect``."""
        raise NotImplementedError

    async def ask(self, images: Sequence[Any], prompts: Sequence[str], question: Question) -> np.ndarray:
        pairs = list(zip(images, prompts, strict=True))
        rows = await self._batcher.submit(question, pairs)
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), 2)

    async def reflect(self, images: Sequence[Any], prompts: Sequence[str]) -> list[str]:
        return await self._batcher.submit("reflect", list(zip(images, prompts, strict=True)))


class LocalGeneratorClient(BatchedGeneratorClient):
    """An in-process generator, each batch run in a worker thread so the event loop keeps
    collecting the next batch while the model computes."""

    def __init__(self, model: Generator, max_batch: int = 64, wait_ms: float = 2.0):
        super().__init__(
            model.name, model.identity, model.num_steps, {"max_batch": max_batch, "wait_ms": wait_ms}
        )
        self.model = model

    async def _run_batch(self, method: str, items: list[Any], steps: int, previews: bool) -> list[Any]:
        if method == "start":
            return await asyncio.to_thread(self.model.start, items)
        if method == "finish":
            return await asyncio.to_thread(self.model.finish, items)
        out = await asyncio.to_thread(self.model.advance, items, steps, previews)
        return list(zip(out.states, out.previews or [None] * len(out.states), strict=True))


class LocalJudgeClient(BatchedJudgeClient):
    """An in-process judge, each batch run in a worker thread."""

    def __init__(self, model: Judge, max_batch: int = 64, wait_ms: float = 2.0):
        super().__init__(
            model.name, model.identity, model.answers, {"max_batch": max_batch, "wait_ms": wait_ms}
        )
        self.model = model

    async def _run_batch(self, key: str, images: list[Any], prompts: list[str]) -> Sequence[Any]:
        if key == "reflect":
            return await asyncio.to_thread(self.model.reflect, images, prompts)
        return await asyncio.to_thread(self.model.ask, images, prompts, key)  # type: ignore[arg-type]
