"""Search strategies on doubles whose right answer is known.

Two kinds of doubles: the toy generator and judge (actors/toy.py), whose answers the tests
recompute here from the toy's definition (a path's tokens come from its own stream; outcome
P(yes) = rounded mean token / 255; clarity P(yes) = rounded decided share), and a scripted
pair whose images are handles naming (path, step, prompt), so a judge can answer "no
potential" to chosen paths.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import get_args

import numpy as np
import pytest

from actors.interfaces import (
    QUESTIONS,
    REFLECT,
    UNKNOWN,
    Advanced,
    Finished,
    PathSpec,
    PathState,
    Question,
)
from actors.rng import stream_seed
from actors.toy import ToyGenerator, ToyJudge
from schemas.config import SearchConfig, StrategyName, validate_config
from schemas.errors import ConfigError
from schemas.prompts import PromptRecord
from workflows.search import STRATEGIES, run_search, tasks_for
from workflows.search.types import SearchResult, SearchTask
from workflows.serving.clients import LocalGeneratorClient, LocalJudgeClient

TASK = SearchTask("p0", "a red cube", image_index=0, seed=1234)


def toy_draw(seed: int, path: int, step: int, per_step: int = 2) -> np.ndarray:
    """The tokens the toy generator decides for one path at one step (its module docstring)."""
    return np.random.default_rng(stream_seed(seed, path, step)).integers(
        0, 256, size=per_step, dtype=np.int32
    )


def toy_path(seed: int, segments: Sequence[tuple[int, range]]) -> np.ndarray:
    """Tokens of a path made of (path index, steps) segments: a branch inherits its parent's prefix."""
    return np.concatenate([toy_draw(seed, path, step) for path, steps in segments for step in steps])


def red(tokens: np.ndarray) -> float:
    return round(float(np.mean(tokens))) / 255.0


def argmax_first(scores: dict[int, float]) -> int:
    return min(scores, key=lambda k: (-scores[k], k))


def run(
    strategy: str, gen: object, judge: object | None, task: SearchTask = TASK, **cfg: object
) -> SearchResult:
    config = SearchConfig(strategy=strategy, **cfg)
    judge_client = LocalJudgeClient(judge) if judge is not None else None
    return asyncio.run(run_search(task, LocalGeneratorClient(gen), judge_client, config))


def selected(result: SearchResult) -> int:
    (chosen,) = result.selected
    return chosen.path_index


def trace_keys(result: SearchResult) -> list[tuple[int, int, str, int]]:
    return [(r.path_index, r.step, r.question, r.round) for r in result.trace]


@dataclass(frozen=True)
class Shot:
    """An opaque image handle that says which path, at which step, from which prompt."""

    path: int
    step: int
    prompt: str


class ShotGenerator(ToyGenerator):
    """The toy generator with images replaced by handles, so scripted judges can recognise paths."""

    def advance(self, states: Sequence[PathState], steps: int = 1, previews: bool = False) -> Advanced:
        out = super().advance(states, steps)
        shots = [Shot(s.path_index, s.step, s.prompt) for s in out.states]
        return Advanced(out.states, shots if previews else None)

    def finish(self, states: Sequence[PathState]) -> list[Finished]:
        done = super().finish(states)
        return [
            Finished(Shot(s.path_index, s.step, s.prompt), f.tokens)
            for s, f in zip(states, done, strict=True)
        ]  # type: ignore[arg-type]


