"""Where finished prompts go: rows built from search results, handed to the shard writer.

The work is done by a :class:`PromptSink` in one place, which resolves images, encodes PNGs and
feeds the writer; the driver holds a :class:`SinkClient` and awaits the same methods. Under Ray
the PromptSink is an actor (``num_cpus=0``), so final images travel from the generator's
object-store output straight to the process that encodes them and the driver only ever holds
references; in-process (``run.backend: local``) it runs in one worker thread. Either way its
calls arrive one at a time, which the shard writer's buffer relies on.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import ray

from schemas.config import JobConfig, OutputConfig
from schemas.prompts import BadRow, PromptRecord
from workflows.output.commits import Totals
from workflows.output.rows import input_error_row, prompt_error_row, prompt_rows
from workflows.output.secrets import is_credential, remember_secrets
from workflows.output.writer import ShardWriter
from workflows.search.types import SearchResult, SearchTask
from workflows.serving.image_refs import resolve_images
from workflows.serving.replicas import forwarded_env

T = TypeVar("T")


class PromptRowsError(ValueError):
    """One prompt's rows could not be built (an image lost with a node, or one that cannot be
    encoded): the prompt's own failure, retried like its search. Any other failure of the sink is
    the writer's, which every prompt needs."""


@dataclass(frozen=True)
class Committed:
    """What earlier sessions committed, which this one must not write again."""

    prompt_ids: set[str]
    input_errors: set[tuple[str, int]]
    """(source, line) of the bad input rows already recorded."""


class PromptSink:
    def __init__(
        self,
        output: OutputConfig,
        run_id: str,
        *,
        strategy: str,
        generator: str,
        judge: str | None,
        previews_in_steps: bool,
        credentials: dict[str, str] | None = None,
    ):
        """``credentials``: environment variables (``AWS_SECRET_ACCESS_KEY``, ...) the sink's own
        process needs to reach the output, set here rather than in the actor's ``runtime_env``:
        Ray's runtime-env agent logs a runtime env's variables in clear, an actor's arguments it
        does not (``tests/test_reliability_secrets.py`` greps the logs)."""
        os.environ.update(credentials or {})
        remember_secrets(output.storage_options)
        self.writer = ShardWriter(
            output.uri,
            run_id,
            storage_options=output.storage_options,
            shard_rows=output.shard_rows,
            shard_bytes=output.shard_bytes,
            retry_s=output.retry_s,
        )
        self.run_id, self.strategy = run_id, strategy
        self.generator, self.judge, self.previews_in_steps = generator, judge, previews_in_steps

    def committed(self, retry_failed: bool = False) -> Committed:
        """With ``retry_failed``, prompts committed as failed are searched again."""
        return Committed(
            self.writer.committed_prompt_ids(failed=not retry_failed), self.writer.committed_input_errors()
        )

    def totals(self) -> Totals:
        return self.writer.committed_totals()

    def write_prompt(self, record: PromptRecord, results: list[tuple[SearchTask, SearchResult]]) -> int:
        """Buffer one prompt's rows; returns how many images (samples rows) it holds.

        A failure to build this prompt's rows is the prompt's (:class:`PromptRowsError`); a
        failure of the writer is everyone's and propagates as it is."""
        try:
            for _, result in results:
                self._resolve(result)
            rows = prompt_rows(
                self.run_id,
                record,
                results,
                strategy=self.strategy,
                generator=self.generator,
                judge=self.judge,
                previews_in_steps=self.previews_in_steps,
            )
        except Exception as exc:
            raise PromptRowsError(f"rows of prompt {record.prompt_id}: {type(exc).__name__}: {exc}") from exc
        self.writer.add(rows)
        return len(rows.samples)

    def _resolve(self, result: SearchResult) -> None:
        """Pixels for the images this prompt's rows keep; previews only when they are kept."""
        images = resolve_images([c.image for c in result.candidates])
        for candidate, image in zip(result.candidates, images, strict=True):
            candidate.image = image
        kept = [t for t in result.trace if t.preview is not None]
        if not self.previews_in_steps:
            for trace in kept:
                trace.preview = None
            return
        for trace, preview in zip(kept, resolve_images([t.preview for t in kept]), strict=True):
            trace.preview = preview

    def write_input_error(self, bad: BadRow) -> None:
        self.writer.add_errors([input_error_row(self.run_id, bad)])

    def write_prompt_error(self, record: PromptRecord, reason: str, attempts: int) -> None:
        self.writer.add_errors([prompt_error_row(self.run_id, record, reason, attempts)])

    def read_run_json(self) -> dict[str, Any] | None:
        return self.writer.read_run_json()

    def write_run_json(self, data: dict[str, Any]) -> None:
        self.writer.write_run_json(data)

    def close(self) -> None:
        """Commit what is buffered and make every table readable."""
        self.writer.close()


