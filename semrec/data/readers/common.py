"""Shared reader plumbing: bad-row policy, decompression, line-numbered splitting and typed casts, JSON loading,
text normalisation, and the manifest fields every reader writes.

Every reader follows one pattern: a vectorised polars path over the whole file, and, only where that path finds
a problem, a precise diagnosis that names the file, the line and the field. With `on_bad_rows="skip"` bad rows
are dropped and counted instead (`meta["bad_rows"]`).
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any, Iterable

import polars as pl

from semrec.data.dataset import Dataset, source_record
from semrec.data.readers.clean import clean_attributes
from semrec.data.readers.options import check_reader_options  # noqa: F401  (the CLI's entry point, kept here)
from semrec.errors import DataError

ON_BAD_ROWS = ("error", "skip")
# What polars raises on unreadable input: its own errors, and (for some corrupted Parquet files) a Rust panic,
# which Python sees as a BaseException. Readers turn both into a DataError naming the file.
POLARS_ERRORS = (pl.exceptions.PolarsError, pl.exceptions.PanicException)
SKIP_FIX = "correct the line or pass --on-bad-rows skip"
GZIP_MAGIC = b"\x1f\x8b"
BOM = "\ufeff"
SNIFF_BYTES = 8192
# Leading bytes of binary formats people pass by mistake, with the fix to print. Checked before any parsing, so a
# pickle is recognised and refused (never unpickled) and a Parquet or zip file is named instead of "bad UTF-8".
BINARY_MAGIC = (
    (b"PAR1", "a Parquet file", "read it with the 'table' format (name it .parquet)"),
    (b"PK\x03\x04", "a zip archive", "unzip it and point at the file inside"),
    (b"\x93NUMPY", "a NumPy .npy array", "vectors go to `semrec ids embed --source precomputed`, not to a reader"),
    (b"BZh", "a bzip2 file", "decompress it (bunzip2) or re-compress it with gzip"),
    (b"\xfd7zXZ\x00", "an xz file", "decompress it (unxz) or re-compress it with gzip"),
    (b"\x28\xb5\x2f\xfd", "a zstd file", "decompress it (unzstd) or re-compress it with gzip"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-zip archive", "extract it and point at the file inside"),
    (GZIP_MAGIC, "gzip inside gzip (compressed twice)", "decompress it once (gunzip) and read the result"),
    (b"\xff\xfe", "UTF-16 text", "re-encode it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)"),
    (b"\xfe\xff", "UTF-16 text", "re-encode it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)"),
)


def read_parquet_checked(path: Path, columns: list[str] | None = None, schema_only: bool = False) -> pl.DataFrame:
    """A Parquet file (only `columns`; no rows with `schema_only`) as a polars frame, read by pyarrow.

    Why not polars: on some corrupted files (a flipped page-length byte) polars tries to allocate exabytes and
    aborts the whole process, which no `except` can catch; pyarrow reports the same files as errors.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if schema_only:
            return pl.from_arrow(pq.read_schema(path).empty_table())  # type: ignore[return-value]
        return pl.from_arrow(pq.read_table(path, columns=columns))  # type: ignore[return-value]
    except (pa.ArrowException, OSError, ValueError, NotImplementedError, *POLARS_ERRORS) as e:
        raise DataError(f"cannot read the Parquet file: {str(e).splitlines()[0][:200]}", path=path,
                        fix="re-export or re-download the file") from None


def check_policy(on_bad_rows: str) -> None:
    if on_bad_rows not in ON_BAD_ROWS:
        raise DataError(f"unknown on_bad_rows {on_bad_rows!r}", field="on_bad_rows", fix="use 'error' or 'skip'")


