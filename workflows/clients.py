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
from workflows.batching import Coalescer


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

    async def ask(self, images: Sequence[Any], prompts: Sequence[str], question: Question) -> np.ndarray: ...

    async def reflect(self, images: Sequence[Any], prompts: Sequence[str]) -> list[str]: ...


class LocalGeneratorClient:
    """Batches concurrent calls onto one in-process generator (run in a worker thread so the
    event loop keeps collecting the next batch while the model computes)."""

    def __init__(self, model: Generator, max_batch: int = 64, wait_ms: float = 2.0):
        self.model = model
        self.name, self.identity, self.num_steps = model.name, model.identity, model.num_steps
        self._batcher = Coalescer(self._dispatch, max_batch=max_batch, wait_ms=wait_ms)

    async def _dispatch(self, key: Hashable, items: list[Any]) -> list[Any]:
        method, steps, previews = key  # type: ignore[misc]
        if method == "start":
            return await asyncio.to_thread(self.model.start, items)
        if method == "finish":
            return await asyncio.to_thread(self.model.finish, items)
        out = await asyncio.to_thread(self.model.advance, items, steps, previews)
        return list(zip(out.states, out.previews or [None] * len(out.states), strict=True))

    async def start(self, specs: Sequence[PathSpec]) -> list[PathState]:
        return await self._batcher.submit(("start", 0, False), specs)

    async def advance(self, states: Sequence[PathState], steps: int = 1, previews: bool = False) -> Advanced:
        pairs = await self._batcher.submit(("advance", steps, previews), states)
        new_states = [s for s, _ in pairs]
        return Advanced(new_states, [p for _, p in pairs] if previews else None)

    async def finish(self, states: Sequence[PathState]) -> list[Finished]:
        return await self._batcher.submit(("finish", 0, False), states)


class LocalJudgeClient:
    """Batches concurrent ``ask`` calls with the same question onto one in-process judge."""

    def __init__(self, model: Judge, max_batch: int = 64, wait_ms: float = 2.0):
        self.model = model
        self.name, self.identity = model.name, model.identity
        self._batcher = Coalescer(self._dispatch, max_batch=max_batch, wait_ms=wait_ms)

    async def _dispatch(self, key: Hashable, items: list[Any]) -> list[Any]:
        images = [image for image, _ in items]
        prompts = [prompt for _, prompt in items]
        if key == "reflect":
            return await asyncio.to_thread(self.model.reflect, images, prompts)
        return list(await asyncio.to_thread(self.model.ask, images, prompts, key))

    async def ask(self, images: Sequence[Any], prompts: Sequence[str], question: Question) -> np.ndarray:
        return np.asarray(
            await self._batcher.submit(question, list(zip(images, prompts, strict=True))),
            dtype=np.float64,
        )

    async def reflect(self, images: Sequence[Any], prompts: Sequence[str]) -> list[str]:
        return await self._batcher.submit("reflect", list(zip(images, prompts, strict=True)))
