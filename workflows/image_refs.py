"""Images under Ray are handles into the object store, resolved only where pixels are needed.

A generator replica returns the images of one call as ONE object (a list of arrays) owned by
the caller, so a replica that dies and restarts does not take them with it. Each path gets an
:class:`ImageRef` naming that object and its position in it; the judge replica and the writer
actor resolve refs next to where the pixels are used, so images never pass through the driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray


@dataclass(frozen=True)
class ImageRef:
    batch: ray.ObjectRef
    index: int


def refs_for(batch: ray.ObjectRef, count: int) -> list[ImageRef]:
    return [ImageRef(batch, i) for i in range(count)]


def resolve_images(images: Sequence[Any]) -> list[np.ndarray]:
    """Arrays for a mix of refs and arrays, fetching each distinct batch object once."""
    batches = list({img.batch: None for img in images if isinstance(img, ImageRef)})
    fetched = dict(zip(batches, ray.get(batches), strict=True)) if batches else {}
    return [fetched[img.batch][img.index] if isinstance(img, ImageRef) else img for img in images]
