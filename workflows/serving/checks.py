"""What a model hands back is checked where it enters the driver, before anything is decided on it.

A judge whose scores are NaN (a bf16 overflow, a broken checkpoint) or outside [0, 1], or a
generator whose finished paths hold tokens outside its codebook, would otherwise be written
into the tables as if they were answers, and rank, prune and pair on garbage. The clients check
each caller's own results after its batch returns, so a bad answer fails only the search that
asked; the driver then retries the prompt and, if the model keeps answering so, records it as an
``errors`` row naming the cause. Images need no check here: the sink refuses any that is not
uint8 (H, W, 3) when it encodes it (``workflows/output/rows.py``), which fails the prompt the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from actors.interfaces import Finished

PROBABILITY_SLACK = 1e-4
"""How far P(yes) + P(no) may exceed 1 by rounding before the pair is not probabilities."""


class ModelOutputError(ValueError):
    """A model answered with values that cannot be right; the prompt fails, its batch-mates go on."""


def checked_answers(rows: Sequence[Any], judge: str, question: str) -> np.ndarray:
    """The (n, 2) array of (P(yes), P(no)) rows, each finite, in [0, 1], summing to at most 1."""
    answers = np.asarray(rows, dtype=np.float64)
    if answers.shape != (len(rows), 2):
        raise ModelOutputError(
            f"judge {judge}: {question!r} answers of shape {answers.shape}, not ({len(rows)}, 2)"
        )
    finite = np.isfinite(answers).all(axis=1)
    with np.errstate(invalid="ignore"):
        valid = finite & (answers >= 0).all(axis=1) & (answers.sum(axis=1) <= 1 + PROBABILITY_SLACK)
    if not valid.all():
        i = int(np.flatnonzero(~valid)[0])
        p_yes, p_no = (float(value) for value in answers[i])
        raise ModelOutputError(
            f"judge {judge} answered {question!r} for image {i} with P(yes)={p_yes!r}, P(no)={p_no!r}: "
            "not probabilities"
        )
    return answers


def checked_tokens(finished: Sequence[Finished], generator: str, codebook_size: int | None) -> list[Finished]:
    """Finished paths whose token ids are integers, all decided, and inside the codebook when the
    generator says how large it is."""
    for i, done in enumerate(finished):
        tokens = np.asarray(done.tokens)
        if tokens.dtype.kind not in "iu" or tokens.size == 0:
            raise ModelOutputError(
                f"generator {generator}: path {i} finished with tokens of {tokens.dtype} {tokens.shape}"
            )
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or (codebook_size is not None and high >= codebook_size):
            value = low if low < 0 else high
            bound = "" if codebook_size is None else f", {codebook_size}"
            raise ModelOutputError(
                f"generator {generator}: path {i} finished with token {value} outside [0{bound})"
            )
    return list(finished)
