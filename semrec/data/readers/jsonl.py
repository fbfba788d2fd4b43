"""JSON-lines files (plain or gzip, strict JSON or Python-literal lines) read in chunks with polars.

The fast path hands each ~64 MB chunk of whole lines to `pl.read_ndjson` with a fixed schema, so only the
needed fields are materialised. Only when polars rejects a chunk (or a required field is null) is the chunk
re-read line by line in Python to name the exact line and field; with on_bad_rows='skip' the bad lines are then
dropped and the rest re-parsed by polars.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import zlib
from pathlib import Path
from typing import Iterator

import polars as pl
from tqdm.auto import tqdm

from semrec.data.readers.common import (POLARS_ERRORS, SKIP_FIX, SNIFF_BYTES, check_policy, existing_file,
                                        gunzip_error, is_gzip, sniff_binary)
from semrec.errors import DataError

CHUNK_BYTES = 64 << 20
PROGRESS_MIN_BYTES = 32 << 20


def iter_line_chunks(path: Path, chunk_bytes: int | None = None,
                     progress: bool = True) -> Iterator[tuple[int, bytes]]:
    """Yield (number of the chunk's first line, bytes of whole lines) for a plain or gzip file, with progress."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    size = path.stat().st_size
    with open(path, "rb") as raw, tqdm(total=size, unit="B", unit_scale=True, desc=f"reading {path.name}",
                                       disable=not progress or size < PROGRESS_MIN_BYTES, leave=False) as bar:
        stream = gzip.GzipFile(fileobj=raw) if is_gzip(path) else raw
        line, rest, first = 1, b"", True
        while True:
            try:
                block = stream.read(chunk_bytes)
            except (OSError, EOFError, zlib.error) as e:
                raise gunzip_error(e, path, line) from None
            if not block:
                break
            if first:  # refuse binary files by name, drop a UTF-8 BOM
                sniff_binary(block[:SNIFF_BYTES], path, "JSON lines")
                block, first = block.removeprefix(b"\xef\xbb\xbf"), False
            block = rest + block
            cut = block.rfind(b"\n") + 1
            piece, rest = block[:cut], block[cut:]
            if piece:
                yield line, piece
                line += piece.count(b"\n")
            bar.update(raw.tell() - bar.n)
        if rest.strip():
            yield line, rest


def _first_line(path: Path) -> bytes:
    for _, piece in iter_line_chunks(path, chunk_bytes=1 << 16, progress=False):
        for line in piece.split(b"\n"):
            if line.strip():
                return line.strip()
    raise DataError("file is empty", path=path, fix="point at a file with data")


def detect_python_literal(path: Path) -> bool:
    """True when the first line is a Python dict literal (`{'asin': ...}`, the Amazon 2014 metadata files)."""
    line = _first_line(path)
    try:
        json.loads(line)
        return False
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    try:
        return isinstance(ast.literal_eval(line.decode("utf-8")), dict)
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
        return False


def _literal_to_json(piece: bytes, first_line: int) -> tuple[bytes, list[tuple[int, str]]]:
    # A per-line Python parse is unavoidable here: Python-literal lines (single quotes, True/None) are not JSON and
    # no vectorised parser reads them. ast.literal_eval evaluates literals only, never code. Each line is
    # re-serialised as JSON so that the rest of the pipeline is the same polars path as for strict JSON lines.
    out, bad = [], []
    for i, line in enumerate(piece.split(b"\n")):
        if not line.strip():
            out.append(b"")
            continue
        try:
            obj = ast.literal_eval(line.decode("utf-8"))
            if not isinstance(obj, dict):
                raise ValueError(f"expected a dict literal, got {type(obj).__name__}")
            out.append(json.dumps(obj, ensure_ascii=False, default=list).encode("utf-8"))
        except (ValueError, SyntaxError, TypeError, UnicodeDecodeError, MemoryError, RecursionError) as e:
            bad.append((first_line + i, f"not a Python dict literal ({type(e).__name__}: {str(e)[:80]})"))
            out.append(b"")  # keep line positions so later diagnostics name the right line
    return b"\n".join(out) + b"\n", bad


def _type_error(value: object, dtype: pl.DataType) -> str | None:
    if value is None:
        return None
    if dtype == pl.Int64 and (isinstance(value, bool) or not isinstance(value, int) or not -2**63 <= value < 2**63):
        return f"expected a 64-bit integer, got {value!r:.60}"
    if dtype in (pl.Float64, pl.Float32) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"expected a number, got {value!r:.60}"
    return None


def _diagnose(piece: bytes, first_line: int, schema: dict[str, pl.DataType], required: tuple[str, ...],
              key_fields: tuple[str, ...]) -> tuple[list[int], list[tuple[int, str | None, str]]]:
    """Line-by-line check of one chunk (error path only): indices of good lines and (line, field, reason)."""
    good, bad = [], []
    for i, line in enumerate(piece.split(b"\n")):
        if not line.strip():
            continue
        lineno = first_line + i
        try:
            obj = json.loads(line)
        except UnicodeDecodeError:
            bad.append((lineno, None, "not valid UTF-8 (re-encode the file as UTF-8)"))
            continue
        except json.JSONDecodeError as e:
            bad.append((lineno, None, f"invalid JSON: {e.msg} at column {e.colno}"))
            continue
        if not isinstance(obj, dict):
            bad.append((lineno, None, f"expected a JSON object, got {type(obj).__name__}"))
            continue
        problem = next(((f, "missing required field") for f in required if obj.get(f) is None), None)
        problem = problem or next(((f, f"expected a string or integer id, got {obj[f]!r:.60}") for f in key_fields
                                   if isinstance(obj.get(f), (dict, list, bool, float))), None)
        problem = problem or next(((f, e) for f, t in schema.items() if (e := _type_error(obj.get(f), t))), None)
        if problem:
            bad.append((lineno, *problem))
        else:
            good.append(i)
    return good, bad


def read_json_lines(path: str | Path, schema: dict[str, pl.DataType], *, required: tuple[str, ...] = (),
                    key_fields: tuple[str, ...] = (), on_bad_rows: str = "error",
                    python_literal: bool | None = None,
                    expected: str = "one JSON object per line") -> tuple[pl.DataFrame, int]:
    """Read the `schema` fields of every line; returns (frame, number of bad lines skipped).

    Fields absent from a line are null; a field typed Utf8 receives non-string JSON values serialised as JSON
    text (so lists/objects can be decoded later with `str.json_decode`). `required` fields must be non-null,
    `key_fields` must be strings or integers. `python_literal=None` detects the Amazon-2014 literal format.
    """
    check_policy(on_bad_rows)
    path = existing_file(path)
    literal = detect_python_literal(path) if python_literal is None else python_literal
    frames, n_bad = [], 0
    for first_line, piece in iter_line_chunks(path):
        pre_bad: list[tuple[int, str]] = []
        if literal:
            piece, pre_bad = _literal_to_json(piece, first_line)
            if pre_bad and on_bad_rows == "error":
                raise DataError(pre_bad[0][1], path=path, line=pre_bad[0][0], fix=SKIP_FIX)
        df, polars_error = None, None
        try:
            df = pl.read_ndjson(io.BytesIO(piece), schema=schema)
            if any(df[f].null_count() for f in required):
                df = None
        except POLARS_ERRORS as e:
            polars_error = str(e).splitlines()[0]
        if df is None:
            good, bad = _diagnose(piece, first_line, schema, required, key_fields)
            if bad and on_bad_rows == "error":
                line, field, reason = bad[0]
                raise DataError(reason, path=path, line=line, field=field, fix=SKIP_FIX)
            lines = piece.split(b"\n")
            try:
                if not bad:
                    raise pl.exceptions.ComputeError(polars_error or "unknown error")
                df = pl.read_ndjson(io.BytesIO(b"\n".join(lines[i] for i in good) + b"\n"), schema=schema) \
                    if good else pl.DataFrame(schema=schema)
            except POLARS_ERRORS as e:
                raise DataError(f"polars could not read lines {first_line}..{first_line + len(lines) - 1}: "
                                f"{str(e).splitlines()[0]}", path=path,
                                fix="check that every line is one JSON object") from None
            n_bad += len(bad)
        n_bad += len(pre_bad)
        frames.append(df)
    out = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
    if out.height == 0:
        raise DataError(f"no readable rows ({n_bad} bad); expected {expected}", path=path,
                        fix="check that this is the right file and format (semrec data import --help)")
    return out, n_bad