class ScriptedJudge:
    """Clear from step ``clear_at[path]``; potential and outcome looked up per path; reflections
    numbered in the order they are written. P(no) is 1 - P(yes) except a potential P(no) set in
    ``potential_no``, which lets the two orders of a full-vocabulary judge differ."""

    name = identity = "scripted"
    answers = frozenset((*QUESTIONS, REFLECT))

    def __init__(
        self,
        clear_at: dict[int, int] | None = None,
        potential: dict[int, float] | None = None,
        outcome: Callable[[Shot], float] = lambda shot: 0.5,
        potential_no: dict[int, float] | None = None,
    ):
        self.clear_at, self.potential, self.outcome = clear_at or {}, potential or {}, outcome
        self.potential_no = potential_no or {}
        self.reflections = 0
        self.prompts_seen: set[str] = set()

    def ask(self, images: Sequence[Shot], prompts: Sequence[str], question: Question) -> np.ndarray:
        self.prompts_seen.update(prompts)
        answers = {
            "clarity": lambda s: float(s.step >= self.clear_at.get(s.path, 3)),
            "potential": lambda s: self.potential.get(s.path, 0.9),
            "outcome": self.outcome,
            "process": self.outcome,
        }[question]
        p_yes = [answers(s) for s in images]
        p_no = [
            self.potential_no.get(s.path, 1.0 - p) if question == "potential" else 1.0 - p
            for s, p in zip(images, p_yes, strict=True)
        ]
        return np.array([p_yes, p_no]).T.reshape(len(images), 2)

    def reflect(self, images: Sequence[Shot], prompts: Sequence[str]) -> list[str]:
        self.prompts_seen.update(prompts)
        self.reflections += len(images)
        return [f"fix {self.reflections}" for _ in images]


# dispatch and tasks


def test_tasks_for_gives_one_stable_seed_per_image() -> None:
    record = PromptRecord("p7", "two dogs")
    cfg = SearchConfig(images_per_prompt=4, seed=3)
    tasks = tasks_for(record, cfg)
    assert [t.image_index for t in tasks] == [0, 1, 2, 3]
    assert tasks == tasks_for(record, cfg)
    assert len({t.seed for t in tasks}) == 4
    assert tasks_for(PromptRecord("p8", "two dogs"), cfg)[0].seed != tasks[0].seed
    assert tasks_for(record, SearchConfig(images_per_prompt=4, seed=4))[0].seed != tasks[0].seed


def test_the_recipe_names_exactly_the_strategies_of_the_table() -> None:
    assert sorted(get_args(StrategyName)) == sorted(STRATEGIES)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_a_recipe_needs_a_judge_section_exactly_when_its_strategy_asks_the_judge(strategy: str) -> None:
    """The recipe's check (schemas cannot import the strategies) agrees with what they declare."""
    recipe = {
        "generator": {"kind": "toy", "checkpoint": "none"},
        "search": {"strategy": strategy},
        "input": {"uri": "prompts.jsonl"},
        "output": {"uri": "out"},
    }
    asks = STRATEGIES[strategy].needs(SearchConfig(strategy=strategy))
    try:
        validate_config(recipe)
        refused = False
    except ConfigError as exc:
        refused = "needs a judge section" in str(exc)
    assert refused == bool(asks)


def test_judged_strategies_refuse_to_start_without_a_judge() -> None:
    gen = ToyGenerator()
    for strategy in STRATEGIES:
        if strategy != "sample":
            with pytest.raises(ValueError, match=f"{strategy!r} needs a judge"):
                run(strategy, gen, None)
    assert gen.forward_passes == 0


# sample and best_of_n


def test_sample_returns_n_independent_images_without_a_judge() -> None:
    gen = ToyGenerator()
    result = run("sample", gen, None, n=3)
    assert [c.path_index for c in result.candidates] == [0, 1, 2]
    for c in result.candidates:
        np.testing.assert_array_equal(c.tokens, toy_path(TASK.seed, [(c.path_index, range(6))]))
        assert c.selected
    assert result.trace == []
    assert (result.cost.nfe, result.cost.judge_calls, gen.forward_passes) == (18, 0, 18)


def test_best_of_n_selects_and_ranks_by_outcome() -> None:
    n = 6
    expected = {i: red(toy_path(TASK.seed, [(i, range(6))])) for i in range(n)}
    result = run("best_of_n", ToyGenerator(), ToyJudge(), n=n)
    assert selected(result) == argmax_first(expected)
    by_rank = sorted(result.candidates, key=lambda c: c.rank)
    assert [c.path_index for c in by_rank] == sorted(expected, key=lambda k: (-expected[k], k))
    assert [c.outcome for c in by_rank] == pytest.approx(sorted(expected.values(), reverse=True))
    assert sorted(trace_keys(result)) == [(i, 6, "outcome", 0) for i in range(n)]
    assert (result.cost.nfe, result.cost.judge_calls) == (36, n)


