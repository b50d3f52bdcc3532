"""``parm_pp``: PARM++, i.e. ``parm`` followed by at most ``cfg.rounds`` reflection rounds.

Each round checks the currently selected image with the outcome question; on "yes" the
search stops, on "no" the judge writes a reflection and one new path regenerates from the
original prompt extended by that reflection. The new path starts from the previous image with
the share ``cfg.remask_ratio`` of it to decide anew (1.0: from scratch). Which tokens, and the
schedule step to start at, the generator chooses, because both follow from its decoding order
(``actors.interfaces.Regeneration``): Show-o re-opens its least confident tokens and starts
where its cosine schedule has that many masked; Janus keeps the first rows. The round-0 check
reuses PARM's outcome judgment of the selected image (same image, same question), so no judge
call is spent twice.

The last image produced is the result (the paper stops after at most three rounds and keeps
what it has); ranks are within a round, and every round's image is kept as a candidate with
its round number and the reflection that produced it.
"""

from __future__ import annotations

from dataclasses import replace

from actors.interfaces import REFLECT, Regeneration
from schemas.config import SearchConfig
from workflows.search import parm
from workflows.search.paths import SearchContext
from workflows.search.types import Candidate, SearchResult, SearchTask
from workflows.serving.clients import GeneratorClient, JudgeClient


def needs(cfg: SearchConfig) -> frozenset[str]:
    """PARM's questions, and reflections when any round may run."""
    return parm.needs(cfg) | {REFLECT} if cfg.rounds else parm.needs(cfg)


async def search(
    task: SearchTask, gen: GeneratorClient, judge: JudgeClient | None, cfg: SearchConfig
) -> SearchResult:
    ctx = SearchContext(task, gen, judge, cfg)
    candidates = await parm.select(ctx)
    chosen = next(c for c in candidates if c.selected)
    for round in range(1, cfg.rounds + 1):
        accepted = ctx.decide(chosen.outcome or 0.0, chosen.path_index, ctx.num_steps, "outcome", round - 1)
        if accepted:
            break
        revised = await _regenerate(ctx, chosen, round)
        chosen.selected = False
        candidates.append(revised)
        chosen = revised
    return ctx.result(candidates)


async def _regenerate(ctx: SearchContext, previous: Candidate, round: int) -> Candidate:
    (reflection,) = await ctx.reflect([previous.image])
    prompt = f"{ctx.task.prompt} {reflection}".strip()
    (spec,) = ctx.specs(1, prompt=prompt)
    source = Regeneration(previous.tokens, ctx.cfg.remask_ratio, previous.confidence)
    spec = replace(spec, regenerate_from=source)
    states, finished = await ctx.run_to_end(await ctx.start([spec]))
    (verdict,) = await ctx.ask([finished[0].image], states, "outcome", round=round)
    return ctx.candidate(
        states[0],
        finished[0].image,
        finished[0].tokens,
        round=round,
        reflection=reflection,
        outcome=verdict.p_yes,
        selected=True,
        rank=0,
    )
