"""The output's filesystem, and how a write rides out a storage outage.

What s3fs and botocore already do is used as it is; this module asks for more of it and adds
the one thing they lack.

- botocore retries each S3 request by its ``retries`` config. ``output_fs`` asks for its
  ``adaptive`` mode with ``S3_RETRIES["max_attempts"]`` attempts, unless the recipe's
  ``storage_options.config_kwargs.retries`` says otherwise: 500, 502, 503, 504, throttling
  codes (``SlowDown``) and connection errors are retried with exponential backoff and full
  jitter, and after throttling a client-side rate limiter slows every later request down. s3fs
  adds a few quick retries of its own for timeouts and ``SlowDown``.
- Both count attempts, not time, and both retry one request, where a shard commit is several.
  So how long an outage they ride out is luck (five attempts sleep from nothing to 15 s in all),
  and an S3 server restarting for a minute, or a local disk that fills up until someone frees
  space, would stop a run that has days of GPU time in it. :class:`Retry` retries one whole
  storage operation (publishing a file, reading the commit records) with exponential backoff and
  full jitter until ``output.retry_s`` has passed since its first failure. Publishing is
  idempotent (the same bytes under the same name), so a rerun of it is always safe; what still
  fails after the budget stops the run (exit 3), and a rerun resumes.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import fsspec
from fsspec.utils import get_protocol

from workflows.output.secrets import redact

T = TypeVar("T")

S3_PROTOCOLS = ("s3", "s3a")
S3_RETRIES: dict[str, Any] = {"max_attempts": 5, "mode": "adaptive"}
"""botocore's retry config for the output, unless ``storage_options.config_kwargs.retries`` is set."""


def output_fs(
    uri: str, storage_options: dict[str, Any] | None = None, attempts: int | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """``fsspec.core.url_to_fs`` with botocore's retries set for S3; ``attempts`` overrides their
    count (a check at start up has nothing to lose and should answer fast)."""
    options = dict(storage_options or {})
    if get_protocol(uri) in S3_PROTOCOLS:
        config = dict(options.get("config_kwargs") or {})
        retries = dict(config.get("retries") or S3_RETRIES)
        if attempts is not None:
            retries["max_attempts"] = attempts
        options["config_kwargs"] = {**config, "retries": retries}
    return fsspec.core.url_to_fs(uri, **options)


class StorageFailed(OSError):
    """A storage operation still failed when its retry budget ran out."""


def _say(text: str) -> None:
    print(f"[parmflow] {text}", file=sys.stderr, flush=True)


@dataclass
class Retry:
    """Reruns a storage operation until it succeeds or ``budget_s`` has passed since it first
    failed; each wait is drawn uniformly below ``first_s * 2 ** (attempt - 1)``, capped at
    ``cap_s`` (full jitter: writers that failed together do not retry together)."""

    budget_s: float
    first_s: float = 0.5
    cap_s: float = 30.0
    report: Callable[[str], None] = field(default=_say)

    def run(self, work: Callable[[], T], what: str) -> T:
        first_failure: float | None = None
        attempt = 0
        while True:
            try:
                return work()
            except Exception as exc:
                attempt += 1
                now = time.monotonic()
                first_failure = now if first_failure is None else first_failure
                left = self.budget_s - (now - first_failure)
                error = redact(f"{type(exc).__name__}: {exc}")
                if left <= 0:
                    raise StorageFailed(
                        f"{what}: gave up after {attempt} attempts over {now - first_failure:.1f} s "
                        f"(output.retry_s {self.budget_s:g}): {error}"
                    ) from exc
                delay = min(left, random.uniform(0, min(self.cap_s, self.first_s * 2 ** (attempt - 1))))
                self.report(f"{what} failed ({error}); retry {attempt} in {delay:.1f} s")
                time.sleep(delay)