# step-level search


def test_prm_keeps_the_best_path_and_branches_fresh_continuations() -> None:
    gen = ToyGenerator(num_steps=4, num_tokens=8)
    result = run("prm", gen, ToyJudge(), n=3, judge_every=2)
    first = {i: red(toy_path(TASK.seed, [(i, range(2))])) for i in range(3)}
    parent = argmax_first(first)
    children = {i: toy_path(TASK.seed, [(parent, range(2)), (i, range(2, 4))]) for i in (3, 4, 5)}
    winner = argmax_first({i: red(t) for i, t in children.items()})
    assert selected(result) == winner
    np.testing.assert_array_equal(result.selected[0].tokens, children[winner])
    pruned = {c.path_index: c.pruned_at for c in result.candidates if c.pruned_at is not None}
    assert pruned == {i: 2 for i in range(3) if i != parent}
    assert Counter(trace_keys(result)) == Counter(
        [(i, 2, "process", 0) for i in range(3)] + [(i, 4, "process", 0) for i in (3, 4, 5)]
    )
    assert (result.cost.nfe, gen.forward_passes, result.cost.paths_pruned) == (12, 12, 2)


def test_beam_keeps_the_top_width_paths_and_branches_each() -> None:
    gen = ToyGenerator(num_steps=4, num_tokens=8)
    result = run("beam", gen, ToyJudge(), beam_width=2, beam_branch=2, judge_every=2, step_question="outcome")
    first = {i: red(toy_path(TASK.seed, [(i, range(2))])) for i in range(4)}
    best, second = sorted(first, key=lambda k: (-first[k], k))[:2]
    parents = {4: best, 5: best, 6: second, 7: second}
    final = {i: red(toy_path(TASK.seed, [(p, range(2)), (i, range(2, 4))])) for i, p in parents.items()}
    assert selected(result) == argmax_first(final)
    assert {c.path_index: c.outcome for c in result.candidates if c.pruned_at is None} == pytest.approx(final)
    assert {c.path_index for c in result.candidates if c.pruned_at == 2} == set(range(4)) - {best, second}
    assert (result.cost.nfe, gen.forward_passes, len(result.trace)) == (16, 16, 8)


# parm


def toy_clear_step(num_steps: int = 6, threshold: float = 0.5) -> int:
    return next(s for s in range(1, num_steps + 1) if round(255 * s / num_steps) / 255 >= threshold)


def test_parm_on_toy_prunes_hopeless_paths_and_selects_the_best_survivor() -> None:
    n, clear = 8, toy_clear_step()
    potential = {i: red(toy_path(TASK.seed, [(i, range(clear))])) for i in range(n)}
    survivors = {i: red(toy_path(TASK.seed, [(i, range(6))])) for i in range(n) if potential[i] >= 0.5}
    assert 0 < len(survivors) < n, "the fixture seed should give both kinds of path"
    gen = ToyGenerator()
    result = run("parm", gen, ToyJudge(), n=n)
    assert selected(result) == argmax_first(survivors)
    pruned = {c.path_index for c in result.candidates if c.pruned_at == clear}
    assert pruned == set(range(n)) - set(survivors)
    for c in result.candidates:
        assert (c.potential, c.clarity_step) == (pytest.approx(potential[c.path_index]), clear)
        assert (c.rank is None) == (c.path_index in pruned)
        assert (c.tokens == UNKNOWN).any() == (c.path_index in pruned)
    steps_run = 6 * len(survivors) + clear * len(pruned)
    assert result.cost.nfe == gen.forward_passes == steps_run
    assert (result.cost.paths_pruned, result.cost.steps_saved) == (len(pruned), (6 - clear) * len(pruned))


