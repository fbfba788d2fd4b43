"""S3-Rec sequence files (`user item item ...` per line, chronological) with optional attributes and text.

Fields are separated by any run of whitespace (spaces or tabs, repeated or not); CRLF line ends and a UTF-8
BOM are accepted. Item text alignment is explicit: key `str(item + text_key_offset)` of the text JSON
describes item `item` of the sequence file. The Amazon `text/*.item.json` tables use offset 0 (keys are S3-Rec
ids); `Yelp.item.json` uses offset -1 (item k of Yelp.txt is key k-1). The reader checks coverage and names the
other offset when the chosen one does not fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from semrec.data.dataset import Dataset, source_record
from semrec.data.readers.common import (build_dataset, check_policy, keep_or_raise, normalise_text_columns,
                                        read_json_object, read_lines)
from semrec.errors import DataError

NON_TEXT_KEYS = {"asin", "item_id", "id"}
EXPECTED = "lines 'user item item ...' (S3-Rec sequence file, integer item ids)"


def read_sequences(path: Path, on_bad_rows: str) -> tuple[pl.DataFrame, int]:
    """(user_id, item_id Int64) rows in file order; a line without items or with a non-integer item is bad and
    named by its line and the offending token."""
    check_policy(on_bad_rows)
    lines, n_bad = read_lines(path, on_bad_rows)
    tok = lines.with_columns(pl.col("line").str.extract_all(r"\S+").alias("tok"))
    items = pl.col("tok").list.slice(1)
    bad_item = items.list.eval(pl.element().filter(~pl.element().str.contains(r"^\d+$"))).list.first()
    problem = (pl.when(items.list.len() == 0).then(pl.lit("a user without items; expected " + EXPECTED))
               .when(bad_item.is_not_null())
               .then(pl.format("item id '{}' is not a non-negative integer; expected " + EXPECTED,
                               bad_item.str.slice(0, 40))))
    tok = tok.with_columns(problem.alias("_problem"))
    tok, n = keep_or_raise(tok, tok["_problem"].is_null(), path, on_bad_rows, "{_problem}",
                           fix="correct the line, use the 'table' format for string ids, or pass --on-bad-rows skip")
    n_bad += n
    inter = (tok.select(pl.col("tok").list.first().alias("user_id"), items.alias("item_id"), "lineno")
             .explode("item_id"))
    cast = inter["item_id"].cast(pl.Int64, strict=False)
    inter, n = keep_or_raise(inter.with_columns(cast.alias("_id")), cast.is_not_null(), path, on_bad_rows,
                             "item id {item_id!r:.40} does not fit a 64-bit integer")
    return inter.select("user_id", pl.col("_id").alias("item_id")), n_bad + n


def _attributes(path: str | Path) -> pl.DataFrame:
    attrs = read_json_object(Path(path))
    bad = next((k for k, v in attrs.items() if not k.strip().lstrip("-").isdigit() or not isinstance(v, list)
                or not all(type(a) is int for a in v)), None)
    if bad is not None:
        raise DataError(f"entry {bad!r}: {str(attrs[bad])[:60]!r} is not an integer item key with a list of "
                        "integer attribute ids", path=path, field=bad,
                        fix="use the S3-Rec *_item2attributes.json file: {\"item\": [attr, ...]}")
    return pl.DataFrame({"item_id": [int(k) for k in attrs], "attribute_ids": list(attrs.values())},
                        schema={"item_id": pl.Int64, "attribute_ids": pl.List(pl.Int64)})


def _item_text(path: str | Path, item_ids: list[int], offset: int) -> tuple[pl.DataFrame, list[str]]:
    text = read_json_object(Path(path))
    keys = [str(k + offset) for k in item_ids]
    found = sum(k in text for k in keys)
    if found < 0.5 * len(keys):
        other = -1 if offset == 0 else 0
        raise DataError(f"only {found} of {len(keys)} items have a text entry with text_key_offset={offset}",
                        path=path, field="text_key_offset", fix=f"try text_key_offset={other} "
                                                                "(Yelp.item.json is 0-based: -1)")
    bad = next((k for k in keys if k in text and text[k] is not None and not isinstance(text[k], dict)), None)
    if bad is not None:
        raise DataError(f"entry {bad!r} is {type(text[bad]).__name__}, expected an object of fields", path=path,
                        field=bad, fix="use a file shaped {item: {title: ..., ...}}")
    rows = [text.get(k) or {} for k in keys]
    # A whole-file JSON object has no vectorised reader: one pass per field over the parsed dicts, every field of
    # every entry kept (not only the fields of the first entries).
    fields = list(dict.fromkeys(f for r in rows for f in r))
    return normalise_text_columns(pl.DataFrame({f: [r.get(f) for r in rows] for f in fields}, strict=False),
                                  path), fields


def read_s3rec(path: str | Path, *, item_text: str | Path | None = None, attributes: str | Path | None = None,
               text_key_offset: int = 0, name: str | None = None, on_bad_rows: str = "error") -> Dataset:
    """Read an S3-Rec sequence file; line order within a line is the chronological order."""
    path = Path(path)
    inter, bad = read_sequences(path, on_bad_rows)
    items = inter.select("item_id").unique().sort("item_id")
    sources = [source_record(path)]
    text_fields: list[str] = []
    if attributes is not None:
        items = items.join(_attributes(attributes), on="item_id", how="left", maintain_order="left")
        sources.append(source_record(attributes))
    if item_text is not None and items.height:
        text_df, fields = _item_text(item_text, items["item_id"].to_list(), text_key_offset)
        items = pl.concat([items, text_df.drop("item_id", strict=False)], how="horizontal")
        text_fields = [f for f in fields if f not in NON_TEXT_KEYS]
        sources.append(source_record(item_text))
    meta: dict[str, Any] = {"source_format": "s3rec", "sources": sources, "timestamp_kind": "order",
                            "options": {"text_key_offset": text_key_offset, "on_bad_rows": on_bad_rows},
                            "bad_rows": bad}
    return build_dataset(inter, items, path=path, expected=EXPECTED, n_bad=bad, name=name or path.stem,
                         text_fields=text_fields, meta=meta)