def existing_file(path: str | Path, what: str = "file") -> Path:
    """`path` as a Path, or a DataError when it is missing, a folder, or empty."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{what} not found", path=p, fix="check the path")
    if p.is_dir():
        raise DataError(f"expected a {what}, got a folder", path=p, fix="point at the file inside it")
    if p.stat().st_size == 0:
        raise DataError(f"{what} is empty", path=p, fix="point at a file with data")
    return p


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def sniff_binary(head: bytes, path: Path | str, expected: str = "a text file") -> None:
    """Refuse, by name, a binary file given where text was expected: pickle (never unpickled), Parquet, zip,
    bzip2/xz/zstd, NumPy, UTF-16, or any file with NUL bytes near its start."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        raise DataError(f"this is a Python pickle, expected {expected}; semrec never unpickles files", path=path,
                        fix="export the data as text (CSV/TSV/JSON lines) or Parquet")
    head = head[:SNIFF_BYTES]
    for magic, what, fix in BINARY_MAGIC:
        # a text line may start like 'PAR1' or 'BZh'; only a head that is not text at all is taken for the format
        if head.startswith(magic) and (magic.startswith(b"\xff") or magic.startswith(b"\xfe") or not _is_text(head)):
            raise DataError(f"this is {what}, expected {expected}", path=path, fix=fix)
    if b"\x00" in head:
        at = head.index(b"\x00")
        raise DataError(f"binary data (a NUL byte at byte {at}), expected {expected}", path=path,
                        line=head[:at].count(b"\n") + 1, fix="point at the text file itself")


def _is_text(head: bytes) -> bool:
    """No NUL byte and valid UTF-8 (a multi-byte character cut at the end of the head is allowed)."""
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start >= len(head) - 3 and e.reason == "unexpected end of data"
    return True


def gunzip_error(e: Exception, path: Path, line: int | None = None) -> DataError:
    """The DataError for a gzip stream that cannot be read to its end (truncated or corrupted)."""
    what = "truncated" if isinstance(e, EOFError) else "corrupted"
    return DataError(f"{what} gzip stream ({e})", path=path, line=line,
                     fix="re-download the file or re-compress it (gzip -t checks a .gz file)")


def read_bytes(path: str | Path, expected: str = "a text file", sniff: bool = True) -> bytes:
    """Whole file contents, gunzipped when the file is gzip (detected by its magic bytes, not its name); binary
    files (pickle, zip, ...) are refused by name unless `sniff=False` (a declared non-UTF-8 encoding)."""
    p = existing_file(path)
    if is_gzip(p):
        try:
            with gzip.open(p, "rb") as f:
                data = f.read()
        except (OSError, EOFError, zlib.error) as e:
            raise gunzip_error(e, p) from None
    else:
        data = p.read_bytes()
    if sniff:
        sniff_binary(data[:SNIFF_BYTES], p, expected)
    if not data.strip():
        raise DataError("file is empty", path=p, fix="point at a file with data")
    return data


def decode(data: bytes, path: Path, encoding: str, on_bad_rows: str) -> tuple[str, bool]:
    """Decode file bytes; returns (text, had_errors). Undecodable bytes are an error naming the line, or,
    with on_bad_rows='skip', become U+FFFD so that `read_lines` can drop those lines."""
    try:
        return data.decode(encoding).removeprefix(BOM), False
    except UnicodeDecodeError as e:
        if on_bad_rows == "error":
            line = data[:e.start].count(b"\n") + 1
            raise DataError(f"not valid {encoding} at byte {e.start}", path=path, line=line,
                            fix=f"re-encode the file as {encoding}, pass the right -o encoding=..., "
                                "or pass --on-bad-rows skip") from None
        return data.decode(encoding, errors="replace").removeprefix(BOM), True
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}", path=path, field="encoding",
                        fix="use e.g. utf-8 or latin-1") from None


def read_lines(path: str | Path, on_bad_rows: str = "error", encoding: str = "utf-8") -> tuple[pl.DataFrame, int]:
    """Non-empty lines of a (possibly gzipped) text file as a frame (`lineno` 1-based, `line`), split by polars.

    Returns the lines and the number of lines dropped for bad encoding (only with on_bad_rows='skip').
    """
    check_policy(on_bad_rows)
    p = Path(path)
    text, had_errors = decode(read_bytes(p), p, encoding, on_bad_rows)
    df = (pl.Series("line", [text]).str.split("\n").explode().to_frame()
          .with_row_index("lineno", offset=1).with_columns(pl.col("lineno").cast(pl.Int64))
          .with_columns(pl.col("line").str.strip_suffix("\r"))
          .filter(pl.col("line").str.strip_chars() != ""))
    n_bad = 0
    if had_errors:  # only lines holding a replacement char from the failed strict decode are dropped
        ok = ~df["line"].str.contains("\ufffd", literal=True)
        n_bad = int((~ok).sum())
        df = df.filter(ok)
    # NUL bytes are valid UTF-8 but never text: a line holding one is binary garbage (the first 8 KB were
    # already sniffed for them, this catches the rest of the file)
    df, n_nul = keep_or_raise(df, ~df["line"].str.contains("\x00", literal=True), p, on_bad_rows,
                              "binary data (a NUL byte) in this line")
    n_bad += n_nul
    if df.height == 0 and not n_bad:
        raise DataError("file has no data lines", path=p, fix="point at a file with data")
    return df, n_bad


