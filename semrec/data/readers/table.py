"""Any CSV / TSV / Parquet interaction log given a column mapping, plus an optional item table.

Built for size: the log is scanned lazily with polars (only the mapped columns are parsed, typed on read) and
collected with the streaming engine; a 20M-row CSV imports and saves in under a minute on two cores
(benchmarks/ingest.py). Only when that typed scan fails is the file re-scanned as text to name the bad line,
or, with on_bad_rows='skip', to drop and count the bad rows.
"""

from __future__ import annotations

import io
from pathlib import Path
from collections.abc import Iterator, Sequence
from typing import Any

import polars as pl

from semrec.data.dataset import Dataset
from semrec.data.readers.common import (POLARS_ERRORS, SNIFF_BYTES, build_dataset, cast_checked, check_policy,
                                        clean_attributes, existing_file, is_gzip, keep_or_raise,
                                        normalise_text_columns, read_bytes, read_parquet_checked, reader_meta,
                                        sniff_binary)
from semrec.data.streamed import build_streamed
from semrec.errors import ConfigError, DataError

PARQUET = (".parquet", ".pq")
TSV = (".tsv", ".tab")


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".gzip")]
    return suffixes[-1] if suffixes else ""


class TableSource:
    """One CSV/TSV/Parquet file and how to scan it (separator, header, encoding), with typed or text scans."""

    def __init__(self, path: str | Path, separator: str | None = None, has_header: bool = True,
                 columns: Sequence[str] | None = None, encoding: str = "utf-8", quote_char: str | None = '"'):
        self.path = existing_file(path)
        self.parquet = _suffix(self.path) in PARQUET
        self.separator = separator or ("\t" if _suffix(self.path) in TSV else ",")
        if len(self.separator.encode()) != 1:
            raise ConfigError(f"separator must be one byte, got {self.separator!r}")
        self.has_header, self.columns, self.encoding, self.quote_char = has_header, columns, encoding, quote_char
        self.in_memory = not self.parquet and (is_gzip(self.path) or encoding.lower() not in ("utf-8", "utf8"))
        self.first_line = 2 if has_header else 1  # file line of row 0
        self._data: bytes | None = None
        with open(self.path, "rb") as f:
            head = f.read(SNIFF_BYTES)
        if self.parquet and not head.startswith(b"PAR1"):
            raise DataError("not a Parquet file (it does not start with PAR1)", path=self.path,
                            fix="re-export it as Parquet, or give a CSV/TSV file a .csv/.tsv name")
        if not self.parquet and not self.in_memory:  # gzip / other encodings are checked when decoded
            sniff_binary(head, self.path, "a CSV/TSV file")

    def _csv_source(self) -> Any:
        if not self.in_memory:
            return self.path
        if self._data is None:  # gzip or non-UTF-8: polars scans only plain UTF-8 files, so decode once in memory
            utf8 = self.encoding.lower() in ("utf-8", "utf8")
            data = read_bytes(self.path, "a CSV/TSV file", sniff=utf8)
            if self.encoding.lower() not in ("utf-8", "utf8"):
                try:
                    data = data.decode(self.encoding).encode("utf-8")
                except (UnicodeDecodeError, LookupError) as e:
                    raise DataError(f"cannot decode as {self.encoding}: {e}", path=self.path, field="encoding",
                                    fix="pass the file's real encoding with -o encoding=...") from None
            self._data = data
        return io.BytesIO(self._data)

    def scan(self, dtypes: dict[str, pl.DataType] | None = None, text: bool = False,
             lossy: bool = False, columns: list[str] | None = None) -> pl.LazyFrame:
        """Lazy scan; `dtypes` types those columns on read, `text=True` reads every column as a string.
        Parquet is read (only `columns`) by pyarrow, which reports corrupted files instead of crashing."""
        if self.parquet:
            return read_parquet_checked(self.path, columns).lazy()
        kwargs: dict[str, Any] = dict(separator=self.separator, has_header=self.has_header,
                                      quote_char=self.quote_char, encoding="utf8-lossy" if lossy else "utf8")
        if self.columns:
            kwargs["new_columns"] = list(self.columns)
        if text:
            kwargs["infer_schema"] = False
        elif dtypes:
            kwargs["schema_overrides"] = dtypes
        src = self._csv_source()
        return pl.scan_csv(src, **kwargs) if not self.in_memory else pl.read_csv(src, **kwargs).lazy()

    def schema(self) -> pl.Schema:
        """Column names and types (Parquet: from the footer, no rows read)."""
        if self.parquet:
            return read_parquet_checked(self.path, schema_only=True).schema
        return self.scan(text=True).collect_schema()

    def column_names(self) -> list[str]:
        try:
            if self.parquet:
                return self.schema().names()
            return self.scan(text=True).collect_schema().names()
        except POLARS_ERRORS as e:
            raise DataError(f"cannot read the header: {str(e).splitlines()[0]}", path=self.path, line=1,
                            fix="check the separator (-o separator=...) and encoding") from None


