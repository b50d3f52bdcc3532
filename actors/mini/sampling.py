"""Candidates for many prompts from any stepwise generator, in-process, for measuring the
miniature world (best-of-N needs every candidate of a prompt, each scored by the exact scorer)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from actors.interfaces import Generator, PathSpec
from actors.scorers.mini import score
from schemas.geneval import Metadata


def sample_images(
    generator: Generator, prompts: Sequence[str], samples: int, seed: int, chunk: int = 256
) -> np.ndarray:
    """(P, samples, H, W, 3) uint8: candidate j of prompt i has seed ``seed + i`` and path index j,
    so a candidate is the same whatever else is sampled with it."""
    specs = [PathSpec(f"p{i}", p, seed + i, j) for i, p in enumerate(prompts) for j in range(samples)]
    images = []
    for start in range(0, len(specs), chunk):
        states = generator.start(specs[start : start + chunk])
        states = generator.advance(states, generator.num_steps).states
        images.extend(f.image for f in generator.finish(states))
    return np.stack(images).reshape(len(prompts), samples, *images[0].shape)


def correctness(images: np.ndarray, metadata: Sequence[Metadata]) -> np.ndarray:
    """(P, S) bool: the exact scorer's verdict on each candidate."""
    return np.array(
        [[score(image, meta).correct for image in row] for row, meta in zip(images, metadata, strict=True)]
    )


def best_of(correct: np.ndarray, n: int) -> np.ndarray:
    """(P,) bool: whether an oracle picking among the first ``n`` candidates finds a correct one."""
    return correct[:, :n].any(axis=1)
