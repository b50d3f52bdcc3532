"""``beam``: step-level beam search beyond the paper: ``cfg.beam_width`` beams, each branching
``cfg.beam_branch`` continuations, judged with ``cfg.step_question`` every ``cfg.judge_every``
steps."""

from __future__ import annotations

from schemas.config import SearchConfig
from workflows.search.paths import SearchContext
from workflows.search.stepwise import step_search
from workflows.search.types import SearchResult, SearchTask
from workflows.serving.clients import GeneratorClient, JudgeClient


def needs(cfg: SearchConfig) -> frozenset[str]:
    return frozenset({cfg.step_question})


async def search(
    task: SearchTask, gen: GeneratorClient, judge: JudgeClient | None, cfg: SearchConfig
) -> SearchResult:
    return await step_search(
        SearchContext(task, gen, judge, cfg), width=cfg.beam_width, branch=cfg.beam_branch
    )