STREAM_BYTES = 512 << 20  # CSV/TSV logs above this are indexed chunk by chunk (memory ~ the indexed result)
STREAM_CHUNK_ROWS = 4_000_000


class _NotClean(Exception):
    """A streamed chunk the typed fast path rejects: the file is read again by the diagnosing path."""


def _typed_scan(src: TableSource, user_col: str, item_col: str, time_col: str | None, rating_col: str | None,
                time_format: str | None) -> tuple[pl.LazyFrame | None, list[pl.Expr], dict[str, pl.DataType],
                                                  tuple[str, ...], dict[str, str]]:
    """The typed lazy scan of the mapped columns (None if it cannot even be planned) and what diagnosis needs."""
    names = src.column_names()
    wanted = {"user_id": user_col, "item_id": item_col, "timestamp": time_col, "rating": rating_col}
    for role, col in wanted.items():
        if col is not None and col not in names:
            opt = {"user_id": "user_col", "item_id": "item_col", "timestamp": "time_col", "rating": "rating_col"}[role]
            raise DataError(f"no column {col!r} for {role}; the file has {names}", path=src.path, line=1, field=col,
                            fix=f"pass -o {opt}=<one of those columns>" + (" or -o time_col=null for row order"
                                                                            if role == "timestamp" else ""))
    mapping = {role: col for role, col in wanted.items() if col is not None}
    types: dict[str, pl.DataType] = {"user_id": pl.Utf8, "item_id": pl.Utf8}
    if time_col is not None:
        types["timestamp"] = pl.Int64 if time_format is None else pl.Utf8
    if rating_col is not None:
        types["rating"] = pl.Float32
    select = [pl.col(col).alias(role) for role, col in mapping.items()]
    if src.parquet and time_col is not None:
        dtype = src.schema()[time_col]
        if dtype == pl.Date or isinstance(dtype, pl.Datetime):  # Parquet datetimes -> unix seconds
            select[list(mapping).index("timestamp")] = pl.col(time_col).dt.epoch("s").alias("timestamp")
    required = tuple(r for r in ("user_id", "item_id", "timestamp") if r in mapping)
    lf = None
    try:
        lf = src.scan({mapping[r]: t for r, t in types.items() if not src.parquet},
                      columns=list(dict.fromkeys(mapping.values()))).select(select)
        if src.parquet:
            lf = lf.with_columns([pl.col(r).cast(t) for r, t in types.items()])
    except POLARS_ERRORS:
        pass
    return lf, select, types, required, mapping


def _clean(df: pl.DataFrame, required: tuple[str, ...]) -> bool:
    return not any(df[c].null_count() for c in required) and not any((df[c] == "").any()
                                                                     for c in ("user_id", "item_id"))


def read_interactions(src: TableSource, user_col: str, item_col: str, time_col: str | None,
                      rating_col: str | None, time_format: str | None, on_bad_rows: str) -> tuple[pl.DataFrame, int]:
    """The mapped columns as user_id, item_id, [timestamp], [rating]; typed fast path, diagnosis on failure."""
    lf, select, types, required, mapping = _typed_scan(src, user_col, item_col, time_col, rating_col, time_format)
    try:
        if lf is not None:
            df = _strip_ids(lf.collect(engine="streaming"))
            if _clean(df, required):
                return _parse_time(df, time_format, src.path, on_bad_rows, src.first_line)
    except POLARS_ERRORS:
        pass
    return _diagnose(src, select, types, required, time_format, on_bad_rows, mapping)


def stream_interactions(src: TableSource, user_col: str, item_col: str, time_col: str | None,
                        rating_col: str | None, chunk_rows: int | None = None) -> Iterator[pl.DataFrame]:
    """The typed fast path chunk by chunk, in file order; raises `_NotClean` at the first chunk it rejects."""
    lf, _, _, required, _ = _typed_scan(src, user_col, item_col, time_col, rating_col, None)
    if lf is None:
        raise _NotClean()
    try:
        for chunk in lf.collect_batches(chunk_size=chunk_rows or STREAM_CHUNK_ROWS, maintain_order=True, engine="streaming"):
            chunk = _strip_ids(chunk)
            if not _clean(chunk, required):
                raise _NotClean()
            yield chunk
    except POLARS_ERRORS:
        raise _NotClean() from None


