"""One actor call per path vs driver-side coalescing, on 4 fake-GPU replicas of a stand-in model.

    python bench/batching.py [--searches 200] [--steps 10]

The stand-in model takes 5 ms + 0.2 ms per item per call (a GPU forward's fixed cost plus its
per-path cost). Each of ``--searches`` concurrent searches advances one path ``--steps`` times.
Both variants run side by side in one Ray instance; the script prints throughput, driver CPU
per request, the share of the replicas' ideal capacity reached, and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import ray

from workflows.serving.batching import Coalescer
from workflows.serving.ray_clients import LeastBusy

FIXED_S, PER_ITEM_S, MAX_BATCH, REPLICAS = 0.005, 0.0002, 64, 4


class StandIn:
    def step(self, items: list[int]) -> list[int]:
        time.sleep(FIXED_S + PER_ITEM_S * len(items))
        return [item + 1 for item in items]


def ideal_items_per_s() -> float:
    return REPLICAS * MAX_BATCH / (FIXED_S + PER_ITEM_S * MAX_BATCH)


async def drive(step: Callable[[int], Awaitable[int]], searches: int, steps: int) -> tuple[float, float]:
    async def search(i: int) -> None:
        value = i
        for _ in range(steps):
            value = await step(value)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(search(i) for i in range(searches)))
    return time.perf_counter() - wall, time.process_time() - cpu


def per_path(replicas: list[Any]) -> Callable[[int], Awaitable[int]]:
    pool = LeastBusy(replicas)

    async def step(value: int) -> int:
        return (await pool.call(lambda r: r.step.remote([value])))[0]

    return step


def coalesced(replicas: list[Any]) -> Callable[[int], Awaitable[int]]:
    pool = LeastBusy(replicas)

    async def dispatch(key: Hashable, items: list[int]) -> list[int]:
        return await pool.call(lambda r: r.step.remote(items))

    batcher = Coalescer(dispatch, max_batch=MAX_BATCH, wait_ms=5, max_concurrent=len(replicas))

    async def step(value: int) -> int:
        return (await batcher.submit("step", [value]))[0]

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    ray.init(address="local", num_cpus=2, num_gpus=REPLICAS, include_dashboard=False, log_to_driver=False)
    replicas = [ray.remote(StandIn).options(num_gpus=1, num_cpus=0).remote() for _ in range(REPLICAS)]
    ray.get([r.step.remote([0]) for r in replicas])  # started and warm
    requests = args.searches * args.steps
    ideal = ideal_items_per_s()
    print(f"{args.searches} searches x {args.steps} steps = {requests} requests, {REPLICAS} replicas, "
          f"ideal {ideal:.0f} items/s")  # fmt: skip
    results = {}
    for name, make in (("per-path calls", per_path), ("coalesced", coalesced)):
        wall, cpu = asyncio.run(drive(make(replicas), args.searches, args.steps))
        results[name] = (requests / wall, cpu / requests)
        rate, share, cpu_us = requests / wall, 100 * requests / wall / ideal, 1e6 * cpu / requests
        print(f"{name:>15}: {rate:8.0f} items/s {cpu_us:7.0f} us driver CPU/request {share:5.1f}% of ideal")
    (fast, cheap), (slow, costly) = results["coalesced"], results["per-path calls"]
    print(
        f"ratio coalesced / per-path: throughput x{fast / slow:.1f}, driver CPU/request x{cheap / costly:.2f}"
    )
    ray.shutdown()


if __name__ == "__main__":
    main()
