"""The two interfaces every search strategy is written against: a stepwise generator and a judge.

Path state is plain data (numpy arrays, ints, strings) so that any replica can continue any
path and so that a state crosses a process boundary as a few kilobytes, never as a handle to
GPU memory. Images travel as ``uint8`` arrays of shape (H, W, 3); PNG encoding happens only
in the shard writer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

UNKNOWN = -1
"""Token value of an undecided slot (masked in MaskGIT, not yet generated in raster order)."""

Question = Literal["outcome", "process", "clarity", "potential"]
QUESTIONS: tuple[Question, ...] = ("outcome", "process", "clarity", "potential")
REFLECT = "reflect"
"""Named beside the questions in ``Judge.answers`` by judges that can write reflections."""


@dataclass(frozen=True)
class Regeneration:
    """A new path that starts from a previous image (PARM++): ``ratio`` of its tokens are decided
    anew. Which tokens are re-opened, and at which schedule step the new path starts, is the
    generator's business, because both follow from its decoding order: MaskGIT re-opens the tokens
    it was least sure of (``confidence``, from the previous path's state) and starts at the step
    whose schedule has that many masked; raster order keeps the first rows and starts at the step
    that writes the next one."""

    tokens: np.ndarray
    ratio: float
    confidence: np.ndarray | None = None

    def reopened(self, units: int) -> int:
        """How many of ``units`` (tokens, rows) are decided anew."""
        return min(units, max(0, round(self.ratio * units)))


@dataclass(frozen=True)
class PathSpec:
    """What a new path starts from.

    ``init_tokens`` lets a path begin from a partly decided grid; ``start_step`` is the schedule
    step that grid corresponds to. ``regenerate_from`` instead leaves both choices to the
    generator (PARM++). ``image_index`` is which of a prompt's searches the path belongs to: the
    reference sampler's state carries over between them (``temperature_schedule: reference``).
    """

    prompt_id: str
    prompt: str
    seed: int
    path_index: int
    init_tokens: np.ndarray | None = None
    start_step: int = 0
    regenerate_from: Regeneration | None = None
    image_index: int = 0


@dataclass(frozen=True)
class PathState:
    """A path between two steps. ``tokens`` is flat (raster order), int32, UNKNOWN where undecided.
    ``confidence`` (float32, same shape, NaN where undecided) is the probability each token was
    decided with, kept by generators that re-open their least certain tokens on regeneration."""

    prompt_id: str
    prompt: str
    seed: int
    path_index: int
    step: int
    num_steps: int
    tokens: np.ndarray
    confidence: np.ndarray | None = None
    image_index: int = 0

    @property
    def done(self) -> bool:
        return self.step >= self.num_steps

    @property
    def num_unknown(self) -> int:
        return int((self.tokens == UNKNOWN).sum())


@dataclass(frozen=True)
class Advanced:
    """Result of ``Generator.advance``: the new states and, when asked, one preview per path."""

    states: list[PathState]
    previews: list[np.ndarray] | None


@dataclass(frozen=True)
class Finished:
    """A completed path: the decoded image and the image token ids it was decoded from."""

    image: np.ndarray
    tokens: np.ndarray


@runtime_checkable
class Generator(Protocol):
    """A batched, stepwise image generator. Calls must be idempotent: a retried call on a
    restarted replica must return the same result, so all randomness comes from
    :func:`actors.rng.path_generator` keyed by (seed, path index, step)."""

    name: str
    identity: str
    num_steps: int
    num_tokens: int
    image_size: int

    def start(self, specs: Sequence[PathSpec]) -> list[PathState]: ...

    def advance(self, states: Sequence[PathState], steps: int = 1, previews: bool = False) -> Advanced: ...

    def finish(self, states: Sequence[PathState]) -> list[Finished]: ...


@runtime_checkable
class Judge(Protocol):
    """A batched judge: answer probabilities for one of the known questions, and free-text reflections.

    ``ask`` returns an (n, 2) float64 array: column 0 is P(yes), column 1 is P(no). Both are
    kept because a full-vocabulary softmax leaves mass on other tokens, so P(no) is not
    1 - P(yes), and the paper reads P(no) where it asks "is this not so?" (PARM's fallback,
    the sampled clarity answer).

    ``answers`` names the questions it can answer (and ``"reflect"``), so a run whose strategy
    needs more is refused before any model computes."""

    name: str
    identity: str
    answers: frozenset[str]

    def ask(self, images: Sequence[np.ndarray], prompts: Sequence[str], question: Question) -> np.ndarray: ...

    def reflect(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[str]: ...


def yes_no(p_yes: np.ndarray) -> np.ndarray:
    """The (n, 2) answer array of a judge that has no third answer: P(no) = 1 - P(yes)."""
    p_yes = np.asarray(p_yes, dtype=np.float64).reshape(-1)
    return np.stack([p_yes, 1.0 - p_yes], axis=1)
