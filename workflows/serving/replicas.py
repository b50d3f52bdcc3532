"""Ray actor shells around a generator and a judge.

Plain actors, not Ray Serve: one driver-side batch becomes one actor call, and an actor
declared with ``max_restarts`` and ``max_task_retries`` reruns the calls of a replica that
died once it is back (model calls are idempotent by design), where a Serve replica fails the
calls it had accepted. The reruns are finite by default: a batch that itself kills the process
(OOM, CUDA abort) would otherwise kill every restart forever; after its last rerun the error
reaches the Coalescer, which bisects the batch and so fails only the poisoned one. A call that
runs out of GPU memory without killing the process raises
:class:`~workflows.serving.memory.BatchTooLarge` in place of torch's error, so the driver splits the
batch without importing torch. Each replica loads its model once, in ``__init__``, through the registry.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray

from actors.interfaces import PathSpec, PathState, Question
from actors.registry import build_generator, build_judge
from schemas.config import GeneratorSpec, JudgeSpec, Resources
from workflows.serving.image_refs import resolve_images, with_images
from workflows.serving.memory import memory_checked

FORWARDED_ENV = ("PARMFLOW_CACHE", "HF_HOME", "HF_HUB_OFFLINE")
"""Driver environment a replica needs to find the same model files."""

STORAGE_ENV_PREFIX = "AWS_"
"""The writer actor sees the object store as the driver does (endpoint, region, credentials)."""


def forwarded_env(storage: bool = False) -> dict[str, str] | None:
    """Driver variables a worker needs; a cluster started earlier would not have them."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key in FORWARDED_ENV or (storage and key.startswith(STORAGE_ENV_PREFIX))
    }
    return {"env_vars": env} if env else None


@dataclass(frozen=True)
class ModelInfo:
    name: str
    identity: str
    num_steps: int = 0
    answers: frozenset[str] = frozenset()
    codebook_size: int | None = None


def placement() -> dict[str, Any]:
    """What Ray gave this replica: resources and GPU ids (tests check the recipe is honoured)."""
    ctx = ray.get_runtime_context()
    return {
        "resources": ctx.get_assigned_resources(),
        "gpu_ids": ray.get_gpu_ids(),
        "node": ctx.get_node_id(),
    }


class GeneratorReplica:
    def __init__(self, spec: GeneratorSpec):
        self.model = build_generator(spec)

    def info(self) -> ModelInfo:
        model = self.model
        return ModelInfo(
            model.name, model.identity, model.num_steps, codebook_size=getattr(model, "codebook_size", None)
        )

    def placement(self) -> dict[str, Any]:
        return placement()

    @memory_checked
    def start(self, specs: Sequence[PathSpec]) -> list[PathState]:
        return self.model.start(specs)

    @memory_checked
    def advance(self, states: Sequence[PathState], steps: int, previews: bool) -> Any:
        """States inline (small), then one object per preview; see ``image_refs.call_with_images``."""
        out = self.model.advance(states, steps, previews)
        return with_images(out.states, out.previews if previews else None)

    @memory_checked
    def finish(self, states: Sequence[PathState]) -> Any:
        """Token ids inline, then one object per final image; see ``image_refs.call_with_images``."""
        done = self.model.finish(states)
        return with_images([f.tokens for f in done], [f.image for f in done])


class JudgeReplica:
    def __init__(self, spec: JudgeSpec):
        self.model = build_judge(spec)

    def info(self) -> ModelInfo:
        return ModelInfo(self.model.name, self.model.identity, answers=self.model.answers)

    def placement(self) -> dict[str, Any]:
        return placement()

    @memory_checked
    def ask(self, images: Sequence[Any], prompts: Sequence[str], question: Question) -> np.ndarray:
        return self.model.ask(resolve_images(images), prompts, question)

    @memory_checked
    def reflect(self, images: Sequence[Any], prompts: Sequence[str]) -> list[str]:
        return self.model.reflect(resolve_images(images), prompts)


def launch(cls: type, spec: GeneratorSpec | JudgeSpec, name_prefix: str) -> list[ray.actor.ActorHandle]:
    """Start ``spec.resources.replicas`` actors of ``cls``, each pinned as the recipe says."""
    res: Resources = spec.resources
    actor = ray.remote(cls)
    return [
        actor.options(
            name=f"{name_prefix}-{i}",
            num_gpus=res.num_gpus,
            num_cpus=res.num_cpus,
            max_restarts=res.max_restarts,
            max_task_retries=res.max_task_retries,
            runtime_env=forwarded_env(),
        ).remote(spec)
        for i in range(res.replicas)
    ]
