"""Where finished prompts go: rows built from search results, handed to the shard writer.

Under Ray this class runs as an actor (``workflows/backends.py``), so final images travel from
the generator's object-store output straight to the process that encodes them as PNG; the
driver only ever holds references. In-process (``run.backend: local``) it runs in one worker
thread. Either way calls arrive one at a time, which the shard writer's buffer relies on.
"""

from __future__ import annotations

from typing import Any

from schemas.config import OutputConfig
from schemas.prompts import BadRow, PromptRecord
from workflows.driver.errors import PromptRowsError
from workflows.output.rows import input_error_row, prompt_error_row, prompt_rows
from workflows.output.writer import ShardWriter
from workflows.search.types import SearchResult, SearchTask
from workflows.serving.image_refs import resolve_images


class PromptSink:
    def __init__(
        self,
        output: dict[str, Any],
        run_id: str,
        *,
        strategy: str,
        generator: str,
        judge: str | None,
        previews_in_steps: bool,
    ):
        out = OutputConfig.model_validate(output)
        self.writer = ShardWriter(
            out.uri,
            run_id,
            storage_options=out.storage_options,
            shard_rows=out.shard_rows,
            shard_bytes=out.shard_bytes,
        )
        self.run_id, self.strategy = run_id, strategy
        self.generator, self.judge, self.previews_in_steps = generator, judge, previews_in_steps

    def committed(self, retry_failed: bool = False) -> tuple[set[str], set[tuple[str, int]]]:
        """Prompt ids and (source, line) input errors a resumed run must not write again."""
        prompts = self.writer.committed_prompt_ids(failed=not retry_failed)
        return prompts, self.writer.committed_input_errors()

    def totals(self) -> dict[str, int]:
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

    def read_run_json(self) -> dict | None:
        return self.writer.read_run_json()

    def write_run_json(self, info: dict) -> None:
        self.writer.write_run_json(info)

    def close(self) -> None:
        self.writer.close()
