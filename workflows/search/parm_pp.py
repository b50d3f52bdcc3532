"""``parm_pp``: PARM++, i.e. ``parm`` followed by at most ``cfg.rounds`` reflection rounds.

Each round checks the currently selected image with the outcome question; on "yes" the
search stops, on "no" the judge writes a reflection and one new path regenerates from the
original prompt extended by that reflection. The new path starts from the previous image's
tokens with the share ``cfg.remask_ratio`` of them set back to UNKNOWN, chosen from the new
path's own stream (1.0: regenerate from scratch). It starts at step 0 with those tokens
kept, so the generator's whole schedule refills exactly the re-masked slots whatever its
schedule shape; mapping the unknown share onto a later schedule step is model-specific and
left to the generator. The round-0 check reuses PARM's outcome judgment of the selected image
(same image, same question), so no judge call is spent twice.

The last image produced is the result (the paper stops after at most three rounds and keeps
what it has); ranks are within a round, and every round's image is kept as a candidate with
its round number and the reflection that produced it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from actors.interfaces import REFLECT, UNKNOWN
from actors.rng import stream_seed
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
    spec = replace(spec, init_tokens=_remask(ctx, previous.tokens, spec.path_index))
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


def _remask(ctx: SearchContext, tokens: np.ndarray, path_index: int) -> np.ndarray:
    """The previous tokens with a ``remask_ratio`` share set to UNKNOWN, drawn from the new
    path's stream so a rerun re-masks the same slots."""
    rng = np.random.default_rng(stream_seed(ctx.task.seed, path_index, 0, salt="remask"))
    out = np.asarray(tokens, dtype=np.int32).copy()
    count = round(ctx.cfg.remask_ratio * out.size)
    out[rng.choice(out.size, size=count, replace=False)] = UNKNOWN
    return out
