"""``prm``: step-level best-of-N with the process question (``cfg.step_question``), asked every
``cfg.judge_every`` steps: judge all N, keep the best path, branch N continuations from it,
until the end; the surviving best is the result."""

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
    return await step_search(SearchContext(task, gen, judge, cfg), width=1, branch=cfg.n)
