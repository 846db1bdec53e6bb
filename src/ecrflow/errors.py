"""Errors that say which file, which line and what was expected."""

from __future__ import annotations


class InputError(ValueError):
    """A raw input file is missing or malformed.

    The message always names the file and, where there is one, the line (1-based) and what was expected,
    so that a user can fix the file or fetch the right one without reading a traceback. ``field`` (the key
    at fault) and ``expected`` are kept apart as well, for the one-block report of a failed rule
    (:func:`ecrflow.smk.run`).
    """

    def __init__(self, path, message: str, line: int | None = None, hint: str | None = None, *,
                 field: str | None = None, expected: str | None = None):
        self.path = str(path)
        self.line = line
        self.hint = hint
        self.field = field
        self.expected = expected
        where = self.path if line is None else f"{self.path}, line {line}"
        text = f"{where}: {message}"
        if expected:
            text += f"; expected {expected}"
        self.headline = text  # "file, line N: problem; expected ...": the message without the hint
        if hint:
            text += f"\n  hint: {hint}"
        super().__init__(text)


class ConfigError(ValueError):
    """The workflow config does not match its schema or is inconsistent."""
