"""Amazon Reviews dumps: 2014 / 2018 (McAuley et al.) and 2023 (Hou et al.), reviews + optional metadata.

- 2014 / 2018 reviews: JSON lines with `reviewerID`, `asin`, `unixReviewTime` (s), `overall` (rating).
- 2014 metadata: Python-literal lines (`{'asin': ..., 'categories': [[...]]}`); 2018 metadata: JSON lines
  (`category` one path, `description` and `feature` lists).
- 2023 reviews: `user_id`, `parent_asin`, `asin`, `timestamp` (ms), `rating`; metadata keyed by `parent_asin`
  with `title`, `features`, `description`, `details`, `categories`, `store`, `price`, ...

Every version normalises to the same item attributes: `categories` is a list of 'A > B > C' path strings,
`description` one string, `features` a list of strings; other fields are strings (objects as JSON text).
Plain or gzip files, detected by content.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import polars as pl

from semrec.data.dataset import Dataset
from semrec.data.readers.common import (POLARS_ERRORS, build_dataset, drop_empty_columns, json_text_list,
                                        reader_meta)
from semrec.data.readers.jsonl import read_json_lines
from semrec.errors import ConfigError, DataError

REVIEWS_2014 = {"reviewerID": pl.Utf8, "asin": pl.Utf8, "unixReviewTime": pl.Int64, "overall": pl.Float64}
META_FIELDS_2014 = ("title", "brand", "categories", "category", "description", "feature", "main_cat", "price")
REVIEWS_2023 = {"user_id": pl.Utf8, "parent_asin": pl.Utf8, "asin": pl.Utf8, "timestamp": pl.Int64,
                "rating": pl.Float64}
META_FIELDS_2023 = ("title", "store", "main_category", "categories", "features", "description", "details",
                    "price", "average_rating", "rating_number")
# Attributes kept as item attributes but not fed to the text encoder by default.
NON_TEXT_FIELDS = {"price", "details", "average_rating", "rating_number"}
META_ITEMS = ("interacted", "all")
EXPECTED_2014 = "Amazon 2014/2018 review lines, JSON objects with reviewerID, asin and unixReviewTime"
EXPECTED_2023 = "Amazon 2023 review lines, JSON objects with user_id, parent_asin (or asin) and timestamp"


def _normalise_meta(df: pl.DataFrame) -> pl.DataFrame:
    """Raw meta columns (JSON text where not strings) -> the attribute layout shared by all versions."""
    cols: list[pl.Series] = []
    for c in df.columns:
        values = df[c]
        if c == "categories" and values.drop_nulls().str.starts_with("[[").any():  # 2014: list of paths
            cols.append(json_text_list(values, nested=True))
        elif c in ("categories", "category"):  # 2018 / 2023: one path as a flat list
            path = json_text_list(values)
            cols.append(pl.select(pl.when(path.list.len() > 0).then(pl.concat_list(path.list.join(" > "))))
                        .to_series().alias("categories"))
        elif c in ("feature", "features"):
            cols.append(json_text_list(values).alias("features"))
        elif c == "description":  # 2014: a string; 2018 / 2023: a list of paragraphs
            text = json_text_list(values)
            cols.append(pl.select(pl.when(text.list.len() > 0).then(text.list.join(" "))).to_series().alias(c))
        else:
            cols.append(values)
    out = pl.DataFrame(cols)
    lists = [c for c in ("categories", "features") if c in out.columns]  # empty lists are missing values
    return out.with_columns([pl.when(pl.col(c).list.len() > 0).then(pl.col(c)).alias(c) for c in lists])


def read_amazon_meta(path: str | Path, key: str, fields: Sequence[str], on_bad_rows: str = "error",
                     python_literal: bool | None = None) -> tuple[pl.DataFrame, int]:
    """An Amazon metadata file as an item table (`item_id` + normalised attributes) and its bad-row count."""
    schema = {key: pl.Utf8, **{f: pl.Utf8 for f in fields if f != key}}
    raw, n_bad = read_json_lines(path, schema, required=(key,), key_fields=(key,), on_bad_rows=on_bad_rows,
                                 python_literal=python_literal,
                                 expected=f"Amazon metadata lines (JSON or Python-literal objects) with {key!r}")
    raw = drop_empty_columns(raw, keep=(key,))
    try:
        items = _normalise_meta(raw.rename({key: "item_id"}))
    except POLARS_ERRORS as e:
        raise DataError(f"cannot normalise metadata fields: {str(e).splitlines()[0]}", path=path,
                        fix="check that list fields (categories, features, description) hold lists of strings") \
            from None
    return items, n_bad


def _attach_meta(inter: pl.DataFrame, meta: str | Path | None, key: str, fields: Sequence[str],
                 meta_items: str, on_bad_rows: str, python_literal: bool | None) -> tuple[pl.DataFrame | None,
                                                                                        list[str], int]:
    if meta_items not in META_ITEMS:
        raise ConfigError(f"meta_items must be one of {META_ITEMS}, got {meta_items!r}")
    if meta is None:
        return None, [], 0
    items, n_bad = read_amazon_meta(meta, key, fields, on_bad_rows, python_literal)
    if meta_items == "interacted":  # category metadata files list far more items than a (5-core) review file
        items = items.join(inter.select("item_id").unique(), on="item_id", how="semi", maintain_order="left")
    text_fields = [c for c in items.columns if c != "item_id" and c not in NON_TEXT_FIELDS]
    return items, text_fields, n_bad


def read_amazon(path: str | Path, *, meta: str | Path | None = None, meta_fields: Sequence[str] | None = None,
                meta_items: str = "interacted", python_literal: bool | None = None, name: str | None = None,
                on_bad_rows: str = "error") -> Dataset:
    """Amazon Reviews 2014 or 2018: a review file (e.g. `reviews_Beauty_5.json.gz`, `Beauty_5.json.gz`) plus an
    optional metadata file (`meta_Beauty.json.gz`). Timestamps are unix seconds; `overall` becomes `rating`.

    `meta_items='interacted'` keeps only items with a review; 'all' keeps every metadata item (cold items).
    `python_literal` forces (True) or forbids (False) the 2014 Python-literal parser; default: detected.
    """
    path = Path(path)
    reviews, bad = read_json_lines(path, REVIEWS_2014, required=("reviewerID", "asin", "unixReviewTime"),
                                   key_fields=("reviewerID", "asin"), on_bad_rows=on_bad_rows,
                                   python_literal=python_literal, expected=EXPECTED_2014)
    inter = reviews.select(pl.col("reviewerID").alias("user_id"), pl.col("asin").alias("item_id"),
                           pl.col("unixReviewTime").alias("timestamp"), pl.col("overall").alias("rating"))
    fields = tuple(meta_fields or META_FIELDS_2014)
    items, text_fields, meta_bad = _attach_meta(inter, meta, "asin", fields, meta_items, on_bad_rows,
                                                python_literal)
    options: dict[str, Any] = {"meta_fields": list(fields), "meta_items": meta_items, "on_bad_rows": on_bad_rows}
    info = reader_meta("amazon", [path] + ([meta] if meta else []), options, bad + meta_bad, "unix")
    return build_dataset(inter, items, path=path, expected=EXPECTED_2014, n_bad=bad, name=name or _stem(path),
                         text_fields=text_fields, meta=info)


def read_amazon2023(path: str | Path, *, meta: str | Path | None = None, item_key: str = "parent_asin",
                    meta_fields: Sequence[str] | None = None, meta_items: str = "interacted",
                    timestamp_unit: str = "ms", name: str | None = None, on_bad_rows: str = "error") -> Dataset:
    """Amazon Reviews 2023: a review file (e.g. `All_Beauty.jsonl.gz`) plus optional `meta_All_Beauty.jsonl.gz`.

    Items are keyed by `parent_asin` (the 2023 benchmark convention, variants merged) or `item_key='asin'`.
    Timestamps are kept in milliseconds (`timestamp_unit='ms'`) or floored to seconds (`'s'`).
    """
    if item_key not in ("parent_asin", "asin"):
        raise ConfigError(f"item_key must be 'parent_asin' or 'asin', got {item_key!r}")
    if timestamp_unit not in ("ms", "s"):
        raise ConfigError(f"timestamp_unit must be 'ms' or 's', got {timestamp_unit!r}")
    path = Path(path)
    reviews, bad = read_json_lines(path, REVIEWS_2023, required=("user_id", item_key, "timestamp"),
                                   key_fields=("user_id", item_key), on_bad_rows=on_bad_rows, python_literal=False,
                                   expected=EXPECTED_2023)
    ts = pl.col("timestamp") if timestamp_unit == "ms" else pl.col("timestamp") // 1000
    inter = reviews.select(pl.col("user_id"), pl.col(item_key).alias("item_id"), ts.alias("timestamp"),
                           pl.col("rating"))
    fields = tuple(meta_fields or META_FIELDS_2023)
    if meta is not None and item_key != "parent_asin":
        raise ConfigError("Amazon 2023 metadata is keyed by parent_asin; with metadata use item_key=parent_asin")
    items, text_fields, meta_bad = _attach_meta(inter, meta, "parent_asin", fields, meta_items, on_bad_rows, False)
    options: dict[str, Any] = {"item_key": item_key, "meta_fields": list(fields), "meta_items": meta_items,
                               "timestamp_unit": timestamp_unit, "on_bad_rows": on_bad_rows}
    kind = "unix_ms" if timestamp_unit == "ms" else "unix"
    info = reader_meta("amazon2023", [path] + ([meta] if meta else []), options, bad + meta_bad, kind)
    return build_dataset(inter, items, path=path, expected=EXPECTED_2023, n_bad=bad, name=name or _stem(path),
                         text_fields=text_fields, meta=info)


def _stem(path: Path) -> str:
    """`reviews_Beauty_5.json.gz` -> `reviews_Beauty_5`."""
    name = path.name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name