def test_parm_stops_paths_without_potential_and_traces_each_judged_step_once() -> None:
    judge = ScriptedJudge(clear_at={0: 2, 1: 2, 2: 4, 3: 5}, potential={1: 0.1, 2: 0.2})
    gen = ShotGenerator()
    result = run("parm", gen, judge, n=4, clarity_every=1)
    assert gen.forward_passes == result.cost.nfe == 6 + 2 + 4 + 6
    assert (result.cost.paths_pruned, result.cost.steps_saved) == (2, 4 + 2)
    expected = [
        (p, s, "clarity", 0) for p, clear in {0: 2, 1: 2, 2: 4, 3: 5}.items() for s in range(1, clear + 1)
    ]
    expected += [
        (0, 2, "potential", 0),
        (1, 2, "potential", 0),
        (2, 4, "potential", 0),
        (3, 5, "potential", 0),
    ]
    expected += [(0, 6, "outcome", 0), (3, 6, "outcome", 0)]
    assert Counter(trace_keys(result)) == Counter(expected)
    assert result.cost.judge_calls == len(expected)
    assert {c.path_index: c.pruned_at for c in result.candidates} == {0: None, 1: 2, 2: 4, 3: None}
    assert {c.path_index: c.image for c in result.candidates}[1] == Shot(1, 2, TASK.prompt)


def test_parm_asks_clarity_every_k_steps_and_a_never_clear_path_is_not_hopeful() -> None:
    judge = ScriptedJudge(clear_at={0: 3, 1: 99}, potential={0: 0.6})
    result = run("parm", ShotGenerator(), judge, n=2, clarity_every=2)
    clarity = sorted((r.path_index, r.step) for r in result.trace if r.question == "clarity")
    assert clarity == [(0, 2), (0, 4), (1, 2), (1, 4), (1, 6)]  # asked at the last step too
    assert {c.path_index: c.clarity_step for c in result.candidates} == {0: 4, 1: None}
    assert [(r.path_index, r.step) for r in result.trace if r.question == "potential"] == [(0, 4)]
    assert selected(result) == 0
    never_clear = next(c for c in result.candidates if c.path_index == 1)
    assert (never_clear.outcome, never_clear.rank, never_clear.pruned_at) == (None, None, None)


def test_parm_with_no_clear_path_falls_back_to_the_first() -> None:
    judge = ScriptedJudge(clear_at={0: 99, 1: 99})
    result = run("parm", ShotGenerator(), judge, n=2)
    assert selected(result) == 0 and result.selected[0].rank == 0


def test_parm_falls_back_to_the_lowest_potential_no_and_completes_it() -> None:
    judge = ScriptedJudge(clear_at={0: 2, 1: 3, 2: 4}, potential={0: 0.3, 1: 0.45, 2: 0.2})
    gen = ShotGenerator()
    result = run("parm", gen, judge, n=3)
    assert selected(result) == 1
    chosen = result.selected[0]
    assert chosen.image == Shot(1, 6, TASK.prompt)
    np.testing.assert_array_equal(chosen.tokens, toy_path(TASK.seed, [(1, range(6))]))
    assert (chosen.pruned_at, chosen.rank) == (None, 0)
    assert result.cost.nfe == gen.forward_passes == 2 + 6 + 4
    assert (result.cost.paths_pruned, result.cost.steps_saved) == (2, 4 + 2)
    assert [r.path_index for r in result.trace if r.question == "outcome"] == [1]


def test_parm_fallback_ranks_by_p_no_where_it_disagrees_with_p_yes() -> None:
    """Path 1 has the highest potential P(yes) but path 0 the lowest P(no) (their P(yes) + P(no)
    is below one): the paper's code takes path 0."""
    judge = ScriptedJudge(
        clear_at={0: 2, 1: 3, 2: 4},
        potential={0: 0.3, 1: 0.45, 2: 0.2},
        potential_no={0: 0.4, 1: 0.5, 2: 0.7},
    )
    result = run("parm", ShotGenerator(), judge, n=3)
    assert selected(result) == 0
    assert result.selected[0].image == Shot(0, 6, TASK.prompt)
    assert (result.cost.paths_pruned, result.cost.steps_saved) == (2, 3 + 2)
    potential_no = {r.path_index: r.p_no for r in result.trace if r.question == "potential"}
    assert potential_no == {0: 0.4, 1: 0.5, 2: 0.7}


