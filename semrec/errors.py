"""Errors that tell the user what is wrong, where, and how to fix it."""

from __future__ import annotations


class SemrecError(Exception):
    """Base class for every error semrec raises on purpose."""


class DataError(SemrecError, ValueError):
    """Malformed or inconsistent input data.

    The message always names the file, and where known the line and field, plus the fix.
    """

    def __init__(self, message: str, *, path: object = None, line: int | None = None,
                 field: str | None = None, fix: str | None = None):
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        text = (": ".join([", ".join(where), message]) if where else message)
        if fix:
            text += f" (fix: {fix})"
        super().__init__(text)
        self.path, self.line, self.field, self.fix = path, line, field, fix


class ConfigError(SemrecError, ValueError):
    """An invalid option or configuration value."""


class OutputError(SemrecError):
    """An output path semrec refuses to write: it would replace something that is not its own to replace."""

    def __init__(self, message: str, *, fix: str | None = None):
        super().__init__(message + (f" (fix: {fix})" if fix else ""))
        self.fix = fix
