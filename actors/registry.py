"""Name -> model tables, so a recipe names a generator or judge by ``kind`` and checkpoint.

Entries are import paths, loaded on first use, so a driver that never builds a model never
imports torch model code, and a replica imports only the model it hosts.
"""

from __future__ import annotations

import importlib
from typing import Any

from actors.interfaces import Generator, Judge
from schemas.config import GeneratorSpec, JudgeSpec

GENERATORS: dict[str, str] = {
    "toy": "actors.toy:load_toy_generator",
    "showo": "actors.showo.generator:load_showo",
    "janus": "actors.janus.generator:load_janus",
}

JUDGES: dict[str, str] = {
    "toy": "actors.toy:load_toy_judge",
    "llava": "actors.judges.llava:load_llava_judge",
    "clip": "actors.judges.clip:load_clip_judge",
}


def _resolve(table: dict[str, str], kind: str, what: str) -> Any:
    if kind not in table:
        raise ValueError(f"unknown {what} kind {kind!r}; known: {', '.join(sorted(table))}")
    module, _, attr = table[kind].partition(":")
    return getattr(importlib.import_module(module), attr)


def build_generator(spec: GeneratorSpec) -> Generator:
    return _resolve(GENERATORS, spec.kind, "generator")(spec)


def build_judge(spec: JudgeSpec) -> Judge:
    return _resolve(JUDGES, spec.kind, "judge")(spec)
