"""``sample``: N independent images and no judge, the baseline every method is compared with.

Nothing ranks the images, so every one is selected (GenEval scores all images of a prompt).
"""

from __future__ import annotations

from schemas.config import SearchConfig
from workflows.search.paths import SearchContext
from workflows.search.types import SearchResult, SearchTask
from workflows.serving.clients import GeneratorClient, JudgeClient


def needs(cfg: SearchConfig) -> frozenset[str]:
    return frozenset()


async def search(
    task: SearchTask, gen: GeneratorClient, judge: JudgeClient | None, cfg: SearchConfig
) -> SearchResult:
    ctx = SearchContext(task, gen, judge, cfg)
    states, finished = await ctx.run_to_end(await ctx.start(ctx.specs(cfg.n)))
    return ctx.result(
        [ctx.candidate(s, f.image, f.tokens, selected=True) for s, f in zip(states, finished, strict=True)]
    )
