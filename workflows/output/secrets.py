"""Credentials never leave the process in words: not in logs, progress lines, ``run.json``, errors
rows or the message a stopped run ends with.

A run reads credentials from its environment (``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``HF_TOKEN``, ...), from ``output.storage_options`` (``key``, ``secret``, ``token``, nested
``client_kwargs``) and possibly from a URI (``s3://user:password@...``). Storage clients are not
careful with them: an error may quote a request, a config or a URI. So every text this project
writes about a run goes through :func:`redact`, which replaces each known secret value by
``<hidden>``, whatever message it came in.

Values shorter than ``MIN_SECRET_CHARS`` are left alone: no real credential is that short, and
masking a short common word (a test's ``testing`` key) would garble every message that holds it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

HIDDEN = "<hidden>"
MIN_SECRET_CHARS = 8
SECRET_NAME = re.compile(r"secret|token|password|passwd|credential|access_key|key_id|^key$|api_?key", re.I)
"""A storage option or environment variable whose value is a credential."""
URI_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/@\s:]*):[^/@\s]+@", re.I)

_remembered: set[str] = set()


def is_credential(name: str) -> bool:
    """Whether a storage option or environment variable of this name holds a credential."""
    return SECRET_NAME.search(name) is not None


def remember_secrets(options: Mapping[str, Any]) -> None:
    """Note the credential values of ``storage_options`` (nested mappings too), so :func:`redact`
    hides them in this process from now on."""
    for name, value in options.items():
        if isinstance(value, Mapping):
            remember_secrets(value)
        elif isinstance(value, str) and is_credential(name) and len(value) >= MIN_SECRET_CHARS:
            _remembered.add(value)


def _secrets() -> list[str]:
    from_env = {
        value for name, value in os.environ.items() if is_credential(name) and len(value) >= MIN_SECRET_CHARS
    }
    return sorted(_remembered | from_env, key=len, reverse=True)  # a secret inside another: longest first


def redact(text: str) -> str:
    """``text`` with every known credential and every password in a URI replaced by ``<hidden>``."""
    text = URI_PASSWORD.sub(rf"\1:{HIDDEN}@", text)
    for secret in _secrets():
        text = text.replace(secret, HIDDEN)
    return text


def redacted(data: Any) -> Any:
    """A copy of JSON-like ``data`` with :func:`redact` applied to every string in it."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, Mapping):
        return {key: redacted(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [redacted(value) for value in data]
    return data