def keep_or_raise(df: pl.DataFrame, ok: pl.Series, path: Path | str, on_bad_rows: str, message: str,
                  field: str | None = None, fix: str = SKIP_FIX, line_col: str = "lineno") -> tuple[pl.DataFrame, int]:
    """Drop rows where `ok` is False (skip policy) or raise a DataError naming the first one's line."""
    ok = ok.fill_null(False)
    n_bad = len(ok) - int(ok.sum())
    if n_bad and on_bad_rows == "error":
        first = df.filter(~ok).row(0, named=True)
        raise DataError(message.format(**first), path=path, line=first.get(line_col), field=field, fix=fix)
    return (df.filter(ok) if n_bad else df), n_bad


def split_fields(lines: pl.DataFrame, separator: str, names: list[str], path: Path | str,
                 on_bad_rows: str) -> tuple[pl.DataFrame, int]:
    """Split every `line` on a literal separator (may be several characters, e.g. '::') into string columns
    `names`; a line with another number of fields is bad."""
    parts = lines.with_columns(pl.col("line").str.split(separator).alias("_parts"))
    ok = parts["_parts"].list.len() == len(names)
    parts, n_bad = keep_or_raise(parts, ok, path, on_bad_rows,
                                 f"expected {len(names)} {separator!r}-separated fields ({', '.join(names)}), "
                                 "got {line!r:.80}")
    cols = [pl.col("_parts").list.get(i, null_on_oob=True).str.strip_chars().alias(n) for i, n in enumerate(names)]
    return parts.select("lineno", *cols), n_bad


def cast_checked(df: pl.DataFrame, types: dict[str, pl.DataType], path: Path | str, on_bad_rows: str,
                 required: Iterable[str] = (), line_col: str = "lineno",
                 labels: dict[str, str] | None = None) -> tuple[pl.DataFrame, int]:
    """Cast string columns to `types`; a value that does not parse, or an empty/missing required value, is a
    bad row named by its line (and by the field's name in the file, `labels[column]`, when renamed)."""
    labels = labels or {}
    n_bad = 0
    for name in required:
        ok = df[name].is_not_null() & (df[name].cast(pl.Utf8).str.strip_chars() != "")
        label = labels.get(name, name)
        df, n = keep_or_raise(df, ok, path, on_bad_rows, "missing value (the field is required)",
                              field=label, line_col=line_col)
        n_bad += n
    for name, dtype in types.items():
        if df.schema[name] == dtype:
            continue
        src = df[name].str.strip_chars() if df.schema[name] == pl.Utf8 else df[name]
        cast = src.cast(dtype, strict=False)
        ok = cast.is_not_null() | src.is_null() | (src.cast(pl.Utf8) == "")
        df = df.with_columns(cast.alias(name))
        label = labels.get(name, name)
        df, n = keep_or_raise(df.with_columns(src.cast(pl.Utf8).alias("_raw")), ok, path, on_bad_rows,
                              f"cannot read {{_raw!r:.60}} as {dtype}", field=label, line_col=line_col,
                              fix=f"make every {label!r} value a {dtype} or pass --on-bad-rows skip")
        df = df.drop("_raw")
        n_bad += n
    return df, n_bad


def read_text_lines(path: Path, on_bad_rows: str, pattern: str, what: str) -> tuple[pl.DataFrame, int]:
    """Non-empty lines of a text file (`lineno`, `line`); lines not matching `pattern` are bad.

    Returns the good lines and the count of skipped bad lines.
    """
    df, n_enc = read_lines(path, on_bad_rows)
    df, n_bad = keep_or_raise(df, df["line"].str.contains(pattern), path, on_bad_rows,
                              "malformed line {line!r:.80}; expected " + what)
    return df, n_bad + n_enc


