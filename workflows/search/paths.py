"""What every strategy shares: spawning paths, counting their cost, and recording judgments.

A strategy builds one :class:`SearchContext` and does all its generator and judge traffic
through it, so NFE, judge calls and trace rows are counted in exactly one place and no
strategy can forget to record a judged step. Every method takes all the paths the strategy
has at hand in one client call, which is what lets concurrent searches coalesce.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from actors.interfaces import Advanced, Finished, PathSpec, PathState, Question
from schemas.config import SearchConfig
from workflows.search.decision import Decider
from workflows.search.types import Candidate, Cost, SearchResult, SearchTask, TraceRow
from workflows.serving.clients import GeneratorClient, JudgeClient


@dataclass(frozen=True)
class Verdict:
    p_yes: float
    p_no: float
    yes: bool


@dataclass
class SearchContext:
    """One search's view of the clients. Path indices are handed out by a counter, so every
    path a search ever starts or branches (including PARM++ regenerations) draws its own
    random stream, and a search's result depends only on its task seed.

    Decisions are keyed by the task seed (derived from ``cfg.seed``, the prompt and the image
    index) so that the ``images_per_prompt`` searches of one prompt draw independently.
    """

    task: SearchTask
    gen: GeneratorClient
    judge: JudgeClient | None
    """There for every strategy that asks it anything: ``run_search`` checks before it starts."""
    cfg: SearchConfig
    trace: list[TraceRow] = field(default_factory=list)
    cost: Cost = field(default_factory=Cost)
    next_index: int = 0

    @property
    def num_steps(self) -> int:
        return self.gen.num_steps

    @property
    def decider(self) -> Decider:
        return Decider(self.cfg.decision, self.cfg.threshold, self.task.seed)

    def _take_indices(self, n: int) -> range:
        indices = range(self.next_index, self.next_index + n)
        self.next_index += n
        return indices

    def specs(self, n: int, prompt: str | None = None) -> list[PathSpec]:
        text = self.task.prompt if prompt is None else prompt
        return [
            PathSpec(self.task.prompt_id, text, self.task.seed, index, image_index=self.task.image_index)
            for index in self._take_indices(n)
        ]

    def branch(self, state: PathState, n: int) -> list[PathState]:
        """``n`` continuations of ``state``, each under a fresh path index (its own stream)."""
        return [
            replace(state, path_index=index, tokens=state.tokens.copy()) for index in self._take_indices(n)
        ]

    async def start(self, specs: Sequence[PathSpec]) -> list[PathState]:
        return await self.gen.start(specs) if specs else []

    async def advance(self, states: Sequence[PathState], steps: int, previews: bool = False) -> Advanced:
        """Advance and count NFE as the path-steps actually taken (a path stops at its end)."""
        if not states:
            return Advanced([], [] if previews else None)
        moved = await self.gen.advance(states, steps, previews)
        self.cost.nfe += sum(new.step - old.step for old, new in zip(states, moved.states, strict=True))
        return moved

    async def finish(self, states: Sequence[PathState]) -> list[Finished]:
        return await self.gen.finish(states) if states else []

    async def run_to_end(self, states: Sequence[PathState]) -> tuple[list[PathState], list[Finished]]:
        """Lockstep paths (all at one step) advanced to the end in one call, then decoded."""
        remaining = self.num_steps - states[0].step if states else 0
        if remaining > 0:
            states = (await self.advance(states, remaining)).states
        return list(states), await self.finish(states)

    async def ask(
        self, images: Sequence[Any], states: Sequence[PathState], question: Question, round: int = 0
    ) -> list[Verdict]:
        """Judge each path's image, decide, and record one trace row per (path, step).

        The judge is always asked about the user's prompt: a PARM++ path generates from the
        prompt extended by reflections, but what counts is whether it shows what was asked."""
        if not states:
            return []
        began = time.perf_counter()
        answers = await self.judge.ask(images, [self.task.prompt] * len(states), question)
        elapsed_ms = (time.perf_counter() - began) * 1000.0
        self.cost.judge_calls += len(states)
        verdicts = []
        for image, state, (p_yes, p_no) in zip(images, states, answers.tolist(), strict=True):
            yes = self.decide(p_yes, state.path_index, state.step, question, round, p_no=p_no)
            verdicts.append(Verdict(p_yes, p_no, yes))
            preview = image if self.cfg.previews_in_steps else None
            self.trace.append(
                TraceRow(
                    state.path_index, state.step, question, p_yes, yes, round, preview, elapsed_ms, p_no=p_no
                )
            )
        return verdicts

    def decide(
        self, p_yes: float, path: int, step: int, question: str, round: int = 0, p_no: float | None = None
    ) -> bool:
        return self.decider(
            p_yes, p_no, prompt_id=self.task.prompt_id, path=path, step=step, question=question, round=round
        )

    async def reflect(self, images: Sequence[Any]) -> list[str]:
        """What each image gets wrong against the user's prompt; a judge pass, so a judge call."""
        self.cost.judge_calls += len(images)
        return await self.judge.reflect(images, [self.task.prompt] * len(images))

    def candidate(self, state: PathState, image: Any, tokens: np.ndarray, **fields: Any) -> Candidate:
        carried = {"prompt": state.prompt, "confidence": state.confidence}
        return Candidate(state.path_index, state.seed, image, tokens, **carried, **fields)

    def result(self, candidates: list[Candidate]) -> SearchResult:
        return SearchResult(candidates, self.trace, self.cost)


def rank(candidates: Sequence[Candidate], scores: Sequence[float]) -> None:
    """Rank by score, highest first (ties: lower path index first); select the top one."""
    order = sorted(range(len(candidates)), key=lambda i: (-scores[i], candidates[i].path_index))
    for position, i in enumerate(order):
        candidates[i].rank = position
        candidates[i].selected = position == 0


def score_fields(question: str, p_yes: float) -> dict[str, float]:
    """A step judge's score lands in the candidate column of the same question, if it has one."""
    return {question: p_yes} if question in ("outcome", "process", "potential") else {}