@pytest.mark.parametrize(("p_no", "expected"), [(1.0, 0), (0.99, 1)])
def test_parm_fallback_counts_a_never_clear_path_as_p_no_one(p_no: float, expected: int) -> None:
    """Path 0 is never clear (worst P(no), 1); path 1 ties it at 1.0 (lower index wins) or beats it."""
    judge = ScriptedJudge(clear_at={0: 99, 1: 2}, potential={1: 0.0}, potential_no={1: p_no})
    result = run("parm", ShotGenerator(), judge, n=2)
    assert selected(result) == expected
    assert result.selected[0].image == Shot(expected, 6, TASK.prompt)  # completed, even if stopped


def test_parm_without_pruning_selects_the_same_path_at_full_compute() -> None:
    potential = {1: 0.1, 2: 0.2}
    outcome = {0: 0.4, 1: 0.99, 2: 0.98, 3: 0.7}

    def search(prune: bool) -> tuple[SearchResult, int]:
        gen = ShotGenerator()
        judge = ScriptedJudge(
            clear_at={0: 2, 1: 2, 2: 4, 3: 5}, potential=potential, outcome=lambda s: outcome[s.path]
        )
        return run("parm", gen, judge, n=4, prune=prune), gen.forward_passes

    (pruned, pruned_nfe), (full, full_nfe) = search(True), search(False)
    assert selected(pruned) == selected(full) == 3
    assert (pruned_nfe, full_nfe, full.cost.nfe) == (18, 24, 24)
    assert (full.cost.paths_pruned, full.cost.steps_saved) == (0, 0)
    assert {c.path_index: c.pruned_at for c in full.candidates} == {0: None, 1: 2, 2: 4, 3: None}
    assert {c.path_index for c in full.candidates if c.rank is not None} == {0, 3}


# parm_pp


def test_parm_pp_stops_at_the_first_accepted_round() -> None:
    judge = ScriptedJudge(outcome=lambda shot: 0.9 if "fix 2" in shot.prompt else 0.1)
    gen = ShotGenerator()
    result = run("parm_pp", gen, judge, n=2, rounds=3)
    assert judge.reflections == 2
    rounds = {c.round: c for c in result.candidates if c.round > 0}
    assert sorted(rounds) == [1, 2]
    assert (rounds[1].reflection, rounds[2].reflection) == ("fix 1", "fix 2")
    assert rounds[2].prompt == f"{TASK.prompt} fix 2" and rounds[2].selected
    assert [c for c in result.candidates if c.selected] == [rounds[2]]
    assert [(r.round, r.question) for r in result.trace if r.round > 0] == [(1, "outcome"), (2, "outcome")]
    # two PARM paths of 6 steps; each regeneration re-opens half, so it runs the last 3 steps
    assert result.cost.nfe == gen.forward_passes == 2 * 6 + 2 * 3


def test_parm_pp_judges_every_round_against_the_users_prompt() -> None:
    """Reflections steer the generator; the judge must keep asking whether the image matches
    what the user asked for, not the prompt extended by its own reflections."""
    judge = ScriptedJudge(outcome=lambda shot: 0.0)
    run("parm_pp", ShotGenerator(), judge, n=2, rounds=2)
    assert judge.reflections == 2
    assert judge.prompts_seen == {TASK.prompt}


@pytest.mark.parametrize("rounds", [0, 1, 3])
def test_parm_pp_never_exceeds_its_rounds(rounds: int) -> None:
    judge = ScriptedJudge(outcome=lambda shot: 0.0)
    result = run("parm_pp", ShotGenerator(), judge, n=2, rounds=rounds)
    assert judge.reflections == rounds
    assert sorted(c.round for c in result.candidates) == [0, 0, *range(1, rounds + 1)]
    assert result.selected[0].round == rounds


