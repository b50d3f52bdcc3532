"""The exact scorer of the miniature world: it finds the objects itself and applies GenEval's rules.

Pixels take the nearest palette colour (black included) when within ``TOLERANCE``, so decoded
or generated images with slightly-off pixels still read; each colour's 8-connected components
are objects (the world keeps objects 2 pixels apart, so one object is one component), and
specks under ``MIN_PIXELS`` are noise. Shape is read from the fill of the bounding box (a square
fills it) and the mass balance between its lower and upper halves (a triangle's base is at the
bottom). The detection score is the overlap (IoU) of the blob with the ideal shape drawn in its
box: 1 for a clean render, lower for a smeared blob, which the rules' thresholds then drop as
GenEval drops a detector's unsure boxes (0.3, and 0.9 when counting).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from actors.mini.world import PALETTE, shape_mask
from actors.scorers.rules import Detection, Verdict, evaluate
from schemas.geneval import Metadata

TOLERANCE = 100.0
"""Largest RGB distance from a palette colour at which a pixel still has that colour."""
MIN_PIXELS = 8
SQUARE_FILL = 0.9
TRIANGLE_BOTTOM_SHARE = 0.6
_NAMES = ("black", *PALETTE)
_COLOURS = np.array([(0, 0, 0), *PALETTE.values()], dtype=np.float32)
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def colour_map(image: np.ndarray) -> np.ndarray:
    """(H, W) index into ("black", *PALETTE) per pixel; -1 where no colour is within tolerance."""
    dist = np.linalg.norm(image[..., None, :].astype(np.float32) - _COLOURS, axis=-1)
    index = dist.argmin(-1)
    return np.where(dist.min(-1) <= TOLERANCE, index, -1)


def shape_of(blob: np.ndarray) -> str:
    """Shape of a bool mask cropped to its bounding box."""
    height = blob.shape[0]
    rows = blob.sum(1)
    bottom = rows[(height + 1) // 2 :].sum() - (rows[height // 2] / 2 if height % 2 else 0)
    if bottom / rows.sum() > TRIANGLE_BOTTOM_SHARE:
        return "triangle"
    return "square" if blob.mean() > SQUARE_FILL else "circle"


def shape_agreement(blob: np.ndarray, ideal: np.ndarray) -> float:
    """How well a blob matches the ideal shape in its box, forgiving one pixel of edge: the share
    of the blob near the ideal times the share of the ideal near the blob (1 for a clean render
    or a faithful reconstruction; a smeared or ragged blob scores lower)."""
    near_ideal = ndimage.binary_dilation(ideal, structure=_EIGHT_CONNECTED)
    near_blob = ndimage.binary_dilation(blob, structure=_EIGHT_CONNECTED)
    return float((blob & near_ideal).sum() / blob.sum() * (ideal & near_blob).sum() / ideal.sum())


def detect(image: np.ndarray) -> list[Detection]:
    """The objects of a (H, W, 3) uint8 image, each with class, colour, box and score."""
    colours = colour_map(image)
    found = []
    for index, name in enumerate(_NAMES[1:], start=1):
        labels, _ = ndimage.label(colours == index, structure=_EIGHT_CONNECTED)
        for label, where in enumerate(ndimage.find_objects(labels), start=1):
            blob = labels[where] == label
            if blob.sum() < MIN_PIXELS:
                continue
            shape = shape_of(blob)
            side = max(blob.shape)  # the world's objects fill square boxes: a bar is a poor square
            boxed = np.zeros((side, side), dtype=bool)
            top, left = (side - blob.shape[0]) // 2, (side - blob.shape[1]) // 2
            boxed[top : top + blob.shape[0], left : left + blob.shape[1]] = blob
            score = shape_agreement(boxed, shape_mask(shape, side, side))
            box = (float(where[1].start), float(where[0].start), float(where[1].stop), float(where[0].stop))
            found.append(Detection(cls=shape, box=box, score=score, color=name))
    return found


def score(image: np.ndarray, metadata: Metadata) -> Verdict:
    return evaluate(detect(image), metadata)
