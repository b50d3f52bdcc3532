"""Failures that end a run rather than a prompt.

A prompt's own failure (its search raised, its rows could not be built) is retried and then
recorded in the ``errors`` table; the run goes on. A failure of what every prompt needs (no
generator or judge replica left, a writer that can no longer commit) would fail every remaining
prompt the same way and bury the dataset in error rows, so it stops the run instead: what is
committed stays, and a rerun with the same run id resumes.
"""

from __future__ import annotations

from workflows.serving.ray_clients import NoReplicaLeft


class RunStopped(RuntimeError):
    """The run cannot go on; committed prompts are kept and a rerun resumes."""


RUN_ENDING: tuple[type[Exception], ...] = (RunStopped, NoReplicaLeft)
"""What stops a run instead of failing the prompt that met it."""
