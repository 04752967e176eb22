"""Small named errors. The library raises these; the CLI prints them as one line and exits 1."""

from __future__ import annotations


class ThpreplayError(Exception):
    """A user-facing problem: bad input, a missing tool, a refused write."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InputError(ThpreplayError):
    """A problem with an input file, optionally at a line (printed as path:line: ...)."""

    def __init__(self, path: str, message: str, line: int | None = None, hint: str | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}", hint)
        self.path = str(path)
        self.line = line


class OutputError(ThpreplayError):
    """The output dataset cannot be written (exists, unwritable, disk full)."""


class RecordError(ThpreplayError):
    """perf or tracefs cannot be used to record."""


class SchemaError(ThpreplayError):
    """A frame or a dataset does not match its declared schema."""
