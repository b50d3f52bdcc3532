"""The Ray backend of the client protocols: driver-side coalescing, one actor call per batch.

Each model has one :class:`~workflows.serving.batching.Coalescer` with as many concurrent dispatches
as it has replicas; a batch goes to the live replica with the fewest calls in flight. Images never
come back to the driver: the generator's replicas return them as objects the driver only
holds references to (one ``ObjectRef`` per image, see :mod:`workflows.serving.image_refs`), strategies
pass those handles on, and the judge's replicas resolve them next to the model.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import ray
from ray.exceptions import ActorDiedError

from actors.interfaces import Finished
from schemas.config import Resources
from workflows.driver.errors import RunStopped
from workflows.serving.clients import BatchedGeneratorClient, BatchedJudgeClient
from workflows.serving.image_refs import call_with_images

log = logging.getLogger(__name__)


class NoReplicaLeft(RunStopped):
    """Every replica of a model died for good (its ``max_restarts`` were used up)."""


class LeastBusy:
    """Hands each call to the replica with the fewest calls in flight, and retires dead ones.

    A replica that is dead for good fails every call at once, so its in-flight count stays
    near zero and it would win every choice; on Ray's ``ActorDiedError`` (raised only once an
    actor will not restart; a restarting one raises ``ActorUnavailableError``) it leaves the
    pool and the call reruns on another replica. Model calls are idempotent, so a rerun is safe.
    """

    def __init__(
        self, replicas: Sequence[ray.actor.ActorHandle], on_retire: Callable[[], None] = lambda: None
    ):
        self.replicas = list(replicas)
        self.in_flight = [0] * len(self.replicas)
        self.dead: set[int] = set()
        self.on_retire = on_retire

    async def call(self, use: Callable[[ray.actor.ActorHandle], Awaitable[Any]]) -> Any:
        while True:
            index = self._least_busy()
            self.in_flight[index] += 1
            try:
                return await use(self.replicas[index])
            except ActorDiedError as exc:
                self._retire(index, exc)
                if len(self.dead) == len(self.replicas):
                    raise self._none_left() from exc
            finally:
                self.in_flight[index] -= 1

    def _least_busy(self) -> int:
        alive = [i for i in range(len(self.replicas)) if i not in self.dead]
        if not alive:
            raise self._none_left()
        return min(alive, key=self.in_flight.__getitem__)

    def _none_left(self) -> NoReplicaLeft:
        return NoReplicaLeft(
            f"all {len(self.replicas)} replicas died and will not restart (max_restarts used up); "
            "see the Ray logs of the dead actors for why"
        )

    def _retire(self, index: int, exc: ActorDiedError) -> None:
        if index not in self.dead:
            self.dead.add(index)
            self.on_retire()
            log.warning(
                "replica %d of %d died for good, %d left: %s",
                index,
                len(self.replicas),
                len(self.replicas) - len(self.dead),
                exc,
            )


def _batcher_args(replicas: Sequence[Any], res: Resources) -> dict[str, Any]:
    return {"max_batch": res.max_batch, "wait_ms": res.batch_wait_ms, "max_concurrent": len(replicas)}


class RayGeneratorClient(BatchedGeneratorClient):
    def __init__(self, replicas: Sequence[ray.actor.ActorHandle], resources: Resources):
        info = ray.get(replicas[0].info.remote())
        super().__init__(info.name, info.identity, info.num_steps, _batcher_args(replicas, resources))
        self._pool = LeastBusy(replicas, on_retire=self._batcher.shrink)

    async def _run_batch(self, method: str, items: list[Any], steps: int, previews: bool) -> list[Any]:
        return await self._pool.call(lambda replica: self._call(replica, method, items, steps, previews))

    @staticmethod
    async def _call(
        replica: ray.actor.ActorHandle, method: str, items: list[Any], steps: int, previews: bool
    ) -> list[Any]:
        if method == "start":
            return await replica.start.remote(items)
        if method == "finish":
            tokens_ref, images = call_with_images(replica.finish, len(items), items)
            tokens = await tokens_ref
            return [Finished(image, t) for image, t in zip(images, tokens, strict=True)]
        count = len(items) if previews else 0
        states_ref, handles = call_with_images(replica.advance, count, items, steps, previews)
        states = await states_ref
        return list(zip(states, handles or [None] * len(states), strict=True))


class RayJudgeClient(BatchedJudgeClient):
    def __init__(self, replicas: Sequence[ray.actor.ActorHandle], resources: Resources):
        info = ray.get(replicas[0].info.remote())
        super().__init__(info.name, info.identity, info.answers, _batcher_args(replicas, resources))
        self._pool = LeastBusy(replicas, on_retire=self._batcher.shrink)

    async def _run_batch(self, key: str, images: list[Any], prompts: list[str]) -> Sequence[Any]:
        if key == "reflect":
            return await self._pool.call(lambda replica: replica.reflect.remote(images, prompts))
        return await self._pool.call(lambda replica: replica.ask.remote(images, prompts, key))
