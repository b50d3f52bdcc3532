"""Step-level search shared by ``prm`` and ``beam``: keep the best ``width`` paths at every
judged step and branch ``branch`` continuations from each.

PRM is the case ``width=1, branch=N``. The first judged step sees ``width * branch`` fresh
paths. Every continuation gets a fresh path index (its own random stream), otherwise the
branches of one parent would all draw the same tokens. Paths dropped at a judged step are
recorded as pruned candidates (their preview and partial tokens); they do not count as
saved steps, because their continuations spend the same compute in their place. At the last
step every surviving path is complete: all are decoded and ranked by their last score.
"""

from __future__ import annotations

from workflows.search.paths import SearchContext, rank, score_fields
from workflows.search.types import Candidate, SearchResult


async def step_search(ctx: SearchContext, width: int, branch: int) -> SearchResult:
    question = ctx.cfg.step_question
    frontier = await ctx.start(ctx.specs(width * branch))
    candidates: list[Candidate] = []
    while True:
        steps = min(ctx.cfg.judge_every, ctx.num_steps - frontier[0].step)
        moved = await ctx.advance(frontier, steps, previews=True)
        states, previews = moved.states, moved.previews or []
        verdicts = await ctx.ask(previews, states, question)
        scores = [v.p_yes for v in verdicts]
        if states[0].done:
            break
        order = sorted(range(len(states)), key=lambda i: (-scores[i], states[i].path_index))
        for i in order[width:]:
            candidates.append(
                ctx.candidate(
                    states[i],
                    previews[i],
                    states[i].tokens.copy(),
                    pruned_at=states[i].step,
                    **score_fields(question, scores[i]),
                )
            )
            ctx.cost.paths_pruned += 1
        frontier = [child for i in order[:width] for child in ctx.branch(states[i], branch)]
    finished = await ctx.finish(states)
    final = [
        ctx.candidate(s, f.image, f.tokens, **score_fields(question, p))
        for s, f, p in zip(states, finished, scores, strict=True)
    ]
    rank(final, scores)
    return ctx.result(candidates + final)
