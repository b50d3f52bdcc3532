"""Generator compute of ``parm`` with and without pruning, and of ``best_of_n``, at equal N.

    python bench/search_cost.py                                   # toy generator and judge
    python bench/search_cost.py --generator showo:tiny:showo --judge toy:toy

All three variants search the same prompts with the same seeds in one run, concurrently per
variant (so batches fill as in a job). Generator compute is measured twice: NFE as the
strategies count it (path-steps advanced) and the wall time spent inside the generator's own
methods. Ratios are against ``best_of_n``. ``parm`` without pruning must select the same paths
as with pruning (it only keeps computing the paths it would stop); the script checks that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from typing import Any

from actors.interfaces import Advanced, Finished, Generator, PathSpec, PathState
from actors.registry import build_generator, build_judge
from schemas.config import GeneratorSpec, JudgeSpec, SearchConfig
from schemas.prompts import PromptRecord
from workflows.search import run_search, tasks_for
from workflows.serving.clients import LocalGeneratorClient, LocalJudgeClient

TOY_OPTIONS = {"num_steps": 18, "num_tokens": 36}
PROMPTS = ["a red cube", "two dogs on a sofa", "a blue bird above a yellow car", "a photo of a clock"]


class TimedGenerator:
    """Seconds spent inside the wrapped generator, i.e. model compute without orchestration."""

    def __init__(self, model: Generator):
        self.model, self.seconds = model, 0.0
        self.name, self.identity = model.name, model.identity
        self.num_steps, self.num_tokens, self.image_size = model.num_steps, model.num_tokens, model.image_size

    def _timed(self, method: str, *args: Any) -> Any:
        began = time.perf_counter()
        try:
            return getattr(self.model, method)(*args)
        finally:
            self.seconds += time.perf_counter() - began

    def start(self, specs: Sequence[PathSpec]) -> list[PathState]:
        return self._timed("start", specs)

    def advance(self, states: Sequence[PathState], steps: int = 1, previews: bool = False) -> Advanced:
        return self._timed("advance", states, steps, previews)

    def finish(self, states: Sequence[PathState]) -> list[Finished]:
        return self._timed("finish", states)


def parse_model(text: str) -> tuple[str, str]:
    kind, sep, checkpoint = text.partition(":")
    if not sep or not checkpoint:
        raise SystemExit(f"--generator/--judge {text!r}: expected kind:checkpoint, e.g. showo:tiny:showo")
    return kind, checkpoint


async def search_all(
    gen: TimedGenerator, judge: Any, cfg: SearchConfig, prompts: list[PromptRecord]
) -> tuple[int, list[tuple[int, ...]]]:
    gen_client, judge_client = LocalGeneratorClient(gen), LocalJudgeClient(judge)
    tasks = [task for record in prompts for task in tasks_for(record, cfg)]
    results = await asyncio.gather(*(run_search(t, gen_client, judge_client, cfg) for t in tasks))
    picks = [tuple(c.path_index for c in r.selected) for r in results]
    return sum(r.cost.nfe for r in results), picks


def measure(
    gen: TimedGenerator, judge: Any, cfg: SearchConfig, prompts: list[PromptRecord]
) -> dict[str, Any]:
    gen.seconds = 0.0
    nfe, picks = asyncio.run(search_all(gen, judge, cfg, prompts))
    return {"nfe": nfe, "seconds": gen.seconds, "picks": picks}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--generator", default="toy:toy", help="kind:checkpoint (default toy:toy)")
    parser.add_argument("--generator-options", default=None, help="JSON options (toy default: 18 steps)")
    parser.add_argument("--judge", default="toy:toy", help="kind:checkpoint (default toy:toy)")
    parser.add_argument("--n", type=int, default=8, help="paths per search (equal for every variant)")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="median of this many timed runs")
    args = parser.parse_args(argv)

    gen_kind, gen_ckpt = parse_model(args.generator)
    options = json.loads(args.generator_options) if args.generator_options else {}
    if gen_kind == "toy" and args.generator_options is None:
        options = TOY_OPTIONS
    gen = TimedGenerator(build_generator(GeneratorSpec(kind=gen_kind, checkpoint=gen_ckpt, options=options)))
    judge_kind, judge_ckpt = parse_model(args.judge)
    judge = build_judge(JudgeSpec(kind=judge_kind, checkpoint=judge_ckpt))
    prompts = [PromptRecord(f"p{i}", PROMPTS[i % len(PROMPTS)]) for i in range(args.prompts)]
    variants = {
        "best_of_n": SearchConfig(strategy="best_of_n", n=args.n),
        "parm (pruning)": SearchConfig(strategy="parm", n=args.n, prune=True),
        "parm (no pruning)": SearchConfig(strategy="parm", n=args.n, prune=False),
    }
    measure(gen, judge, variants["best_of_n"], prompts[:1])  # warm-up: lazy init, caches
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for _ in range(args.repeats):  # interleaved so drift hits every variant alike
        for name, cfg in variants.items():
            runs[name].append(measure(gen, judge, cfg, prompts))

    base = runs["best_of_n"][0]["nfe"], statistics.median(r["seconds"] for r in runs["best_of_n"])
    print(f"generator {gen.identity}, judge {judge.identity}, N={args.n}, prompts={args.prompts}")
    print(f"{'variant':<20}{'NFE':>9}{'NFE ratio':>11}{'gen s':>10}{'time ratio':>12}")
    for name, measured in runs.items():
        nfe, seconds = measured[0]["nfe"], statistics.median(r["seconds"] for r in measured)
        print(f"{name:<20}{nfe:>9}{nfe / base[0]:>11.3f}{seconds:>10.3f}{seconds / base[1]:>12.3f}")
    pruned, full = runs["parm (pruning)"], runs["parm (no pruning)"]
    nfe_ratio = pruned[0]["nfe"] / full[0]["nfe"]
    time_ratio = statistics.median(r["seconds"] for r in pruned) / statistics.median(
        r["seconds"] for r in full
    )
    print(f"parm pruning / no pruning: NFE {nfe_ratio:.3f}, generator time {time_ratio:.3f}")
    same = pruned[0]["picks"] == full[0]["picks"]
    print(f"parm with and without pruning selected the same paths: {same}")
    if not same:
        raise SystemExit("pruning changed the selection: the comparison is not like for like")


if __name__ == "__main__":
    main()
