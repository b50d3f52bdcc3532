"""``best_of_n``: the paper's ORM baseline. N full paths, the outcome judge scores each final
image, the highest P(yes) is selected; every candidate is ranked by it."""

from __future__ import annotations

from schemas.config import SearchConfig
from workflows.search.paths import SearchContext, rank
from workflows.search.types import SearchResult, SearchTask
from workflows.serving.clients import GeneratorClient, JudgeClient


def needs(cfg: SearchConfig) -> frozenset[str]:
    return frozenset({"outcome"})


async def search(
    task: SearchTask, gen: GeneratorClient, judge: JudgeClient | None, cfg: SearchConfig
) -> SearchResult:
    ctx = SearchContext(task, gen, judge, cfg)
    states, finished = await ctx.run_to_end(await ctx.start(ctx.specs(cfg.n)))
    verdicts = await ctx.ask([f.image for f in finished], states, "outcome")
    candidates = [
        ctx.candidate(s, f.image, f.tokens, outcome=v.p_yes)
        for s, f, v in zip(states, finished, verdicts, strict=True)
    ]
    rank(candidates, [v.p_yes for v in verdicts])
    return ctx.result(candidates)