def _diagnose(src: TableSource, select: list[pl.Expr], types: dict[str, pl.DataType], required: tuple[str, ...],
              time_format: str | None, on_bad_rows: str, labels: dict[str, str]) -> tuple[pl.DataFrame, int]:
    """Re-scan as text with row numbers, name (or drop) bad rows, and type what is left.

    Line numbers assume one record per line (no quoted newlines). A line with more fields than the header is
    not an error as long as the mapped columns parse: polars reads only those columns.
    """
    n_bad, lossy = 0, False
    for _ in range(2):
        try:
            df = (src.scan(text=True, lossy=lossy, columns=list(dict.fromkeys(labels.values()))).select(select)
                  .with_row_index("line")
                  .with_columns(pl.col("line").cast(pl.Int64) + src.first_line).collect(engine="streaming"))
            break
        except POLARS_ERRORS as e:
            msg = str(e)
            if "utf-8" in msg and not lossy:
                data = read_bytes(src.path)
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError as u:
                    if on_bad_rows == "error":
                        raise DataError(f"not valid UTF-8 at byte {u.start}", path=src.path,
                                        line=data[:u.start].count(b"\n") + 1,
                                        fix="pass -o encoding=latin-1 (or the file's encoding), re-encode it, "
                                            "or pass --on-bad-rows skip") from None
                lossy = True
            else:
                raise DataError(f"cannot read the file: {msg.splitlines()[0]}", path=src.path,
                                fix="check the separator, header and quoting options") from None
    if lossy:  # rows whose mapped fields held undecodable bytes
        ok = ~pl.any_horizontal([pl.col(c).str.contains("\ufffd", literal=True).fill_null(False)
                                 for c in df.columns if df.schema[c] == pl.Utf8])
        n_bad += df.height - df.filter(ok).height
        df = df.filter(ok)
    text_types = {k: v for k, v in types.items() if k not in ("user_id", "item_id")}
    df, n = cast_checked(df, text_types, src.path, on_bad_rows, required=required, line_col="line", labels=labels)
    df, n_time = _parse_time(df, time_format, src.path, on_bad_rows, src.first_line)
    return _strip_ids(df.drop("line", strict=False)), n_bad + n + n_time


def _strip_ids(df: pl.DataFrame) -> pl.DataFrame:
    """Ids without surrounding blanks ('u1, i1' hand-written CSVs); `Dataset.build` casts ids to strings.

    Checked first with literal prefix/suffix tests (about 2.5x cheaper than stripping 20M clean ids)."""
    padded = [c for c in ("user_id", "item_id") if df.schema[c] == pl.Utf8 and pl.select(pl.any_horizontal(
        [getattr(pl.lit(df[c]).str, f)(b) for f in ("starts_with", "ends_with") for b in (" ", "\t")]).any()).item()]
    return df.with_columns([pl.col(c).str.strip_chars() for c in padded]) if padded else df


def _parse_time(df: pl.DataFrame, time_format: str | None, path: Path, on_bad_rows: str,
                first_line: int) -> tuple[pl.DataFrame, int]:
    """Timestamps as int64: integers as they are, dates/datetimes and formatted strings as unix seconds."""
    if "timestamp" not in df.columns:
        return df, 0
    dtype = df.schema["timestamp"]
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        return df.with_columns(pl.col("timestamp").dt.epoch("s")), 0
    if dtype != pl.Utf8:
        return df.with_columns(pl.col("timestamp").cast(pl.Int64)), 0
    if "line" not in df.columns:
        df = df.with_row_index("line").with_columns(pl.col("line").cast(pl.Int64) + first_line)
    parsed = df["timestamp"].str.to_datetime(time_format, strict=False).dt.epoch("s")
    df, n_bad = keep_or_raise(df.with_columns(parsed.alias("_t")), parsed.is_not_null(), path, on_bad_rows,
                              f"cannot parse {{timestamp!r:.40}} with time_format {time_format!r}",
                              field="timestamp", fix="pass the right -o time_format=... (strftime, e.g. %Y-%m-%d "
                                                     "%H:%M:%S) or --on-bad-rows skip", line_col="line")
    return df.drop("timestamp", "line").rename({"_t": "timestamp"}).select(
        [c for c in ("user_id", "item_id", "timestamp", "rating") if c in df.columns]), n_bad


