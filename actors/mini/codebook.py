"""The miniature world's image codes: k-means over the 4x4 patches of ground-truth renders.

A 32x32 image is an 8x8 grid of 4x4-pixel patches; each patch's code is the index of its
nearest centroid, and 256 centroids make an 8-bit code, which is what MAGVIT-v2's lookup-free
quantiser reads (bit i of the code, most significant first, is the sign of latent channel i).
On the world's 2-pixel grid a patch holds few distinct edges, so 256 centroids reconstruct the
renders almost exactly; a fitted encoder is enough because only decoding is learnt
(``workflows/train/mini_tokenizer.py`` trains MAGVIT-v2's decoder on these codes). Codes are
ordered by how often they occur, so code 0 is the black background.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from actors.mini.world import IMAGE_SIZE

PATCH = 4
SIDE = IMAGE_SIZE // PATCH
NUM_CODES = 256
CODE_BITS = 8


def patches(images: np.ndarray) -> np.ndarray:
    """(B, 32, 32, 3) uint8 -> (B, 64, 48) float32 in [0, 1], patches in raster order."""
    b = images.shape[0]
    grid = images.reshape(b, SIDE, PATCH, SIDE, PATCH, 3).transpose(0, 1, 3, 2, 4, 5)
    return grid.reshape(b, SIDE * SIDE, PATCH * PATCH * 3).astype(np.float32) / 255.0


def unpatch(flat: np.ndarray) -> np.ndarray:
    """(B, 64, 48) in [0, 1] -> (B, 32, 32, 3) uint8."""
    b = flat.shape[0]
    grid = flat.reshape(b, SIDE, SIDE, PATCH, PATCH, 3).transpose(0, 1, 3, 2, 4, 5)
    return (grid.reshape(b, IMAGE_SIZE, IMAGE_SIZE, 3).clip(0, 1) * 255).round().astype(np.uint8)


def _nearest(points: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and squared distance to the nearest centroid, for (n, d) points."""
    dist = (points**2).sum(1)[:, None] - 2 * points @ centroids.T + (centroids**2).sum(1)[None]
    index = dist.argmin(1)
    return index, np.maximum(dist[np.arange(len(points)), index], 0)


@dataclass(frozen=True)
class Codebook:
    centroids: np.ndarray
    """(256, 48) float32 in [0, 1]; row i is the patch of code i."""

    def encode(self, images: np.ndarray) -> np.ndarray:
        """(B, 32, 32, 3) uint8 -> (B, 64) int64 codes."""
        flat = patches(images)
        index, _ = _nearest(flat.reshape(-1, flat.shape[-1]), self.centroids)
        return index.reshape(flat.shape[:2])

    def lookup(self, codes: np.ndarray) -> np.ndarray:
        """(B, 64) codes -> (B, 32, 32, 3) uint8: the reconstruction the decoder is trained to match."""
        return unpatch(self.centroids[codes])

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"centroids": self.centroids}, str(path))

    @classmethod
    def load(cls, path: Path) -> Codebook:
        if not path.is_file():
            raise ValueError(f"{path}: no codebook (train one with python -m workflows.train.mini_tokenizer)")
        centroids = load_file(str(path))["centroids"]
        if centroids.shape != (NUM_CODES, PATCH * PATCH * 3):
            raise ValueError(f"{path}: centroids of shape {centroids.shape}, expected ({NUM_CODES}, 48)")
        return cls(centroids)


def fit_codebook(images: np.ndarray, seed: int, iterations: int = 30) -> Codebook:
    """Weighted k-means over the distinct patches of ``images`` (k-means++ start), codes sorted
    by frequency. Distinct patches are few (mostly background and edges), so this takes seconds."""
    flat = patches(images).reshape(-1, PATCH * PATCH * 3)
    points, counts = np.unique(flat, axis=0, return_counts=True)
    weights = np.sqrt(counts.astype(np.float64))
    rng = np.random.default_rng(seed)
    if len(points) <= NUM_CODES:
        raise ValueError(f"only {len(points)} distinct patches; render more images to fit {NUM_CODES} codes")
    chosen = [int(np.argmax(weights))]
    nearest = ((points - points[chosen[0]]) ** 2).sum(1)
    for _ in range(NUM_CODES - 1):
        pick = rng.choice(len(points), p=nearest * weights / (nearest * weights).sum())
        chosen.append(int(pick))
        nearest = np.minimum(nearest, ((points - points[pick]) ** 2).sum(1))
    centroids = points[chosen].copy()
    for _ in range(iterations):
        index, _ = _nearest(points, centroids)
        mass = np.bincount(index, weights=weights, minlength=NUM_CODES)
        for d in range(centroids.shape[1]):
            sums = np.bincount(index, weights=weights * points[:, d], minlength=NUM_CODES)
            centroids[:, d] = np.where(mass > 0, sums / np.maximum(mass, 1e-12), centroids[:, d])
    index, _ = _nearest(points, centroids)
    order = np.argsort(-np.bincount(index, weights=weights, minlength=NUM_CODES), kind="stable")
    return Codebook(centroids[order].astype(np.float32))
