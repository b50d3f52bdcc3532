"""The Ray backend of the client protocols: driver-side coalescing, one actor call per batch.

Each model has one :class:`~workflows.batching.Coalescer` with as many concurrent dispatches
as it has replicas; a batch goes to the replica with the fewest calls in flight. Images never
come back to the driver: the generator's replicas return them as objects the driver only
holds references to, strategies receive :class:`~workflows.image_refs.ImageRef` handles, and
the judge's replicas resolve those next to the model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any

import numpy as np
import ray

from actors.interfaces import Advanced, Finished, PathSpec, PathState, Question
from schemas.config import Resources
from workflows.batching import Coalescer
from workflows.image_refs import refs_for


class LeastBusy:
    """Hands each call to the replica with the fewest calls in flight."""

    def __init__(self, replicas: Sequence[ray.actor.ActorHandle]):
        self.replicas = list(replicas)
        self.in_flight = [0] * len(self.replicas)

    async def call(self, use: Callable[[ray.actor.ActorHandle], Awaitable[Any]]) -> Any:
        index = min(range(len(self.replicas)), key=self.in_flight.__getitem__)
        self.in_flight[index] += 1
        try:
            return await use(self.replicas[index])
        finally:
            self.in_flight[index] -= 1


def _coalescer(dispatch: Any, replicas: Sequence[Any], res: Resources) -> Coalescer:
    return Coalescer(
        dispatch, max_batch=res.max_batch, wait_ms=res.batch_wait_ms, max_concurrent=len(replicas)
    )


class RayGeneratorClient:
    def __init__(self, replicas: Sequence[ray.actor.ActorHandle], resources: Resources):
        info = ray.get(replicas[0].info.remote())
        self.name, self.identity, self.num_steps = info.name, info.identity, info.num_steps
        self._pool = LeastBusy(replicas)
        self._batcher = _coalescer(self._dispatch, replicas, resources)

    async def _dispatch(self, key: Hashable, items: list[Any]) -> list[Any]:
        return await self._pool.call(lambda replica: self._call(replica, key, items))

    async def _call(self, replica: ray.actor.ActorHandle, key: Hashable, items: list[Any]) -> list[Any]:
        method, steps, previews = key  # type: ignore[misc]
        if method == "start":
            return await replica.start.remote(items)
        if method == "finish":
            tokens_ref, images_ref = replica.finish.remote(items)
            tokens = await tokens_ref
            images = refs_for(images_ref, len(tokens))
            return [Finished(image, t) for image, t in zip(images, tokens, strict=True)]
        states_ref, previews_ref = replica.advance.remote(items, steps, previews)
        states = await states_ref
        handles = refs_for(previews_ref, len(states)) if previews else [None] * len(states)
        return list(zip(states, handles, strict=True))

    async def start(self, specs: Sequence[PathSpec]) -> list[PathState]:
        return await self._batcher.submit(("start", 0, False), specs)

    async def advance(self, states: Sequence[PathState], steps: int = 1, previews: bool = False) -> Advanced:
        pairs = await self._batcher.submit(("advance", steps, previews), states)
        return Advanced([s for s, _ in pairs], [p for _, p in pairs] if previews else None)

    async def finish(self, states: Sequence[PathState]) -> list[Finished]:
        return await self._batcher.submit(("finish", 0, False), states)


class RayJudgeClient:
    def __init__(self, replicas: Sequence[ray.actor.ActorHandle], resources: Resources):
        info = ray.get(replicas[0].info.remote())
        self.name, self.identity = info.name, info.identity
        self._pool = LeastBusy(replicas)
        self._batcher = _coalescer(self._dispatch, replicas, resources)

    async def _dispatch(self, key: Hashable, items: list[Any]) -> list[Any]:
        images = [image for image, _ in items]
        prompts = [prompt for _, prompt in items]
        if key == "reflect":
            return await self._pool.call(lambda replica: replica.reflect.remote(images, prompts))
        return list(await self._pool.call(lambda replica: replica.ask.remote(images, prompts, key)))

    async def ask(self, images: Sequence[Any], prompts: Sequence[str], question: Question) -> np.ndarray:
        pairs = list(zip(images, prompts, strict=True))
        return np.asarray(await self._batcher.submit(question, pairs), dtype=np.float64)

    async def reflect(self, images: Sequence[Any], prompts: Sequence[str]) -> list[str]:
        return await self._batcher.submit("reflect", list(zip(images, prompts, strict=True)))
