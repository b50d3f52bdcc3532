"""Replicas land where the recipe says, and the Ray clients keep images in the object store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pytest
import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError

from actors.interfaces import PathSpec
from actors.toy import ToyGenerator, ToyJudge
from schemas.config import GeneratorSpec, JudgeSpec, Resources
from workflows.serving.image_refs import resolve_images
from workflows.serving.ray_clients import LeastBusy, NoReplicaLeft, RayGeneratorClient, RayJudgeClient
from workflows.serving.replicas import GeneratorReplica, JudgeReplica, launch

pytestmark = pytest.mark.ray
FULL_SIZE = 256
IMAGE_BYTES = FULL_SIZE * FULL_SIZE * 3


@pytest.fixture(scope="module")
def toy_replicas(ray_cluster: None) -> Iterator[tuple[list, list]]:
    """2 generators on a whole fake GPU each, 4 judges on half a GPU each: all 4 GPUs.

    The generators draw full-size images, which are too big for Ray to inline into the reply.
    """
    gen = GeneratorSpec(
        kind="toy",
        checkpoint="none",
        options={"image_size": FULL_SIZE},
        resources=Resources(replicas=2, num_gpus=1),
    )
    judge = JudgeSpec(kind="toy", checkpoint="none", resources=Resources(replicas=4, num_gpus=0.5))
    generators = launch(GeneratorReplica, gen, "test-replicas-generator")
    judges = launch(JudgeReplica, judge, "test-replicas-judge")
    yield generators, judges
    for actor in generators + judges:
        ray.kill(actor)


def test_replicas_are_placed_as_the_recipe_says(toy_replicas: tuple[list, list]) -> None:
    generators, judges = toy_replicas
    gen_places = ray.get([g.placement.remote() for g in generators])
    judge_places = ray.get([j.placement.remote() for j in judges])
    assert [p["resources"] for p in gen_places] == [{"GPU": 1.0}] * 2  # and no CPU: num_cpus=0
    assert [p["resources"] for p in judge_places] == [{"GPU": 0.5}] * 4
    gen_gpus = [tuple(p["gpu_ids"]) for p in gen_places]
    judge_gpus = [tuple(p["gpu_ids"]) for p in judge_places]
    assert len(set(gen_gpus)) == 2 and all(len(ids) == 1 for ids in gen_gpus)
    assert sorted(judge_gpus).count(judge_gpus[0]) == 2  # two judges share each of the other GPUs
    assert not set(gen_gpus) & set(judge_gpus)


def test_images_stay_in_the_object_store_and_the_judge_resolves_them(toy_replicas: tuple[list, list]) -> None:
    generators, judges = toy_replicas
    gen_client = RayGeneratorClient(generators, Resources(max_batch=64, batch_wait_ms=5))
    judge_client = RayJudgeClient(judges, Resources(max_batch=64, batch_wait_ms=5))
    toy, toy_judge = ToyGenerator(image_size=FULL_SIZE), ToyJudge()

    async def one(i: int) -> tuple[list, list, np.ndarray, np.ndarray]:
        states = await gen_client.start([PathSpec(f"p{i}", "x", seed=i, path_index=j) for j in range(2)])
        moved = await gen_client.advance(states, steps=3, previews=True)
        done = await gen_client.finish((await gen_client.advance(moved.states, steps=3)).states)
        previews = await judge_client.ask(moved.previews, ["x", "x"], "clarity")
        finals = await judge_client.ask([f.image for f in done], ["x", "x"], "outcome")
        return done, moved.previews, previews, finals

    async def many() -> list:
        return await asyncio.gather(*(one(i) for i in range(20)))

    results = asyncio.run(many())
    handles: list[ray.ObjectRef] = []
    for i, (done, preview_handles, previews, finals) in enumerate(results):
        expected = toy.finish(
            toy.advance(toy.start([PathSpec(f"p{i}", "x", i, j) for j in range(2)]), 6).states
        )
        handles += [f.image for f in done] + preview_handles
        one_image = ray.get(done[1].image)  # fetches that image alone, not its batch
        assert isinstance(one_image, np.ndarray)
        np.testing.assert_array_equal(one_image, expected[1].image)
        assert [f.tokens.tolist() for f in done] == [e.tokens.tolist() for e in expected]
        np.testing.assert_allclose(finals, toy_judge.ask([e.image for e in expected], ["x", "x"], "outcome"))
        # half the slots decided after 3 of 6 steps; one (P(yes), P(no)) row per image
        np.testing.assert_allclose(previews, [[128 / 255, 127 / 255]] * 2)
    assert gen_client._batcher.calls < 20 * 4 / 2  # 80 requests coalesced into far fewer calls
    assert all(isinstance(h, ray.ObjectRef) for h in handles)  # the driver holds refs, not pixels
    assert len(set(handles)) == len(handles) == 20 * 2 * 2  # one object per image, not per batch
    for where in ray.experimental.get_object_locations(handles).values():
        assert where["node_ids"]  # in the object store, not inlined into the driver's memory
        assert IMAGE_BYTES <= where["object_size"] < 2 * IMAGE_BYTES


def test_least_busy_spreads_concurrent_calls() -> None:
    pool = LeastBusy(["a", "b", "c"])
    used: list[str] = []

    async def call(replica: str) -> None:
        used.append(replica)
        await asyncio.sleep(0.01)

    async def many() -> None:
        await asyncio.gather(*(pool.call(call) for _ in range(6)))

    asyncio.run(many())
    assert sorted(used) == ["a", "a", "b", "b", "c", "c"] and pool.in_flight == [0, 0, 0]


def test_least_busy_retires_a_dead_replica_and_reruns_the_call_elsewhere() -> None:
    retired: list[str] = []
    pool = LeastBusy(["a", "dead", "b"], on_retire=lambda: retired.append("slot"))
    used: list[str] = []

    async def call(replica: str) -> str:
        used.append(replica)
        if replica == "dead":
            raise ActorDiedError()
        await asyncio.sleep(0)
        return replica

    async def many() -> list[str]:
        return await asyncio.gather(*(pool.call(call) for _ in range(6)))

    served = asyncio.run(many())
    assert used.count("dead") == 1 and sorted(served) == ["a", "a", "a", "b", "b", "b"]
    assert pool.dead == {1} and pool.in_flight == [0, 0, 0]
    assert retired == ["slot"]  # the client's coalescer gives up one dispatch slot, once


def test_least_busy_keeps_a_replica_that_will_restart() -> None:
    pool = LeastBusy(["restarting"])

    async def call(replica: str) -> str:
        raise ActorUnavailableError("restarting", None)

    with pytest.raises(ActorUnavailableError):
        asyncio.run(pool.call(call))
    assert pool.dead == set()


def test_least_busy_with_every_replica_dead_says_so() -> None:
    pool = LeastBusy(["a", "b"])
    used: list[str] = []

    async def call(replica: str) -> str:
        used.append(replica)
        raise ActorDiedError()

    with pytest.raises(NoReplicaLeft, match="all 2 replicas died and will not restart"):
        asyncio.run(pool.call(call))
    with pytest.raises(NoReplicaLeft):  # a later call fails at once, without trying the dead
        asyncio.run(pool.call(call))
    assert sorted(used) == ["a", "b"]


def test_a_judge_client_survives_a_replica_killed_for_good(ray_cluster: None) -> None:
    spec = JudgeSpec(kind="toy", checkpoint="none", resources=Resources(replicas=2, max_restarts=0))
    judges = launch(JudgeReplica, spec, "test-replicas-dead-judge")
    client = RayJudgeClient(judges, Resources(max_batch=8, batch_wait_ms=1))
    toy = ToyGenerator()
    images = [f.image for f in toy.finish(toy.advance(toy.start([PathSpec("p", "x", 0, 0)]), 6).states)]
    expected = ToyJudge().ask(images, ["x"], "outcome")

    def kill(actor: ray.actor.ActorHandle) -> None:
        """Dead for good before the client calls it (ray.kill is asynchronous: a call sent at
        once may still be served)."""
        ray.kill(actor, no_restart=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                ray.get(actor.info.remote(), timeout=60)
            except ActorDiedError:
                return
            assert time.monotonic() < deadline, "the killed replica kept answering"
            time.sleep(0.1)

    async def ask_many() -> list[np.ndarray]:
        return await asyncio.gather(*(client.ask(images, ["x"], "outcome") for _ in range(4)))

    kill(judges[0])
    for scores in asyncio.run(ask_many()):
        np.testing.assert_allclose(scores, expected)
    assert client._pool.dead == {0}  # it was tried (least busy at first), then left the pool
    kill(judges[1])
    with pytest.raises(NoReplicaLeft):
        asyncio.run(client.ask(images, ["x"], "outcome"))


def test_resolve_images_fetches_each_distinct_ref_once_and_keeps_arrays(ray_cluster: None) -> None:
    red, green = np.full((2, 2, 3), 200, np.uint8), np.full((2, 2, 3), 100, np.uint8)
    ref = ray.put(red)
    resolved = resolve_images([ref, green, ref])
    assert [img[0, 0, 0] for img in resolved] == [200, 100, 200]
    assert resolved[0] is resolved[2]  # one fetch serves both uses of the same ref


def test_a_replica_that_crashes_mid_call_stays_in_the_pool(ray_cluster: None, tmp_path) -> None:
    """Pins Ray's mapping the pool relies on: a process that dies mid-call but will restart
    raises ActorUnavailableError (not ActorDiedError), so it must not be retired."""

    @ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
    class CrashOnce:
        def work(self, marker: str) -> str:
            import os
            from pathlib import Path

            if not Path(marker).exists():
                Path(marker).touch()
                os._exit(1)
            return "served"

    actor = CrashOnce.remote()
    pool = LeastBusy([actor])
    marker = str(tmp_path / "crashed")

    async def work() -> str:
        return await pool.call(lambda replica: replica.work.remote(marker))

    with pytest.raises(ActorUnavailableError):
        asyncio.run(work())
    assert pool.dead == set()
    deadline = time.monotonic() + 60
    while True:  # back after its restart
        try:
            assert asyncio.run(work()) == "served"
            break
        except ActorUnavailableError:
            assert time.monotonic() < deadline, "the replica never came back"
            time.sleep(0.2)
    ray.kill(actor)
