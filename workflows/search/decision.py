"""Turning a judge's answer probabilities into a yes/no decision.

``sample`` is what the paper's reference code does: draw the first answer token at
temperature 1. For ``clarity`` that code counts any answer but ``no`` as clear, so clear comes
with probability 1 - P(no) (a full-vocabulary softmax leaves mass on other tokens, so this is
more than P(yes)); every other question is yes only when the answer is ``yes``, probability
P(yes). ``threshold`` (deterministic) compares the same probabilities with the threshold:
clarity is clear when 1 - P(no) >= threshold, every other question yes when P(yes) >= it.
The draw is keyed by the judged path's coordinates rather than
taken from a shared stream, so a decision does not depend on the order in which concurrent
searches happened to be judged, and a retried prompt decides the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from actors.rng import stream_seed


@dataclass(frozen=True)
class Decider:
    rule: str = "threshold"
    threshold: float = 0.5
    seed: int = 0

    def __call__(
        self,
        p_yes: float,
        p_no: float | None = None,
        *,
        prompt_id: str,
        path: int,
        step: int,
        question: str,
        round: int = 0,
    ) -> bool:
        """``p_no`` is read only on ``clarity``; it is refused missing there."""
        if question == "clarity" and p_no is None:
            raise ValueError(f"decision rule {self.rule!r}: a clarity decision needs the judge's P(no)")
        if self.rule == "threshold":
            return (1.0 - p_no if question == "clarity" else p_yes) >= self.threshold
        if self.rule == "sample":
            draw = self.uniform(prompt_id=prompt_id, path=path, step=step, question=question, round=round)
            return bool(draw >= p_no) if question == "clarity" else bool(draw < p_yes)
        raise ValueError(f"unknown decision rule {self.rule!r}")

    def uniform(self, *, prompt_id: str, path: int, step: int, question: str, round: int = 0) -> float:
        """The keyed uniform draw behind a ``sample`` decision: below P(yes) is yes, below P(no)
        (clarity) is no."""
        key = stream_seed(self.seed, path, step, salt=f"{prompt_id}/{question}/{round}")
        return float(np.random.default_rng(key).random())
