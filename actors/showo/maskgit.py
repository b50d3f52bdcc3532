"""One MaskGIT step for a batch of paths that may be at different steps.

Everything random is passed in as uniforms drawn per path (see ``path_uniforms``), so a path's
outcome depends only on its own logits and its own (seed, path index, step) stream. Sampling is
by inverse CDF on those uniforms, which is multinomial sampling without a shared generator.

Re-masking follows the reference (MUSE/MaskGIT): after step s of T, ``floor(N * cos(pi/2 *
(s+1)/T))`` slots, at least one and fewer than the slots that were unknown, go back to the mask,
chosen as the lowest ``log p + tau * gumbel`` with ``tau = temperature * (1 - (s+1)/T)``. Unlike
the reference, ``tau`` is computed afresh from the base temperature for every path and step; it
is never multiplied into itself across steps. Known (given) slots are never re-masked. The
last step re-masks nothing, so a finished path has every slot decided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from actors.interfaces import UNKNOWN
from actors.rng import path_generator


def cosine_mask_ratio(progress: float) -> float:
    """Share of slots still masked after ``progress`` (0..1) of the schedule, in float32 as the
    reference computes it (floor() of it decides counts, so the rounding matters)."""
    return float(torch.cos(torch.tensor(progress, dtype=torch.float32) * math.pi * 0.5))


def num_to_remask(step: int, num_steps: int, num_tokens: int, num_unknown: int) -> int:
    if step + 1 >= num_steps or num_unknown == 0:
        return 0
    scheduled = math.floor(num_tokens * cosine_mask_ratio((step + 1) / num_steps))
    return max(1, min(num_unknown - 1, scheduled))


def remask_temperature(temperature: float, step: int, num_steps: int) -> float:
    return temperature * (1.0 - (step + 1) / num_steps)


def path_uniforms(seed: int, path_index: int, step: int, num_tokens: int) -> torch.Tensor:
    """(2, N) uniforms on the CPU: row 0 picks the samples, row 1 the re-masking noise. Drawn on
    the CPU so a path's stream is the same whatever device runs the model."""
    return torch.rand(2, num_tokens, generator=path_generator(seed, path_index, step))


@dataclass(frozen=True)
class StepResult:
    sampled: torch.Tensor
    """(B, N) the full predicted grid: known slots kept, unknown slots filled with this step's samples."""
    tokens: torch.Tensor
    """(B, N) the grid after re-masking (UNKNOWN where masked again)."""


def maskgit_step(
    probs: torch.Tensor,
    tokens: torch.Tensor,
    uniforms: torch.Tensor,
    remask_counts: torch.Tensor,
    temperatures: torch.Tensor,
) -> StepResult:
    """probs (B, N, V) float32; tokens (B, N) long; uniforms (B, 2, N); remask_counts (B,) long;
    temperatures (B,) float32."""
    unknown = tokens == UNKNOWN
    cdf = probs.cumsum(-1)
    targets = uniforms[:, 0, :, None] * cdf[..., -1:]
    drawn = torch.searchsorted(cdf, targets).squeeze(-1).clamp_max(probs.shape[-1] - 1)
    sampled = torch.where(unknown, drawn, tokens)

    chosen = probs.gather(-1, sampled[..., None]).squeeze(-1)
    neg_log = -torch.log(uniforms[:, 1].clamp_min(1e-20))
    gumbel = -torch.log(neg_log.clamp_min(1e-20))
    confidence = torch.log(chosen.clamp_min(1e-20)) + temperatures[:, None] * gumbel
    confidence = confidence.masked_fill(~unknown, math.inf)
    cutoff = confidence.sort(dim=-1).values.gather(-1, remask_counts[:, None])
    remask = confidence < cutoff
    return StepResult(sampled=sampled, tokens=torch.where(remask, UNKNOWN, sampled))
