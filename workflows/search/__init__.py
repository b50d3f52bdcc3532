"""Search strategies behind one table, and the search tasks of a prompt.

A strategy is a module of this package with two names: ``search``, an async function of
(task, generator client, judge client, config), and ``needs``, the questions (and ``reflect``)
it will put to the judge under a config. The driver runs many searches at once on one event
loop; because each submits all its paths in one client call, their calls coalesce into full
batches in the clients.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType

from actors.rng import stream_seed
from schemas.config import SearchConfig
from schemas.errors import ConfigError
from schemas.prompts import PromptRecord
from workflows.search import beam, best_of_n, parm, parm_pp, prm, sample
from workflows.search.types import SearchResult, SearchTask
from workflows.serving.clients import GeneratorClient, JudgeClient

Search = Callable[[SearchTask, GeneratorClient, JudgeClient | None, SearchConfig], Awaitable[SearchResult]]


@dataclass(frozen=True)
class Strategy:
    search: Search
    needs: Callable[[SearchConfig], frozenset[str]]


def _table(*modules: ModuleType) -> dict[str, Strategy]:
    """Each strategy under its module's name, the name a recipe gives as ``search.strategy``."""
    return {module.__name__.rpartition(".")[2]: Strategy(module.search, module.needs) for module in modules}


STRATEGIES = _table(sample, best_of_n, prm, parm, parm_pp, beam)


def check_judge(cfg: SearchConfig, judge: JudgeClient | None) -> None:
    """Refuse a judge that is missing or cannot answer what the strategy will ask: checked once
    for the run before any prompt is searched, and by every search before it starts."""
    needs = STRATEGIES[cfg.strategy].needs(cfg)
    if needs and judge is None:
        raise ConfigError(f"search strategy {cfg.strategy!r} needs a judge, none was given")
    missing = needs - judge.answers if judge else frozenset()
    if missing:
        raise ConfigError(
            f"judge.kind {judge.name!r} cannot answer {', '.join(sorted(missing))}, which "
            f"search.strategy {cfg.strategy!r} asks; choose another judge or strategy"
        )


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
    check_judge(cfg, judge)
    return await STRATEGIES[cfg.strategy].search(task, gen, judge, cfg)