class SinkClient:
    """The driver's side of a :class:`PromptSink`: the same methods, awaited. A backend says only
    how one call reaches the sink (``_call``) and how the sink is let go (``shutdown``)."""

    async def committed(self, retry_failed: bool = False) -> Committed:
        return await self._call(PromptSink.committed, retry_failed)

    async def totals(self) -> Totals:
        return await self._call(PromptSink.totals)

    async def write_prompt(self, record: PromptRecord, results: list[tuple[SearchTask, SearchResult]]) -> int:
        return await self._call(PromptSink.write_prompt, record, results)

    async def write_input_error(self, bad: BadRow) -> None:
        await self._call(PromptSink.write_input_error, bad)

    async def write_prompt_error(self, record: PromptRecord, reason: str, attempts: int) -> None:
        await self._call(PromptSink.write_prompt_error, record, reason, attempts)

    async def read_run_json(self) -> dict[str, Any] | None:
        return await self._call(PromptSink.read_run_json)

    async def write_run_json(self, data: dict[str, Any]) -> None:
        await self._call(PromptSink.write_run_json, data)

    async def close(self) -> None:
        await self._call(PromptSink.close)

    async def _call(self, method: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError

    def shutdown(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> SinkClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class LocalSinkClient(SinkClient):
    """The sink in one worker thread of this process."""

    def __init__(self, sink: PromptSink):
        self._sink = sink
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parmflow-sink")

    async def _call(self, method: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, method, self._sink, *args)

    def shutdown(self) -> None:
        self._thread.shutdown()


class RaySinkClient(SinkClient):
    """The sink as a Ray actor."""

    def __init__(self, actor: ray.actor.ActorHandle):
        self._actor = actor

    async def _call(self, method: Callable[..., T], *args: Any) -> T:
        return await getattr(self._actor, method.__name__).remote(*args)

    def shutdown(self) -> None:
        ray.kill(self._actor)


def open_sink(cfg: JobConfig, run_id: str, models: dict[str, str | None]) -> SinkClient:
    """The sink of a label run, beside its models: in this process, or as an actor of the Ray the
    backend connected to."""
    labels = {
        "strategy": cfg.search.strategy,
        "generator": models["generator"],
        "judge": models["judge"],
        "previews_in_steps": cfg.search.previews_in_steps,
    }
    if cfg.run.backend == "local":
        return LocalSinkClient(PromptSink(cfg.output, run_id, **labels))
    env = (forwarded_env(storage=True) or {}).get("env_vars", {})
    credentials = {name: value for name, value in env.items() if is_credential(name)}
    plain = {name: value for name, value in env.items() if name not in credentials}
    actor = ray.remote(PromptSink).options(
        name=f"parmflow-{run_id}-sink-{secrets.token_hex(2)}",
        num_cpus=0,
        runtime_env={"env_vars": plain} if plain else None,
    )
    return RaySinkClient(actor.remote(cfg.output, run_id, **labels, credentials=credentials))
