"""RecBole atomic files: `X.inter`, `X.item`, `X.user`, tab-separated with `name:type` headers.

Types: `token` (string), `token_seq` (space-separated tokens -> list), `float`, `float_seq`. The `.inter` file
gives the interactions (user, item, optional timestamp and rating); `.item` and `.user` become the item and
user tables. RecBole stores free text (titles) as `token_seq` too, so fields whose names look like free text
(`text_seq_fields`) are kept as one string instead of a list of words.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import polars as pl

from semrec.data.dataset import Dataset
from semrec.data.readers.common import (build_dataset, cast_checked, normalise_text_columns, read_bytes,
                                        read_lines, reader_meta, split_fields)
from semrec.errors import DataError

TYPES = ("token", "token_seq", "float", "float_seq")
TEXT_NAME = re.compile(r"title|name|desc|text|review|summary", re.IGNORECASE)


def parse_header(line: str, path: Path, separator: str) -> list[tuple[str, str]]:
    """`user_id:token<TAB>rating:float ...` -> [(name, type), ...]."""
    fields = []
    for col in line.split(separator):
        name, _, kind = col.strip().rpartition(":")
        if not name or kind not in TYPES:
            raise DataError(f"header column {col!r} is not name:type with type in {TYPES}", path=path, line=1,
                            field=col, fix="write the RecBole header, e.g. user_id:token\titem_id:token")
        fields.append((name, kind))
    return fields


def read_atomic(path: Path, on_bad_rows: str = "error", separator: str = "\t", seq_separator: str = " ",
                text_seq_fields: Sequence[str] | None = None) -> tuple[pl.DataFrame, dict[str, str], int]:
    """One atomic file as a typed frame (with `lineno`), its {field: type}, and the count of bad rows."""
    lines, n_bad = read_lines(path, on_bad_rows)
    if n_bad and (lines.height == 0 or not _header_decodes(path)):  # a skipped header must not make row 1 one
        raise DataError("the header line is not valid UTF-8", path=path, line=1,
                        fix="re-encode the file as UTF-8 (header: name:type columns)")
    header = parse_header(lines["line"][0], path, separator)
    names = [n for n, _ in header]
    df, n = split_fields(lines.slice(1), separator, names, path, on_bad_rows)
    n_bad += n
    kinds = dict(header)
    floats = {name: pl.Float64 for name, kind in header if kind == "float"}
    df, n = cast_checked(df, floats, path, on_bad_rows)
    n_bad += n
    keep_text = set(text_seq_fields) if text_seq_fields is not None else {n for n in names if TEXT_NAME.search(n)}
    seqs = []
    for name, kind in header:
        if kind == "token_seq" and name not in keep_text:
            seqs.append(pl.col(name).str.split(seq_separator).list.eval(pl.element().filter(pl.element() != "")))
        elif kind == "float_seq":
            seqs.append(pl.col(name).str.split(seq_separator).list.eval(
                pl.element().filter(pl.element() != "").cast(pl.Float64, strict=False)))
    return (df.with_columns(seqs) if seqs else df), kinds, n_bad


def _header_decodes(path: Path) -> bool:
    first = next((line for line in read_bytes(path).split(b"\n") if line.strip()), b"")
    try:
        first.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _files(path: Path) -> tuple[Path, Path, Path]:
    if path.is_dir():
        found = sorted(path.glob("*.inter"))
        if len(found) != 1:
            raise DataError(f"expected exactly one *.inter file in the folder, found {len(found)}", path=path,
                            fix="pass the .inter file itself")
        path = found[0]
    if path.suffix != ".inter":
        raise DataError("expected a RecBole .inter file", path=path, fix="pass X.inter (X.item, X.user beside it)")
    return path, path.with_suffix(".item"), path.with_suffix(".user")


def read_recbole(path: str | Path, *, user_field: str = "user_id", item_field: str = "item_id",
                 time_field: str = "timestamp", rating_field: str = "rating",
                 text_seq_fields: Sequence[str] | None = None, field_separator: str = "\t",
                 seq_separator: str = " ", name: str | None = None, on_bad_rows: str = "error") -> Dataset:
    """Read `X.inter` (or a folder with one) and `X.item` / `X.user` beside it when present.

    `text_seq_fields` lists token_seq fields kept as strings (default: names containing title, name, desc,
    text, review or summary). Float timestamps are truncated to integers.
    """
    inter_path, item_path, user_path = _files(Path(path))
    opts = dict(on_bad_rows=on_bad_rows, separator=field_separator, seq_separator=seq_separator,
                text_seq_fields=text_seq_fields)
    raw, kinds, n_bad = read_atomic(inter_path, **opts)
    for f in (user_field, item_field):
        if f not in kinds:
            raise DataError(f"no {f!r} column; header has {list(kinds)}", path=inter_path, line=1, field=f,
                            fix=f"pass -o {'user' if f == user_field else 'item'}_field=<column>")
    has_time = time_field in kinds
    # times and ratings declared `token` (strings) are parsed as numbers too, naming the line that is not one
    numeric = {f: pl.Float64 for f in (time_field, rating_field) if f in kinds}
    raw, n = cast_checked(raw, numeric, inter_path, on_bad_rows,
                          required=(user_field, item_field) + ((time_field,) if has_time else ()))
    n_bad += n
    cols = [pl.col(user_field).alias("user_id"), pl.col(item_field).alias("item_id")]
    if has_time:
        cols.append(pl.col(time_field).cast(pl.Int64).alias("timestamp"))
    if rating_field in kinds:
        cols.append(pl.col(rating_field).alias("rating"))
    inter = raw.select(cols)

    sources, items, users, text_fields = [inter_path], None, None, []
    if item_path.exists():
        table, item_kinds, n = read_atomic(item_path, **opts)
        items = _entity_table(table, item_kinds, item_field, "item_id", item_path)
        text_fields = [c for c in items.columns if c != "item_id"]
        sources.append(item_path)
        n_bad += n
    if user_path.exists():
        table, user_kinds, n = read_atomic(user_path, **opts)
        users = _entity_table(table, user_kinds, user_field, "user_id", user_path)
        sources.append(user_path)
        n_bad += n
    options: dict[str, Any] = {"user_field": user_field, "item_field": item_field, "time_field": time_field,
                               "rating_field": rating_field, "text_seq_fields": text_seq_fields,
                               "on_bad_rows": on_bad_rows}
    meta = reader_meta("recbole", sources, options, n_bad, "unix" if time_field in kinds else "order")
    return build_dataset(inter, items, path=inter_path, n_bad=n_bad, name=name or inter_path.stem,
                         expected=f"tab-separated rows with {user_field!r} and {item_field!r} under a name:type header",
                         text_fields=text_fields, meta=meta, users=users)


def _entity_table(df: pl.DataFrame, kinds: dict[str, str], key: str, new_key: str, path: Path) -> pl.DataFrame:
    if key not in kinds:
        raise DataError(f"no {key!r} column; header has {list(kinds)}", path=path, line=1, field=key,
                        fix="name the id column like the .inter file does")
    attrs = normalise_text_columns(df.drop("lineno", key), path)
    return pl.concat([df.select(pl.col(key).alias(new_key)), attrs], how="horizontal")
