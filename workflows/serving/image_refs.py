"""Images under Ray are handles into the object store, resolved only where pixels are needed.

A generator replica returns each image of a call as its OWN object: the caller asks for
``1 + n`` return values per call (states or token ids first, then one per image), so every
handle is a plain ``ray.ObjectRef`` owned by the caller. Being owned by the driver, an image
outlives a replica restart; being one object per image, resolving one image fetches only that
image, and a pruned candidate frees only its own object instead of pinning a whole batch.

The judge replica and the writer actor resolve handles next to where the pixels are used, so
no image is ever fetched by the driver. One caveat follows from Ray's small-object rule: a
return value under ``max_direct_call_object_size`` (100 KiB by default) is inlined into the
reply and kept in the caller's own memory rather than the object store. Full-size images
(256-384 px RGB, 196-442 KB) are above it and stay in the object store; tiny ones (the toy
model's 8 px, tiny test checkpoints) travel through the driver's memory, bounded by the images
of the candidates in flight at well under 100 KiB each, and still reach the judge and the
writer only as refs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import ray


def resolve_images(images: Sequence[Any]) -> list[np.ndarray]:
    """Arrays for a mix of refs and arrays, in one fetch of the distinct refs."""
    refs = list({img: None for img in images if isinstance(img, ray.ObjectRef)})
    fetched = dict(zip(refs, ray.get(refs), strict=True)) if refs else {}
    return [fetched[img] if isinstance(img, ray.ObjectRef) else img for img in images]


def call_with_images(method: Any, count: int, *args: Any) -> tuple[ray.ObjectRef, list[ray.ObjectRef]]:
    """Call an actor method that returns a head value and ``count`` images, one object each.

    The number of return values is set per call because it is the batch size; the returned
    refs are created by the caller, so the caller owns every image.
    """
    if not count:
        return method.remote(*args), []
    head, *images = method.options(num_returns=1 + count).remote(*args)
    return head, images


def with_images(head: Any, images: Sequence[np.ndarray] | None) -> Any:
    """The replica side of :func:`call_with_images`: the head first, then each image.

    Without images the call was made with one return value, which Ray does not unpack, so
    the head goes back bare.
    """
    return (head, *images) if images else head
