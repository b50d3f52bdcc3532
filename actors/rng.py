"""Per-path random streams.

A path's randomness at a step depends only on (seed, path index, step), never on which other
paths shared its batch, which replica ran it, or how many steps were taken per call. That is
what makes a retried call idempotent and "alone equals in-batch" hold.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def stream_seed(seed: int, path_index: int, step: int, salt: str = "") -> int:
    """A 63-bit seed mixed from the path coordinates (a hash, so nearby seeds do not correlate)."""
    digest = hashlib.blake2b(f"{seed}:{path_index}:{step}:{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def path_generator(
    seed: int, path_index: int, step: int, salt: str = "", device: str | torch.device = "cpu"
) -> torch.Generator:
    """A torch generator on that stream. torch is imported here, not at module level, so the
    driver and the writer, which only need :func:`stream_seed`, never load it."""
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(stream_seed(seed, path_index, step, salt))
    return gen
