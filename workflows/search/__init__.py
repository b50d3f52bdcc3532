"""Search strategies behind one dispatch table, and the search tasks of a prompt.

A strategy is an async function of (task, generator client, judge client, config). The
driver runs many of them at once on one event loop; because each submits all its paths in
one client call, their calls coalesce into full batches in the clients.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from actors.interfaces import REFLECT
from actors.rng import stream_seed
from schemas.config import SearchConfig
from schemas.prompts import PromptRecord
from workflows.search import beam, best_of_n, parm, parm_pp, prm, sample
from workflows.search.paths import require_judge
from workflows.search.types import SearchResult, SearchTask
from workflows.serving.clients import GeneratorClient, JudgeClient

Strategy = Callable[[SearchTask, GeneratorClient, JudgeClient | None, SearchConfig], Awaitable[SearchResult]]

STRATEGIES: dict[str, Strategy] = {
    "sample": sample.search,
    "best_of_n": best_of_n.search,
    "prm": prm.search,
    "parm": parm.search,
    "parm_pp": parm_pp.search,
    "beam": beam.search,
}


def judge_needs(cfg: SearchConfig) -> frozenset[str]:
    """The questions (and ``reflect``) a strategy will put to its judge."""
    parm_needs = {"clarity", "potential", "outcome"}
    needs: dict[str, set[str]] = {
        "sample": set(),
        "best_of_n": {"outcome"},
        "prm": {cfg.step_question},
        "beam": {cfg.step_question},
        "parm": parm_needs,
        "parm_pp": parm_needs | {REFLECT} if cfg.rounds else parm_needs,
    }
    return frozenset(needs[cfg.strategy])


def tasks_for(record: PromptRecord, cfg: SearchConfig) -> list[SearchTask]:
    """``images_per_prompt`` searches of one prompt. Each seed is a hash of (cfg.seed, prompt
    id, image index), so a rerun, a resumed run or a retry searches exactly the same paths,
    whatever order prompts arrive in."""
    return [
        SearchTask(
            record.prompt_id, record.prompt, index, stream_seed(cfg.seed, 0, index, salt=record.prompt_id)
        )
        for index in range(cfg.images_per_prompt)
    ]


async def run_search(
    task: SearchTask, gen: GeneratorClient, judge: JudgeClient | None, cfg: SearchConfig
) -> SearchResult:
    strategy = STRATEGIES.get(cfg.strategy)
    if strategy is None:
        raise ValueError(f"unknown search strategy {cfg.strategy!r}; known: {', '.join(sorted(STRATEGIES))}")
    if cfg.strategy != "sample":
        require_judge(cfg, judge)
    return await strategy(task, gen, judge, cfg)