def read_item_table(path: str | Path, key: str, columns: Sequence[str] | None = None,
                    separator: str | None = None, encoding: str = "utf-8", kind: str = "item") -> pl.DataFrame:
    """An item (or user) table: `key` becomes `<kind>_id`, every other (or each listed) column a string attribute."""
    src = TableSource(path, separator=separator, encoding=encoding)
    names = src.column_names()
    if key not in names:
        raise DataError(f"no {kind} key column {key!r}; the table has {names}", path=src.path, line=1, field=key,
                        fix=f"pass -o {kind}_key=<column>")
    attrs = [c for c in (columns or names) if c != key]
    missing = [c for c in attrs if c not in names]
    if missing:
        raise DataError(f"no column(s) {missing}; the table has {names}", path=src.path, line=1, field=missing[0],
                        fix=f"fix -o {kind}_columns=[...]")
    new_key = f"{kind}_id"
    try:
        df = (src.scan(text=not src.parquet, columns=[key, *attrs])
              .select(pl.col(key).cast(pl.Utf8).str.strip_chars().alias(new_key), *attrs).collect())
    except POLARS_ERRORS as e:
        raise DataError(f"cannot read the {kind} table: {str(e).splitlines()[0]}", path=src.path,
                        fix="check the separator, quoting and encoding (one record per line)") from None
    return pl.concat([df.select(new_key), normalise_text_columns(df.drop(new_key), src.path)], how="horizontal")


def read_table(path: str | Path, *, user_col: str = "user_id", item_col: str = "item_id",
               time_col: str | None = "timestamp", rating_col: str | None = None, time_format: str | None = None,
               separator: str | None = None, has_header: bool = True, columns: Sequence[str] | None = None,
               encoding: str = "utf-8", items: str | Path | None = None, item_key: str | None = None,
               item_columns: Sequence[str] | None = None, users: str | Path | None = None,
               user_key: str | None = None, name: str | None = None, on_bad_rows: str = "error",
               stream: bool | None = None) -> Dataset:
    """Interactions from a CSV/TSV/Parquet file (plain or .gz) with mapped columns, items from an optional table.

    `time_col=None` keeps the file's row order as time. Integer timestamps are used as they are; with
    `time_format` (strftime) string timestamps become unix seconds; Parquet datetimes become unix seconds.
    `rating_col` defaults to a column named `rating` when there is one. `users` adds a user attribute table
    (key `user_key`, default `user_col`); its users are kept even without interactions.
    `stream` indexes the log chunk by chunk (memory bounded by the indexed result, not the id strings; the same
    Dataset); default: for plain CSV/TSV files over 512 MB with integer or no timestamps.
    """
    check_policy(on_bad_rows)
    src = TableSource(path, separator=separator, has_header=has_header, columns=columns, encoding=encoding)
    if rating_col is None and "rating" in src.column_names():
        rating_col = "rating"
    if stream is None:
        stream = src.path.stat().st_size > STREAM_BYTES
    stream = stream and not src.parquet and not src.in_memory and time_format is None
    sources: list[str | Path] = [src.path]
    item_df, text_fields = None, []
    if items is not None:
        item_df = read_item_table(items, item_key or item_col, item_columns, encoding=encoding)
        text_fields = [c for c in item_df.columns if c != "item_id"]
        sources.append(items)
    user_df = None
    if users is not None:
        user_df = read_item_table(users, user_key or user_col, encoding=encoding, kind="user")
        sources.append(users)
    options: dict[str, Any] = {"user_col": user_col, "item_col": item_col, "time_col": time_col,
                               "rating_col": rating_col, "time_format": time_format, "separator": src.separator,
                               "has_header": has_header, "columns": list(columns) if columns else None,
                               "encoding": encoding, "item_key": item_key, "item_columns": item_columns,
                               "user_key": user_key, "on_bad_rows": on_bad_rows}
    stem = src.path.name.split(".")[0]
    if stream:
        meta = reader_meta("table", sources, options, 0, "unix" if time_col else "order")
        try:
            ds = build_streamed(stream_interactions(src, user_col, item_col, time_col, rating_col),
                                clean_attributes(item_df), users=clean_attributes(user_df), name=name or stem,
                                text_fields=text_fields, meta=meta)
            if ds.n_interactions:
                return ds
        except _NotClean:
            pass  # a bad or empty file: the in-memory path names the line or counts the skipped rows
    inter, n_bad = read_interactions(src, user_col, item_col, time_col, rating_col, time_format, on_bad_rows)
    meta = reader_meta("table", sources, options, n_bad, "unix" if time_col else "order")
    return build_dataset(inter, item_df, path=src.path, n_bad=n_bad, name=name or stem, text_fields=text_fields,
                         meta=meta, users=user_df,
                         expected=f"rows with the columns {user_col!r} and {item_col!r}" +
                         (f" and {time_col!r}" if time_col else ""))
