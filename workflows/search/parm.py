"""``parm``: the Potential Assessment Reward Model search (clarity, potential, best-of-N').

For each of N paths, clarity is asked every ``cfg.clarity_every`` steps until the preview is
judged clear; at that first clear step potential is asked once. A path judged without
potential stops there: it is never advanced again, and the steps it did not run are counted
as saved (the reference code computes them anyway). With ``cfg.prune`` False such paths run
on to the end but stay out of the selection, so the result is the same and only the compute
differs (that is what ``bench/search_cost.py`` compares). The survivors' final images are
ranked by outcome P(yes) and the best is selected (best-of-N').

Clarity is asked at the last step too, as the paper's code does: a path still not clear
there is not hopeful (it never showed enough to judge its potential). If no path survives,
the one with the lowest P(no) at its potential judgment is selected, as in the paper's code;
a path whose potential was never asked counts as P(no) = 1 (worst) and ties go to the lowest
path index. P(no) rather than the highest P(yes), because a full-vocabulary softmax leaves
mass on other tokens, so the two orders can differ. A stopped fallback is first run to its
end, and its steps are taken back out of ``steps_saved`` and the path out of
``paths_pruned``, because that compute was spent after all.

All paths move in lockstep; undecided paths ask for previews, decided ones do not.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from actors.interfaces import Finished, PathState
from schemas.config import SearchConfig
from workflows.search.paths import SearchContext, rank
from workflows.search.types import Candidate, SearchResult, SearchTask
from workflows.serving.clients import GeneratorClient, JudgeClient


@dataclass
class _Path:
    state: PathState
    preview: Any = None
    clarity_step: int | None = None
    potential: float | None = None
    potential_no: float | None = None
    """P(no) of the potential judgment: what the fallback ranks by."""
    hopeful: bool = True
    stopped: bool = False
    finished: Finished | None = None
    outcome: float | None = None


def needs(cfg: SearchConfig) -> frozenset[str]:
    return frozenset({"clarity", "potential", "outcome"})


async def search(
    task: SearchTask, gen: GeneratorClient, judge: JudgeClient | None, cfg: SearchConfig
) -> SearchResult:
    ctx = SearchContext(task, gen, judge, cfg)
    return ctx.result(await select(ctx))


async def select(ctx: SearchContext) -> list[Candidate]:
    """Run PARM's N paths in ``ctx``; return every candidate, exactly one of them selected."""
    paths = [_Path(s) for s in await ctx.start(ctx.specs(ctx.cfg.n))]
    while True:
        live = [p for p in paths if not p.stopped]
        if not live or live[0].state.done:
            break
        await _advance(ctx, live)
        await _judge_clarity_and_potential(ctx, [p for p in live if p.clarity_step is None])
    return await _best_of_n_prime(ctx, paths)


async def _advance(ctx: SearchContext, live: list[_Path]) -> None:
    undecided = [p for p in live if p.clarity_step is None]
    decided = [p for p in live if p.clarity_step is not None]
    remaining = ctx.num_steps - live[0].state.step
    steps = min(ctx.cfg.clarity_every, remaining) if undecided else remaining
    seen, blind = await asyncio.gather(
        ctx.advance([p.state for p in undecided], steps, previews=True),
        ctx.advance([p.state for p in decided], steps),
    )
    for path, state, preview in zip(undecided, seen.states, seen.previews or [], strict=True):
        path.state, path.preview = state, preview
    for path, state in zip(decided, blind.states, strict=True):
        path.state = state


async def _judge_clarity_and_potential(ctx: SearchContext, undecided: list[_Path]) -> None:
    if not undecided:
        return
    step = undecided[0].state.step
    verdicts = await ctx.ask([p.preview for p in undecided], [p.state for p in undecided], "clarity")
    clear = [p for p, v in zip(undecided, verdicts, strict=True) if v.yes]
    if step >= ctx.num_steps:  # never clear: nothing to judge its potential on
        for path in undecided:
            path.hopeful = path in clear
    verdicts = await ctx.ask([p.preview for p in clear], [p.state for p in clear], "potential")
    for path, verdict in zip(clear, verdicts, strict=True):
        path.clarity_step, path.potential, path.hopeful = step, verdict.p_yes, verdict.yes
        path.potential_no = verdict.p_no
        if not verdict.yes and ctx.cfg.prune:
            path.stopped = True
            ctx.cost.paths_pruned += 1
            ctx.cost.steps_saved += ctx.num_steps - step


async def _best_of_n_prime(ctx: SearchContext, paths: list[_Path]) -> list[Candidate]:
    survivors = [p for p in paths if p.hopeful]
    if not survivors:
        fallback = min(paths, key=lambda p: (_fallback_p_no(p), p.state.path_index))
        if fallback.stopped:
            ctx.cost.paths_pruned -= 1
            ctx.cost.steps_saved -= ctx.num_steps - fallback.state.step
            fallback.stopped = False
        survivors = [fallback]
    await _run_to_end(ctx, [p for p in paths if not p.stopped])
    verdicts = await ctx.ask([p.finished.image for p in survivors], [p.state for p in survivors], "outcome")
    for path, verdict in zip(survivors, verdicts, strict=True):
        path.outcome = verdict.p_yes
    candidates = [_candidate(ctx, p) for p in paths]
    ranked = [c for c in candidates if c.outcome is not None]
    rank(ranked, [c.outcome for c in ranked])
    return candidates


async def _run_to_end(ctx: SearchContext, paths: list[_Path]) -> None:
    """Decode every path, each step group in lockstep: a revived fallback is still at the step
    it stopped at while the paths that ran on (never clear, or ``prune`` off) are at the end."""
    groups: dict[int, list[_Path]] = {}
    for path in paths:
        groups.setdefault(path.state.step, []).append(path)
    ends = await asyncio.gather(*(ctx.run_to_end([p.state for p in group]) for group in groups.values()))
    for group, (states, finished) in zip(groups.values(), ends, strict=True):
        for path, state, done in zip(group, states, finished, strict=True):
            path.state, path.finished = state, done


def _fallback_p_no(path: _Path) -> float:
    """A path never judged clear was never asked about potential: it counts as the worst P(no)."""
    return 1.0 if path.potential_no is None else path.potential_no


def _candidate(ctx: SearchContext, path: _Path) -> Candidate:
    """A stopped path keeps the preview it was judged on; a completed path judged without
    potential (``prune`` off) keeps the step it would have stopped at as ``pruned_at``."""
    scores = {"potential": path.potential, "clarity_step": path.clarity_step, "outcome": path.outcome}
    if path.finished is None:
        return ctx.candidate(
            path.state, path.preview, path.state.tokens.copy(), pruned_at=path.clarity_step, **scores
        )
    pruned_at = None if path.outcome is not None else path.clarity_step
    return ctx.candidate(path.state, path.finished.image, path.finished.tokens, pruned_at=pruned_at, **scores)
