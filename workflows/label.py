"""Label prompts: search each with the recipe's strategy and write samples, steps and errors.

    python workflows/label.py --config configs/smoke.yaml [--output URI] [--run-id ID] [--sec.field V ...]

On a cluster: ``ray job submit --working-dir . -- python workflows/label.py --config ...``
(the job's RAY_ADDRESS is used); without an address a local Ray is started. Rerunning with
the same output and run id resumes: committed prompts are skipped.

Exit codes: 0 the run is complete (every prompt of every session labelled); 2 a prompt failed
after its retries or an input row was bad, in this or an earlier session (see the errors
table and run.json); 1 the recipe, overrides or input source are invalid, found before any
prompt is searched (most before any model loads: ``driver/preflight.py``); 3 the run stopped
(the output could not be written, or the cluster failed): rerun with the same run id to resume.
docs/reliability.md lists every fault and what it ends in.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (``ray job submit`` does): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import contextlib
import functools
from collections.abc import Callable, Iterator

import yaml

from schemas.config import JobConfig, field_origin, load_config, parse_overrides
from schemas.errors import ConfigError, FieldError, InputError
from schemas.prompts import BadRow, PromptRecord, read_prompts
from workflows.driver.driver import Driver, limit_prompts, start_counting
from workflows.driver.preflight import preflight, require_rows
from workflows.driver.progress import Progress
from workflows.output.run_record import RunRecord, new_run_id, now_iso, public_config
from workflows.output.secrets import redact, remember_secrets
from workflows.output.sink import SinkClient, open_sink
from workflows.search import check_judge
from workflows.serving.backends import Backend, open_backend

EXIT_OK, EXIT_CONFIG, EXIT_INCOMPLETE, EXIT_STOPPED = 0, 1, 2, 3


Origin = Callable[[tuple[str, ...]], str]
"""Where a recipe field was set, as the prefix of an error about it."""


def parse_args(argv: list[str] | None) -> tuple[JobConfig, bool, Origin]:
    """The resolved config, whether only to print it, and where each of its fields was set."""
    parser = argparse.ArgumentParser(
        prog="parmflow-label",
        description=__doc__.split("\n\n")[0],
        epilog="Any recipe field can be overridden as --section.field VALUE, e.g. --search.n 8.",
    )
    parser.add_argument("--config", required=True, help="YAML recipe (configs/*.yaml)")
    parser.add_argument("--output", help="output directory or s3:// URI (output.uri)")
    parser.add_argument("--run-id", help="run id; reuse one to resume (output.run_id)")
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved recipe (every field, defaults included) as YAML and exit",
    )
    args, rest = parser.parse_known_args(argv)
    overrides = parse_overrides(rest)
    output = overrides.setdefault("output", {})
    if args.output is not None:
        output["uri"] = args.output
    if args.run_id is not None:
        output["run_id"] = args.run_id
    cfg = load_config(args.config, overrides)
    if cfg.output.run_id is None and not args.print_config:
        cfg.output.run_id = new_run_id()
    return cfg, args.print_config, functools.partial(field_origin, args.config, overrides)


async def label(
    cfg: JobConfig,
    backend: Backend,
    sink: SinkClient,
    rows: Iterator[PromptRecord | BadRow],
    previous: RunRecord | None,
) -> tuple[Progress, RunRecord]:
    """Label every prompt of ``rows``, continuing the earlier sessions' ``previous`` record;
    return this session's progress and the run record."""
    run_id = str(cfg.output.run_id)
    # setup: refuse a judge that cannot answer the strategy, learn what an earlier session
    # committed, record the start
    check_judge(cfg.search, backend.judge)
    committed = await sink.committed(cfg.run.retry_failed)
    record = RunRecord.begin(cfg, run_id, backend.models, now_iso(), previous)
    await sink.write_run_json(record.to_json())

    # run
    progress = Progress()
    for name, client in (("generator", backend.generator), ("judge", backend.judge)):
        if client is not None:
            client.on_max_batch_lowered(functools.partial(progress.max_batch_lowered, name))
    progress.start(f"run {run_id} -> {run_uri(cfg)} ({backend.models})")
    start_counting(cfg.input, progress)
    heartbeat = asyncio.create_task(progress.heartbeat())
    try:
        await Driver(cfg, backend, sink, progress).run(limit_prompts(rows, cfg.input.limit), committed)
        await sink.close()  # commit the last shard
    except BaseException:
        # stopped: keep the prompts that finished (their shard is still buffered) if the writer
        # can, and say in run.json that the run stopped
        with contextlib.suppress(Exception):
            await save(sink, record, progress, stopped=True)
        raise
    finally:
        heartbeat.cancel()

    # save: the run record with this session's and the run's counts
    await save(sink, record, progress)
    return progress, record


async def save(sink: SinkClient, record: RunRecord, progress: Progress, stopped: bool = False) -> None:
    if stopped:
        with contextlib.suppress(Exception):  # a writer that failed commits nothing more
            await sink.close()
    totals = await sink.totals()
    record.end(now_iso(), progress.counts(), totals, stopped=stopped, max_batch=progress.max_batch)
    await sink.write_run_json(record.to_json())


def run_uri(cfg: JobConfig) -> str:
    return f"{cfg.output.uri.rstrip('/')}/{cfg.output.run_id}"


def refuse(message: object) -> int:
    print(redact(f"parmflow-label: {message}"), file=sys.stderr)
    return EXIT_CONFIG


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, print_only, origin = parse_args(argv)
    except ConfigError as exc:
        return refuse(exc)
    if print_only:
        print(yaml.safe_dump(public_config(cfg), sort_keys=False), end="")
        return EXIT_OK
    run_id = str(cfg.output.run_id)
    remember_secrets(cfg.output.storage_options)
    source = cfg.input
    try:  # everything that can be checked before the models load, then the models
        prompts = read_prompts(
            source.uri, source.format, source.strict, max_prompt_chars=source.max_prompt_chars
        )
        rows = require_rows(prompts, source.uri)
        previous = preflight(cfg, run_id)
        backend = open_backend(cfg, run_id)
    except FieldError as exc:
        return refuse(f"{origin(exc.field)}{exc}")
    except (ConfigError, InputError) as exc:
        return refuse(exc)
    with backend, open_sink(cfg, run_id, backend.models) as sink:
        try:
            progress, record = asyncio.run(label(cfg, backend, sink, rows, previous))
        except ConfigError as exc:
            return refuse(exc)
        except Exception as exc:
            print(
                redact(f"parmflow-label: run stopped: {type(exc).__name__}: {exc}\n")
                + f"  committed prompts are kept; rerun with --run-id {run_id} to resume",
                file=sys.stderr,
            )
            return EXIT_STOPPED
    progress.finish(run_uri(cfg), record)
    return EXIT_OK if record.status == "complete" else EXIT_INCOMPLETE


if __name__ == "__main__":
    sys.exit(main())
