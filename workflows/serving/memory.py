"""A model out of memory on a batch: told to the batcher as :class:`BatchTooLarge`, without torch.

The same items in smaller batches usually fit, so an out-of-memory error is not a failure of
the prompts in the batch but a limit of the replica; the :class:`~workflows.serving.batching.Coalescer`
splits the batch and lowers its ``max_batch`` when it hears one. The model side (a replica, or a
worker thread of the in-process backend) turns torch's ``OutOfMemoryError`` into this error before
it travels: the driver never imports torch, and unpickling torch's exception class under Ray
would make it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class BatchTooLarge(RuntimeError):
    """A batch did not fit in the model's memory; smaller ones may."""


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's out-of-memory error. Looked up in ``sys.modules``: a model that
    raised one has loaded torch, and a process without torch cannot have met one."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.OutOfMemoryError)


def memory_checked(work: Callable[..., T]) -> Callable[..., T]:
    """``work`` with torch's out-of-memory error turned into :class:`BatchTooLarge`, after giving
    the allocator's cached blocks back, so the smaller batches that follow can use them."""

    @functools.wraps(work)
    def run(*args: Any, **kwargs: Any) -> T:
        try:
            return work(*args, **kwargs)
        except Exception as exc:
            if not out_of_memory(exc):
                raise
            torch = sys.modules["torch"]
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise BatchTooLarge(f"{type(exc).__name__}: {exc}") from None

    return run
