"""Training state on disk: one file per run, replaced atomically so a kill never leaves half of it.

The file is torch's format but holds only tensors and plain values (numbers, lists, the numpy
generators' state dicts), so it is read back with ``weights_only=True`` and runs no code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def save_state(path: Path, state: dict[str, Any]) -> None:
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)


def load_state(path: Path) -> dict[str, Any]:
    return torch.load(path, weights_only=True)
