"""S3-Rec sequence files (`user item item ...` per line, chronological) with optional attributes and text.

Item text alignment is explicit: key `str(item + text_key_offset)` of the text JSON describes item
`item` of the sequence file. The Amazon `text/*.item.json` tables use offset 0 (keys are S3-Rec ids);
`Yelp.item.json` uses offset -1 (item k of Yelp.txt is key k-1). The reader checks coverage and
names the other offset when the chosen one does not fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from semrec.data.dataset import Dataset, source_record
from semrec.data.readers.common import normalise_text_columns, read_json_object, read_text_lines
from semrec.errors import DataError

NON_TEXT_KEYS = {"asin", "item_id", "id"}


def read_s3rec(path: str | Path, *, item_text: str | Path | None = None, attributes: str | Path | None = None,
               text_key_offset: int = 0, name: str | None = None, on_bad_rows: str = "error") -> Dataset:
    """Read an S3-Rec sequence file; line order within a line is the chronological order."""
    path = Path(path)
    lines, bad = read_text_lines(path, on_bad_rows, pattern=r"^\s*\S+(\s+\d+)+\s*$",
                                 what="'user item item ...' with integer items")
    tokens = lines.with_columns(pl.col("line").str.strip_chars().str.split(" ").alias("tok"))
    inter = (tokens.select(pl.col("tok").list.first().alias("user_id"),
                           pl.col("tok").list.slice(1).alias("item_id"))
             .explode("item_id").with_columns(pl.col("item_id").cast(pl.Int64)))
    item_ids = inter.select("item_id").unique().sort("item_id")
    items = item_ids
    sources = [source_record(path)]
    text_fields: list[str] = []
    if attributes is not None:
        attrs = read_json_object(Path(attributes))
        attr_df = pl.DataFrame({"item_id": [int(k) for k in attrs], "attribute_ids": list(attrs.values())},
                               schema={"item_id": pl.Int64, "attribute_ids": pl.List(pl.Int64)})
        items = items.join(attr_df, on="item_id", how="left", maintain_order="left")
        sources.append(source_record(attributes))
    if item_text is not None:
        text = read_json_object(Path(item_text))
        keys = [str(k + text_key_offset) for k in items["item_id"].to_list()]
        found = sum(k in text for k in keys)
        if found < 0.5 * len(keys):
            other = -1 if text_key_offset == 0 else 0
            raise DataError(f"only {found} of {len(keys)} items have a text entry with text_key_offset="
                            f"{text_key_offset}", path=item_text, field="text_key_offset",
                            fix=f"try text_key_offset={other} (Yelp.item.json is 0-based: -1)")
        rows = [text.get(k) or {} for k in keys]
        fields = list(dict.fromkeys(f for r in rows[:1000] for f in r))
        text_df = normalise_text_columns(pl.DataFrame({f: [r.get(f) for r in rows] for f in fields},
                                                      strict=False), item_text)
        items = pl.concat([items, text_df], how="horizontal")
        text_fields = [f for f in fields if f not in NON_TEXT_KEYS]
        sources.append(source_record(item_text))
    meta: dict[str, Any] = {"source_format": "s3rec", "sources": sources, "timestamp_kind": "order",
                            "options": {"text_key_offset": text_key_offset, "on_bad_rows": on_bad_rows},
                            "bad_rows": bad}
    return Dataset.build(inter, items, name=name or path.stem, text_fields=text_fields, meta=meta)
