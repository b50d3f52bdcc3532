"""Steps every judge loader shares: option checking and the checkpoint/device/dtype rules of
:mod:`actors.loading`, so each judge applies them the same way."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from actors.loading import check_weights_format, pick_device, pick_dtype, resolve_checkpoint
from schemas.config import JudgeSpec

OptionsT = TypeVar("OptionsT")


def parse_options(options: dict[str, Any], cls: type[OptionsT], kind: str) -> OptionsT:
    """Build a judge's options dataclass, refusing unknown names and values of the wrong type
    (a misspelt option would otherwise be ignored silently)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(f"judge {kind!r}: unknown option(s) {unknown}; known: {', '.join(fields)}")
    for name, value in options.items():
        expected = type(fields[name].default)
        ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
        if not ok or isinstance(value, bool) is not (expected is bool):
            got = type(value).__name__
            raise ValueError(
                f"judge {kind!r}: option {name}={value!r} should be {expected.__name__}, got {got}"
            )
    return cls(**options)


@dataclass(frozen=True)
class Placement:
    """Where a judge's weights come from and where they run."""

    path: str
    device: torch.device
    dtype: torch.dtype


def place(spec: JudgeSpec) -> Placement:
    path = resolve_checkpoint(spec.checkpoint)
    check_weights_format(path, spec.trust_pickle)
    device = pick_device(spec.device)
    return Placement(path, device, pick_dtype(spec.dtype, device))