def test_parm_pp_regenerates_from_the_previous_image_as_the_generator_orders_it() -> None:
    """The toy decodes in raster order: with half re-opened it keeps the first two of four steps'
    slots exactly and runs only the last two steps."""
    gen = ToyGenerator(num_steps=4, num_tokens=40)
    result = run("parm_pp", gen, ToyJudge(), n=2, rounds=1, threshold=1.0, remask_ratio=0.5)
    previous = next(c for c in result.candidates if c.round == 0 and c.rank == 0)
    (revised,) = [c for c in result.candidates if c.round == 1]
    assert np.array_equal(revised.tokens[:20], previous.tokens[:20])
    assert np.array_equal(
        revised.tokens[20:], np.concatenate([toy_draw(TASK.seed, 2, s, 10) for s in (2, 3)])
    )
    assert result.cost.nfe == 2 * 4 + 2
    assert revised.path_index == 2 and revised.prompt.startswith(TASK.prompt + " make it redder")


def test_parm_pp_hands_the_generator_the_previous_tokens_confidences_and_ratio() -> None:
    class Recording(ToyGenerator):
        def __init__(self) -> None:
            super().__init__()
            self.specs: list[PathSpec] = []

        def start(self, specs: Sequence[PathSpec]) -> list[PathState]:
            self.specs.extend(specs)
            states = super().start(specs)
            return [replace(s, confidence=np.full(s.tokens.shape, s.path_index / 10)) for s in states]

        def advance(self, states: Sequence[PathState], steps: int = 1, previews: bool = False) -> Advanced:
            moved = super().advance(states, steps, previews)
            kept = [
                replace(new, confidence=old.confidence) for old, new in zip(states, moved.states, strict=True)
            ]
            return Advanced(kept, moved.previews)

    gen = Recording()
    result = run("parm_pp", gen, ToyJudge(), n=2, rounds=1, threshold=1.0, remask_ratio=0.25)
    previous = next(c for c in result.candidates if c.round == 0 and c.selected is False and c.rank == 0)
    source = gen.specs[-1].regenerate_from
    assert source is not None and source.ratio == 0.25
    assert np.array_equal(source.tokens, previous.tokens)
    assert np.array_equal(source.confidence, np.full(12, previous.path_index / 10))
    assert gen.specs[-1].image_index == TASK.image_index


# shared properties


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != "sample"])
def test_every_judged_step_is_one_trace_row(strategy: str) -> None:
    result = run(strategy, ToyGenerator(), ToyJudge(), n=3, rounds=2, threshold=0.9)
    keys = trace_keys(result)
    assert keys and len(keys) == len(set(keys))
    reflections = sum(c.reflection is not None for c in result.candidates)
    assert result.cost.judge_calls == len(keys) + reflections


def test_sampled_decisions_are_reproducible() -> None:
    def picks() -> list[tuple[int, int | None, int | None]]:
        result = run("parm", ToyGenerator(), ToyJudge(), n=6, decision="sample")
        return [(c.path_index, c.rank, c.pruned_at) for c in result.candidates]

    assert picks() == picks()


def test_concurrent_searches_coalesce_into_few_batched_calls() -> None:
    class CountingToy(ToyGenerator):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def advance(self, states: Sequence[PathState], steps: int = 1, previews: bool = False) -> Advanced:
            self.calls += 1
            return super().advance(states, steps, previews)

    gen, judge = CountingToy(), ToyJudge()
    cfg = SearchConfig(strategy="best_of_n", n=4, images_per_prompt=16)
    tasks = tasks_for(PromptRecord("p", "a cat"), cfg)

    async def all_at_once() -> list[SearchResult]:
        gen_client, judge_client = (
            LocalGeneratorClient(gen, max_batch=64),
            LocalJudgeClient(judge, max_batch=64),
        )
        return await asyncio.gather(*(run_search(t, gen_client, judge_client, cfg) for t in tasks))

    results = asyncio.run(all_at_once())
    assert sum(r.cost.nfe for r in results) == gen.forward_passes == 16 * 4 * 6
    assert gen.calls <= 2 and judge.calls <= 2
