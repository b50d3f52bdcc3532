"""Turning a judge's P(yes) into a yes/no decision.

``threshold`` (the default) is deterministic: yes when P(yes) >= threshold. ``sample`` is
what the paper's reference code does: draw the first answer token at temperature 1, i.e. yes
with probability P(yes). The draw is keyed by the judged path's coordinates rather than
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
        self, p_yes: float, *, prompt_id: str, path: int, step: int, question: str, round: int = 0
    ) -> bool:
        if self.rule == "threshold":
            return p_yes >= self.threshold
        if self.rule == "sample":
            key = stream_seed(self.seed, path, step, salt=f"{prompt_id}/{question}/{round}")
            return bool(np.random.default_rng(key).random() < p_yes)
        raise ValueError(f"unknown decision rule {self.rule!r}")
