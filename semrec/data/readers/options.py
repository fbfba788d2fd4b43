"""`-o key=value` reader options checked against the reader's own signature, before any file is read.

The CLI parses `-o` values as JSON (`-o text_key_offset=-1` is an int, `-o name=2023` too); `check_reader_options`
converts them to the reader's type hints where that is unambiguous (a number where a string or path is wanted,
'a,b' where a list of strings is) and otherwise raises a ConfigError naming the option, the expected type and every
allowed option, instead of the TypeError traceback an unknown keyword would give.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from semrec.errors import ConfigError

_TYPE_NAMES = {str: "string", Path: "path", int: "integer", float: "number", bool: "true/false",
               type(None): "null"}


def _members(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def _type_name(hint: Any) -> str:
    names = []
    members = _members(hint)
    for t in [m for m in members if not (m is str and Path in members)]:  # 'str | Path' reads as 'path'
        if typing.get_origin(t) in (Sequence, list, tuple):
            names.append("list of " + _type_name(typing.get_args(t)[0] if typing.get_args(t) else Any) + "s")
        else:
            names.append(_TYPE_NAMES.get(t, getattr(t, "__name__", str(t))))
    return " or ".join(dict.fromkeys(names))


def _coerce(value: Any, hint: Any) -> tuple[bool, Any]:
    """(fits, value converted to the hint): numbers parsed from `-o key=2023` count as strings where a string
    is wanted, integers as floats, 'a,b' as a list of strings."""
    for t in _members(hint):
        if t is Any:
            return True, value
        if t is type(None) and value is None:
            return True, None
        if t in (str, Path) and (isinstance(value, str) or type(value) in (int, float)):
            return True, str(value)
        if t is bool and isinstance(value, bool):
            return True, value
        if t is bool and isinstance(value, str) and value.lower() in ("true", "false"):
            return True, value.lower() == "true"
        if t is int and type(value) is int:
            return True, value
        if t is float and type(value) in (int, float):
            return True, float(value)
        if typing.get_origin(t) in (Sequence, list, tuple):
            inner = (typing.get_args(t) or (Any,))[0]
            items = value.split(",") if isinstance(value, str) else value
            if isinstance(items, list):
                conv = [_coerce(v, inner) for v in items]
                if all(ok for ok, _ in conv):
                    return True, [v for _, v in conv]
    return False, value


def check_reader_options(reader: Callable[..., Any], opts: dict[str, Any], fmt: str | None = None) -> dict[str, Any]:
    """Validate `-o key=value` options against a reader's keyword-only parameters and their type hints.

    Returns the options converted to the declared types; an unknown key or a value of the wrong type is a
    ConfigError naming the key, the expected type and every allowed key (instead of a TypeError traceback).
    """
    fmt = fmt or reader.__name__.removeprefix("read_")
    hints = typing.get_type_hints(reader)
    params = {n: p for n, p in inspect.signature(reader).parameters.items()
              if p.kind == inspect.Parameter.KEYWORD_ONLY and n != "on_bad_rows"}
    allowed = ", ".join(f"{n} ({_type_name(hints.get(n, Any))})" for n in params)
    out = {}
    for key, value in opts.items():
        if key == "on_bad_rows":
            raise ConfigError("on_bad_rows is not a reader option here (fix: use --on-bad-rows error|skip)")
        if key not in params:
            raise ConfigError(f"unknown option {key!r} for format {fmt!r}; allowed options: {allowed}")
        ok, out[key] = _coerce(value, hints.get(key, Any))
        if not ok:
            raise ConfigError(f"option {key!r} of format {fmt!r} expects {_type_name(hints[key])}, got "
                              f"{type(value).__name__} {value!r:.60}; allowed options: {allowed}")
    return out
