"""A deterministic toy generator and judge whose right answers are known in closed form.

They implement the real interfaces, run in microseconds and need no weights, so search
logic, batching, Ray plumbing and the shard writer are tested on them with exact
expectations. Registered as kind ``toy`` so a recipe can run the whole pipeline on them.

Generator: a path fills ``num_tokens / num_steps`` slots per step (raster order) with values
in [0, 256) drawn from its own stream. A regeneration keeps the slots of the first
``num_steps - round(ratio * num_steps)`` steps and starts at the step after them. Its image is
a flat colour: red = mean of the decided tokens, green = 255 * decided fraction, blue = the
last decided token.
Judge: ``outcome``/``process``/``potential`` P(yes) = red / 255; ``clarity`` P(yes) = green / 255;
P(no) = 1 - P(yes) always.

Options exist for failure and timing tests. Generator: ``fail_prompts`` (``start`` raises for a
prompt containing any of these strings), ``delay_ms`` (each call sleeps, so a run lasts long
enough to be interrupted), ``oom_above`` (a call with more paths raises torch's out-of-memory
error, as a GPU replica does on too large a batch) and ``bad_token_prompts`` (paths of such a
prompt finish with a token outside the codebook). Judge: ``bad_score_prompts`` and ``bad_score``
(such a prompt's images are scored ``bad_score``, NaN by default, as a broken judge would).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from actors.interfaces import (
    QUESTIONS,
    REFLECT,
    UNKNOWN,
    Advanced,
    Finished,
    PathSpec,
    PathState,
    Question,
    yes_no,
)
from actors.rng import stream_seed
from schemas.config import GeneratorSpec, JudgeSpec


class ToyGenerator:
    name = "toy"
    codebook_size = 256

    def __init__(
        self,
        num_steps: int = 6,
        num_tokens: int = 12,
        image_size: int = 8,
        fail_prompts: Sequence[str] = (),
        delay_ms: float = 0.0,
        oom_above: int | None = None,
        bad_token_prompts: Sequence[str] = (),
    ):
        if num_tokens % num_steps:
            raise ValueError("toy generator: num_tokens must be a multiple of num_steps")
        self.num_steps, self.num_tokens, self.image_size = num_steps, num_tokens, image_size
        self.fail_prompts, self.delay_s = tuple(fail_prompts), delay_ms / 1000.0
        self.oom_above, self.bad_token_prompts = oom_above, tuple(bad_token_prompts)
        self.identity = f"toy(steps={num_steps},tokens={num_tokens})"
        self.forward_passes = 0

    def _call(self, paths: int) -> None:
        """What every call does first: sleep, and run out of memory when asked."""
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.oom_above is not None and paths > self.oom_above:
            import torch

            raise torch.OutOfMemoryError(
                f"CUDA out of memory (toy: {paths} paths, room for {self.oom_above})"
            )

    def start(self, specs: Sequence[PathSpec]) -> list[PathState]:
        self._call(len(specs))
        states = []
        for spec in specs:
            if any(bad in spec.prompt for bad in self.fail_prompts):
                raise RuntimeError(f"toy generator: prompt {spec.prompt!r} is set to fail")
            tokens = np.full(self.num_tokens, UNKNOWN, dtype=np.int32)
            step = spec.start_step
            if spec.init_tokens is not None:
                tokens = np.asarray(spec.init_tokens, dtype=np.int32).copy()
            if spec.regenerate_from is not None:  # raster order: keep the first steps' slots
                step = self.num_steps - spec.regenerate_from.reopened(self.num_steps)
                kept = step * (self.num_tokens // self.num_steps)
                tokens[:kept] = np.asarray(spec.regenerate_from.tokens, dtype=np.int32)[:kept]
            coordinates = (spec.prompt_id, spec.prompt, spec.seed, spec.path_index)
            states.append(PathState(*coordinates, step, self.num_steps, tokens))
        return states

    def _step(self, state: PathState) -> PathState:
        per_step = self.num_tokens // self.num_steps
        rng = np.random.default_rng(stream_seed(state.seed, state.path_index, state.step))
        tokens = state.tokens.copy()
        lo = state.step * per_step
        slots = np.arange(lo, lo + per_step)
        fresh = slots[tokens[slots] == UNKNOWN]
        tokens[fresh] = rng.integers(0, 256, size=per_step, dtype=np.int32)[: len(fresh)]
        self.forward_passes += 1
        return PathState(
            state.prompt_id,
            state.prompt,
            state.seed,
            state.path_index,
            state.step + 1,
            state.num_steps,
            tokens,
        )

    def advance(self, states: Sequence[PathState], steps: int = 1, previews: bool = False) -> Advanced:
        self._call(len(states))
        out = []
        for state in states:
            for _ in range(min(steps, state.num_steps - state.step)):
                state = self._step(state)
            out.append(state)
        return Advanced(out, [self.render(s.tokens) for s in out] if previews else None)

    def finish(self, states: Sequence[PathState]) -> list[Finished]:
        self._call(len(states))
        for state in states:
            if not state.done:
                raise ValueError(f"path {state.prompt_id}/{state.path_index} is at step {state.step}")
        return [Finished(self.render(s.tokens), self._final_tokens(s)) for s in states]

    def _final_tokens(self, state: PathState) -> np.ndarray:
        tokens = state.tokens.copy()
        if any(bad in state.prompt for bad in self.bad_token_prompts):
            tokens[0] = self.codebook_size + 7
        return tokens

    def render(self, tokens: np.ndarray) -> np.ndarray:
        known = tokens[tokens != UNKNOWN]
        red = float(known.mean()) if known.size else 0.0
        green = 255.0 * known.size / tokens.size
        blue = float(known[-1]) if known.size else 0.0
        image = np.empty((self.image_size, self.image_size, 3), dtype=np.uint8)
        image[...] = np.array([round(red), round(green), round(blue)], dtype=np.uint8)
        return image


class ToyJudge:
    name = "toy"
    identity = "toy-judge"
    answers = frozenset((*QUESTIONS, REFLECT))

    def __init__(self, bad_score_prompts: Sequence[str] = (), bad_score: float = float("nan")) -> None:
        self.calls = 0
        self.bad_score_prompts, self.bad_score = tuple(bad_score_prompts), bad_score

    def ask(self, images: Sequence[np.ndarray], prompts: Sequence[str], question: Question) -> np.ndarray:
        self.calls += 1
        channel = 1 if question == "clarity" else 0
        scores = [float(img[0, 0, channel]) / 255.0 for img in images]
        for i, prompt in enumerate(prompts):
            if any(bad in prompt for bad in self.bad_score_prompts):
                scores[i] = self.bad_score
        return yes_no(np.array(scores, dtype=np.float64))

    def reflect(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[str]:
        return [f"make it redder (red is {int(img[0, 0, 0])})" for img in images]


def load_toy_generator(spec: GeneratorSpec) -> ToyGenerator:
    return ToyGenerator(**spec.options)


def load_toy_judge(spec: JudgeSpec) -> ToyJudge:
    return ToyJudge(**spec.options)
