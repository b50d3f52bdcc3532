"""Errors that name where the bad input is, so a user can go straight to it."""

from __future__ import annotations


class ConfigError(ValueError):
    """A recipe or override is invalid; the message names the file and the field path."""


class InputError(ValueError):
    """A bad row in a prompt source: names the file, the line (1-based) and the field."""

    def __init__(self, uri: str, line: int | None, field: str | None, reason: str):
        self.uri, self.line, self.field, self.reason = uri, line, field, reason
        where = uri if line is None else f"{uri}:{line}"
        what = f" field {field!r}:" if field else ""
        super().__init__(f"{where}:{what} {reason}")


class FieldError(ConfigError):
    """A recipe field whose value cannot work, found after the recipe was loaded (an output that
    cannot be written, a checkpoint that is not there); ``field`` is its dotted path, so the
    message can say where the value was set."""

    def __init__(self, field: tuple[str, ...], reason: str):
        self.field, self.reason = field, reason
        super().__init__(f"{'.'.join(field)}: {reason}")
