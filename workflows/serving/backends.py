"""The two ways a label run calls its models: Ray replicas, or models in this process.

Both hand the driver a generator client and a judge client of the same classes; the driver
cannot tell them apart. Either way every model is loaded before the first prompt is searched,
and a model that cannot load is the recipe's error (``FieldError`` naming its section, exit 1).
On Ray that means waiting for every replica: one the cluster cannot place would be handed calls
and never answer them, so after ``ray.start_timeout_s`` (an autoscaler may be adding nodes) the
run is refused, naming the replicas that did not start and what the cluster has.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import ray
from ray.exceptions import RayActorError

from actors.registry import build_generator, build_judge
from schemas.config import GeneratorSpec, JobConfig, JudgeSpec
from schemas.errors import ConfigError, FieldError
from workflows import ROOT
from workflows.serving.clients import GeneratorClient, JudgeClient, LocalGeneratorClient, LocalJudgeClient
from workflows.serving.ray_clients import RayGeneratorClient, RayJudgeClient
from workflows.serving.replicas import GeneratorReplica, JudgeReplica, launch


@dataclass
class Backend:
    generator: GeneratorClient
    judge: JudgeClient | None
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def models(self) -> dict[str, str | None]:
        return {"generator": self.generator.identity, "judge": self.judge.identity if self.judge else None}

    def close(self) -> None:
        for close in reversed(self.closers):
            close()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_backend(cfg: JobConfig, run_id: str) -> Backend:
    return _open_local(cfg) if cfg.run.backend == "local" else _open_ray(cfg, run_id)


M = TypeVar("M")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _not_loaded(section: str, spec: GeneratorSpec | JudgeSpec, error: str) -> FieldError:
    return FieldError((section,), f"{spec.kind} {spec.checkpoint} could not be loaded: {error}")


def _load(section: str, spec: GeneratorSpec | JudgeSpec, build: Callable[[Any], M]) -> M:
    try:
        return build(spec)
    except Exception as exc:
        raise _not_loaded(section, spec, f"{type(exc).__name__}: {exc}") from exc


def _open_local(cfg: JobConfig) -> Backend:
    gen = cfg.generator.resources
    model = _load("generator", cfg.generator, build_generator)
    generator = LocalGeneratorClient(model, gen.max_batch, gen.batch_wait_ms)
    judge = None
    if cfg.judge is not None:
        res = cfg.judge.resources
        judge = LocalJudgeClient(_load("judge", cfg.judge, build_judge), res.max_batch, res.batch_wait_ms)
    return Backend(generator, judge)


def _open_ray(cfg: JobConfig, run_id: str) -> Backend:
    closers: list[Callable[[], None]] = []
    if not ray.is_initialized():
        _connect(cfg)
        closers.append(ray.shutdown)
    prefix = f"parmflow-{run_id}-{secrets.token_hex(2)}"
    actors: list[Any] = []
    closers.append(lambda: [ray.kill(actor) for actor in actors])
    try:
        generators = launch(GeneratorReplica, cfg.generator, f"{prefix}-generator")
        actors += generators
        judges = launch(JudgeReplica, cfg.judge, f"{prefix}-judge") if cfg.judge is not None else []
        actors += judges
        wait_started(cfg, {"generator": generators, "judge": judges})
        generator = RayGeneratorClient(generators, cfg.generator.resources)
        judge = RayJudgeClient(judges, cfg.judge.resources) if cfg.judge is not None else None
    except BaseException:
        for close in reversed(closers):
            close()
        raise
    return Backend(generator, judge, closers)


def wait_started(cfg: JobConfig, replicas: dict[str, list[ray.actor.ActorHandle]]) -> None:
    """Return once every replica is placed and has loaded its model; refuse a model that failed
    to load, or replicas still not started after ``ray.start_timeout_s``."""
    calls = {actor.info.remote(): section for section, actors in replicas.items() for actor in actors}
    timeout = cfg.ray.start_timeout_s
    ready, pending = ray.wait(list(calls), num_returns=len(calls), timeout=timeout)
    for ref in ready:
        try:
            ray.get(ref)
        except RayActorError as exc:
            section = calls[ref]
            lines = [line.strip() for line in ANSI.sub("", str(exc)).splitlines() if line.strip()]
            raise _not_loaded(section, getattr(cfg, section), lines[-1] if lines else repr(exc)) from None
    if pending:
        section, missing = Counter(calls[ref] for ref in pending).most_common(1)[0]
        res = getattr(cfg, section).resources
        have = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
        raise FieldError(
            (section, "resources", "replicas"),
            f"{missing} of {res.replicas} replicas (each {res.num_gpus:g} GPU, {res.num_cpus:g} CPU) not "
            f"started after {timeout:g} s; the cluster has {have}. Lower the replicas or their resources, "
            "or raise ray.start_timeout_s if the cluster is adding nodes",
        )


def _connect(cfg: JobConfig) -> None:
    """Join the cluster named by the recipe or RAY_ADDRESS; else start a local Ray sized as asked."""
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        if "://" not in cfg.output.uri and not os.path.isabs(cfg.output.uri):
            print(
                f"[parmflow] warning: output.uri {cfg.output.uri!r} is a relative local path on a "
                "cluster: it lands in the job's working directory on the node that runs the writer "
                "actor. Use s3://... or a shared absolute path.",
                file=sys.stderr,
            )
        ray.init(address=address)
        return
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    ray.init(
        address="local",
        num_cpus=cfg.ray.num_cpus,
        num_gpus=cfg.ray.num_gpus,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        check_local_resources(cfg, ray.cluster_resources())
    except ConfigError:
        ray.shutdown()
        raise


def check_local_resources(cfg: JobConfig, available: dict[str, float]) -> None:
    """A local Ray cannot grow: say so now instead of waiting forever for a GPU that is not there
    (a cluster may autoscale, so only a local Ray is checked)."""
    specs = [("generator", cfg.generator)] + ([("judge", cfg.judge)] if cfg.judge else [])
    for resource, attr in (("GPU", "num_gpus"), ("CPU", "num_cpus")):
        asks = [(name, spec.resources.replicas, getattr(spec.resources, attr)) for name, spec in specs]
        needed = sum(replicas * each for _, replicas, each in asks)
        have = available.get(resource, 0.0)
        if needed > have:
            detail = ", ".join(f"{name} {replicas} x {each:g}" for name, replicas, each in asks)
            raise ConfigError(
                f"the recipe needs {needed:g} {resource}s ({detail}) but this machine's local Ray has "
                f"{have:g}. Run it on a GPU cluster (ray job submit --working-dir . -- python "
                f"workflows/label.py ...), or lower *.resources.replicas / *.resources.{attr}"
                + (", or pretend with --ray.num_gpus N (models run on the CPU)" if resource == "GPU" else "")
            )