def read_json_object(path: str | Path) -> dict[str, Any]:
    """A whole-file JSON object (e.g. `{item_id: {...}}`), with line-numbered syntax errors."""
    path = existing_file(path)
    try:
        obj = json.loads(read_bytes(path, "a JSON file").decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise DataError(f"not valid UTF-8 at byte {e.start}", path=path, fix="re-encode the file as UTF-8") from None
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", path=path, line=e.lineno,
                        fix="repair the JSON at that line") from None
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object at top level, got {type(obj).__name__}", path=path,
                        fix="use a file shaped {id: ...}")
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
    except POLARS_ERRORS as e:
        raise DataError(f"cannot normalise item attributes: {e}", path=path) from None


def json_text_list(values: pl.Series, nested: bool = False) -> pl.Series:
    """A column read as JSON text (lists serialised, plain strings as-is) as List(Utf8).

    `nested=True` decodes lists of lists (category paths) into 'A > B > C' strings. A plain string becomes a
    one-element list, so files that mix `"x"` and `["x", "y"]` normalise to one type without a row loop.
    """
    dtype = pl.List(pl.List(pl.Utf8)) if nested else pl.List(pl.Utf8)
    looks_json = values.str.starts_with("[").fill_null(False)
    try:
        decoded = pl.select(pl.when(looks_json).then(values).str.json_decode(dtype)).to_series()
    except POLARS_ERRORS:
        # Rare: a plain string that starts with '[' ("[Pack of 2] soap") sits among real lists. Only then are the
        # '['-values decoded one by one in Python, keeping the undecodable ones as plain strings.
        decoded = pl.Series(values.name, [_decode_one(v, nested) if j else None for v, j in zip(values, looks_json)],
                            dtype=dtype)
    if nested:
        decoded = decoded.list.eval(pl.element().list.join(" > "))
    wrapped = pl.select(pl.when(values.is_not_null() & decoded.is_null()).then(pl.concat_list(values))).to_series()
    return decoded.fill_null(wrapped).alias(values.name)


def _decode_one(value: str, nested: bool) -> list | None:
    try:
        obj = json.loads(value)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, list):
        return None
    if nested:
        return [[str(x) for x in p] if isinstance(p, list) else [str(p)] for p in obj]
    return [x if isinstance(x, str) else json.dumps(x) for x in obj]


def drop_empty_columns(df: pl.DataFrame, keep: Iterable[str] = ()) -> pl.DataFrame:
    """Drop attribute columns that are null in every row (fields a given file version does not have)."""
    keep = set(keep)
    return df.select([c for c in df.columns if c in keep or df[c].null_count() < df.height])


def reader_meta(source_format: str, sources: Iterable[str | Path], options: dict[str, Any], bad_rows: int,
                timestamp_kind: str, **extra: Any) -> dict[str, Any]:
    """The manifest fields every reader writes: format, every source file with sha256, options, bad rows."""
    return {"source_format": source_format, "sources": [source_record(p) for p in sources],
            "timestamp_kind": timestamp_kind, "options": options, "bad_rows": int(bad_rows), **extra}


def empty_interactions(rating: bool = False) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {"user_id": pl.Utf8, "item_id": pl.Utf8, "timestamp": pl.Int64}
    if rating:
        schema["rating"] = pl.Float32
    return pl.DataFrame(schema=schema)


def build_dataset(inter: pl.DataFrame, items: pl.DataFrame | None, *, path: Path | str, expected: str,
                  n_bad: int = 0, allow_empty: bool = False, users: pl.DataFrame | None = None,
                  **build: Any) -> Dataset:
    """`Dataset.build` after the checks every reader shares: a file that yields no interaction is a DataError
    saying what was expected (unless `allow_empty`, e.g. a MovieLens metadata-only folder), and text
    attributes are cleaned (HTML entities decoded, 'NaN'/'null'/'None'/blank values made null)."""
    if inter.height == 0 and not allow_empty:
        skipped = f"; {n_bad} bad row(s) were skipped" if n_bad else ""
        raise DataError(f"no interactions found{skipped}; expected {expected}", path=path,
                        fix="check that this is the right file and format (semrec data import --help)")
    return Dataset.build(inter, clean_attributes(items), users=clean_attributes(users), **build)
