"""One MaskGIT step for a batch of paths that may be at different steps.

Everything random is passed in as uniforms drawn per path (see ``path_uniforms``), so a path's
outcome depends only on its own logits and its own (seed, path index, step) stream. Sampling is
by inverse CDF on those uniforms, which is multinomial sampling without a shared generator.

Re-masking follows the reference (MUSE/MaskGIT): after step s of T, ``floor(N * cos(pi/2 *
(s+1)/T))`` slots, at least one and fewer than the slots that were unknown, go back to the mask,
chosen as the lowest ``log p + tau * gumbel``; ``tau`` follows the option ``temperature_schedule``
(:func:`remask_temperature`: parmflow's fresh ``temperature * (1 - (s+1)/T)`` by default, or the
reference's compounding). Known (given) slots are never re-masked. The last step re-masks
nothing, so a finished path has every slot decided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from actors.interfaces import UNKNOWN
from actors.rng import path_generator


def cosine_mask_ratio(progress: float) -> float:
    """Share of slots still masked after ``progress`` (0..1) of the schedule, in float32 as the
    reference computes it (floor() of it decides counts, so the rounding matters)."""
    return float(torch.cos(torch.tensor(progress, dtype=torch.float32) * math.pi * 0.5))


def masked_at(step: int, num_steps: int, num_tokens: int) -> int:
    """Slots the schedule has masked when ``step`` begins (``num_tokens`` at step 0)."""
    return math.floor(num_tokens * cosine_mask_ratio(step / num_steps))


def num_to_remask(step: int, num_steps: int, num_tokens: int, num_unknown: int) -> int:
    if step + 1 >= num_steps or num_unknown == 0:
        return 0
    return max(1, min(num_unknown - 1, masked_at(step + 1, num_steps, num_tokens)))


def start_step_for(num_unknown: int, num_steps: int, num_tokens: int) -> int:
    """The schedule step whose masked count is closest to ``num_unknown`` (ties: the earlier step,
    which leaves more steps). A grid with half its slots known started at step 0 would decide one
    slot per step until the cosine schedule caught up (the clamp in :func:`num_to_remask`) and
    then spend all its compute in the last few steps."""
    if num_unknown == 0:
        return num_steps
    return min(range(num_steps), key=lambda s: (abs(masked_at(s, num_steps, num_tokens) - num_unknown), s))


def reopen_least_confident(tokens: np.ndarray, confidence: np.ndarray, count: int) -> np.ndarray:
    """``tokens`` with the ``count`` slots decided with the lowest probability set back to UNKNOWN
    (ties: the lower slot first; a slot without a confidence counts as least certain)."""
    order = np.argsort(np.nan_to_num(confidence, nan=-np.inf), kind="stable")
    out = np.asarray(tokens, dtype=np.int32).copy()
    out[order[:count]] = UNKNOWN
    return out


TemperatureSchedule = Literal["linear", "compound", "reference"]


def remask_temperature(
    temperature: float,
    step: int,
    num_steps: int,
    schedule: TemperatureSchedule = "linear",
    first_of_prompt: bool = True,
) -> float:
    """Scale of the Gumbel noise that re-masking adds to the log-confidences at ``step``.

    ``linear``: ``temperature * (1 - (step+1)/T)``, fresh every step. ``compound``: the reference's
    in-place update ``t <- t * (1 - (s+1)/T)`` applied at steps 0..step. ``reference``: what the
    paper's PARM script does with that update, which it never resets: the first path of a prompt
    compounds, and since the factor reaches 0 at its last step every later path (later searches of
    the prompt too) re-masks by confidence alone. All three are pure functions of the path's
    coordinates, so a path's result never depends on which paths ran before it."""
    if schedule == "linear":
        return temperature * (1.0 - (step + 1) / num_steps)
    if schedule == "reference" and not first_of_prompt:
        return 0.0
    if schedule in ("compound", "reference"):
        for s in range(step + 1):
            temperature = temperature * (1.0 - (s + 1) / num_steps)
        return temperature
    raise ValueError(f"unknown temperature_schedule {schedule!r}; known: linear, compound, reference")


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
    chosen: torch.Tensor
    """(B, N) the probability of each slot's token in ``sampled``."""


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
    return StepResult(sampled=sampled, tokens=torch.where(remask, UNKNOWN, sampled), chosen=chosen)
