"""What a search returns: its final candidates, a trace row per judged step, and its cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SearchTask:
    """One search: ``images_per_prompt`` of these run per prompt, each with its own seed."""

    prompt_id: str
    prompt: str
    image_index: int
    seed: int


@dataclass
class Cost:
    """Counted by the strategy itself. ``nfe`` is generator forward passes per path-step
    (one CFG step of one path counts once); ``steps_saved`` is the steps pruned paths did
    not run."""

    nfe: int = 0
    judge_calls: int = 0
    paths_pruned: int = 0
    steps_saved: int = 0

    def add(self, other: Cost) -> None:
        self.nfe += other.nfe
        self.judge_calls += other.judge_calls
        self.paths_pruned += other.paths_pruned
        self.steps_saved += other.steps_saved


@dataclass
class TraceRow:
    """One judged (path, step): becomes a ``steps`` table row."""

    path_index: int
    step: int
    question: str
    p_yes: float
    decision: bool
    round: int = 0
    preview: Any | None = None
    elapsed_ms: float = 0.0
    p_no: float | None = None


@dataclass
class Candidate:
    """A path that reached the end (or was pruned): becomes a ``samples`` table row.

    A pruned path keeps the preview it was judged on as ``image`` and its undecided tokens
    as UNKNOWN (-1) in ``tokens``.
    """

    path_index: int
    seed: int
    image: Any
    tokens: np.ndarray
    round: int = 0
    prompt: str | None = None
    outcome: float | None = None
    process: float | None = None
    potential: float | None = None
    clarity_step: int | None = None
    pruned_at: int | None = None
    selected: bool = False
    rank: int | None = None
    reflection: str | None = None
    confidence: np.ndarray | None = None
    """The generator's per-token confidences, when it keeps them: what PARM++ re-masks by."""


@dataclass
class SearchResult:
    candidates: list[Candidate]
    trace: list[TraceRow] = field(default_factory=list)
    cost: Cost = field(default_factory=Cost)

    @property
    def selected(self) -> list[Candidate]:
        return [c for c in self.candidates if c.selected]
