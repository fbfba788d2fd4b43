"""Shared reader plumbing: line-numbered errors, bad-row policy, JSON loading, text normalisation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from semrec.errors import DataError

ON_BAD_ROWS = ("error", "skip")


def check_policy(on_bad_rows: str) -> None:
    if on_bad_rows not in ON_BAD_ROWS:
        raise DataError(f"unknown on_bad_rows {on_bad_rows!r}", field="on_bad_rows", fix="use 'error' or 'skip'")


def read_text_lines(path: Path, on_bad_rows: str, pattern: str, what: str) -> tuple[pl.DataFrame, int]:
    """Non-empty lines of a text file as a frame (`lineno`, `line`); lines not matching `pattern` are bad.

    Returns the good lines and the count of skipped bad lines.
    """
    check_policy(on_bad_rows)
    if not path.exists():
        raise DataError("file not found", path=path)
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError("file is empty", path=path, fix="point at a file with data")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"not valid UTF-8 at byte {e.start}", path=path, line=line,
                        fix="re-encode the file as UTF-8") from None
    df = (pl.DataFrame({"line": text.split("\n")}).with_row_index("lineno", offset=1)
          .filter(pl.col("line").str.strip_chars() != ""))
    ok = df["line"].str.contains(pattern)
    n_bad = int((~ok).sum())
    if n_bad and on_bad_rows == "error":
        first = df.filter(~ok).row(0, named=True)
        raise DataError(f"malformed line {first['line'][:80]!r}; expected {what}", path=path,
                        line=first["lineno"], fix="correct the line or pass --on-bad-rows skip")
    return df.filter(ok), n_bad


def read_json_object(path: Path) -> dict[str, Any]:
    """A whole-file JSON object (e.g. `{item_id: {...}}`), with line-numbered syntax errors."""
    if not path.exists():
        raise DataError("file not found", path=path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError("not valid UTF-8", path=path, fix="re-encode the file as UTF-8") from None
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg}", path=path, line=e.lineno, fix="repair the JSON at that line") from None
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object at top level, got {type(obj).__name__}", path=path)
    return obj


def normalise_text_columns(df: pl.DataFrame, path: Path | str) -> pl.DataFrame:
    """Make every attribute column Utf8 or List(Utf8): category paths become 'A > B > C' strings."""
    out = []
    for name, dtype in df.schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.List):
            col = col.list.eval(pl.element().list.eval(pl.element().cast(pl.Utf8)).list.join(" > "))
        elif isinstance(dtype, pl.List):
            col = col.list.eval(pl.element().cast(pl.Utf8))
        elif dtype in (pl.Object, pl.Struct) or isinstance(dtype, pl.Struct):
            col = col.map_elements(json.dumps, return_dtype=pl.Utf8)
        elif dtype != pl.Utf8:
            col = col.cast(pl.Utf8)
        out.append(col.alias(name))
    try:
        return df.select(out)
    except pl.exceptions.PolarsError as e:
        raise DataError(f"cannot normalise item attributes: {e}", path=path) from None
