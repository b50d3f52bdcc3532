"""The clients on Ray replicas: driver-side coalescing, one actor call per batch.

Each model's batcher runs as many batches at once as it has replicas; a batch goes to the live
replica with the fewest calls in flight. Images never come back to the driver: the generator's
replicas return them as objects the driver only holds references to (one ``ObjectRef`` per image,
see ``image_refs.py``), strategies pass those handles on, and the judge's replicas resolve them
next to the model.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import ray
from ray.exceptions import ActorDiedError

from actors.interfaces import Finished, PathSpec, PathState
from schemas.config import Resources
from workflows.serving.batching import Coalescer
from workflows.serving.clients import (
    GeneratorCalls,
    GeneratorClient,
    JudgeCalls,
    JudgeClient,
    batcher,
    per_path,
    unzip,
)
from workflows.serving.image_refs import call_with_images
from workflows.serving.replicas import ModelInfo

log = logging.getLogger(__name__)


class NoReplicaLeft(RuntimeError):
    """Every replica of a model died for good (its ``max_restarts`` were used up): the run cannot
    go on (``workflows.driver.errors.RUN_ENDING``)."""


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


def _generator_calls(pool: LeastBusy) -> GeneratorCalls:
    async def start(specs: list[PathSpec]) -> list[PathState]:
        return await pool.call(lambda replica: replica.start.remote(specs))

    async def advance(states: list[PathState], steps: int, previews: bool) -> list[tuple[PathState, Any]]:
        async def on(replica: ray.actor.ActorHandle) -> list[tuple[PathState, Any]]:
            count = len(states) if previews else 0
            states_ref, images = call_with_images(replica.advance, count, states, steps, previews)
            return per_path(await states_ref, images)

        return await pool.call(on)

    async def finish(states: list[PathState]) -> list[Finished]:
        async def on(replica: ray.actor.ActorHandle) -> list[Finished]:
            tokens_ref, images = call_with_images(replica.finish, len(states), states)
            return [Finished(image, tokens) for image, tokens in zip(images, await tokens_ref, strict=True)]

        return await pool.call(on)

    return GeneratorCalls(start, advance, finish)


def _judge_calls(pool: LeastBusy) -> JudgeCalls:
    return JudgeCalls(
        ask=lambda pairs, question: pool.call(lambda replica: replica.ask.remote(*unzip(pairs), question)),
        reflect=lambda pairs: pool.call(lambda replica: replica.reflect.remote(*unzip(pairs))),
    )


def _on_replicas(
    replicas: Sequence[ray.actor.ActorHandle], res: Resources
) -> tuple[ModelInfo, Coalescer, LeastBusy]:
    """The model's identity, a batcher running as many batches at once as there are replicas,
    and the pool of replicas, which gives up a batch slot for each replica it retires."""
    batches = batcher(res.max_batch, res.batch_wait_ms, max_concurrent=len(replicas))
    return ray.get(replicas[0].info.remote()), batches, LeastBusy(replicas, on_retire=batches.shrink)


class RayGeneratorClient(GeneratorClient):
    def __init__(self, replicas: Sequence[ray.actor.ActorHandle], resources: Resources):
        info, batches, self._pool = _on_replicas(replicas, resources)
        calls = _generator_calls(self._pool)
        super().__init__(info.name, info.identity, info.num_steps, calls, batches, info.codebook_size)


class RayJudgeClient(JudgeClient):
    def __init__(self, replicas: Sequence[ray.actor.ActorHandle], resources: Resources):
        info, batches, self._pool = _on_replicas(replicas, resources)
        super().__init__(info.name, info.identity, info.answers, _judge_calls(self._pool), batches)
