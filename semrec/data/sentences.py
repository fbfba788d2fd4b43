"""Item sentences: flatten key-value attributes into one deterministic string (Recformer-style).

`title: OPI Nail Lacquer; brand: OPI; categories: Beauty > Makeup > Nails` is what a text encoder sees
for an item, so new items are recommendable through their text alone.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import polars as pl

_ENTITY = r"&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);"


@dataclass(frozen=True)
class SentenceConfig:
    """Which fields, in which order, how long each may be, and how they are joined."""

    fields: tuple[str, ...] | None = None  # None: the dataset's text_fields
    max_words: int | dict[str, int] = 64  # per field
    template: str = "{key}: {value}"
    separator: str = "; "
    list_separator: str = ", "
    include_empty: bool = False


def _clean(expr: pl.Expr) -> pl.Expr:
    """Unescape HTML entities, drop tags, collapse whitespace."""
    unescaped = (pl.when(expr.str.contains(_ENTITY))
                 .then(expr.map_elements(html.unescape, return_dtype=pl.Utf8))
                 .otherwise(expr))
    return (unescaped.str.replace_all(r"<[^>]*>", " ")
            .str.replace_all(r"\s+", " ").str.strip_chars())


def _field_text(items: pl.DataFrame, name: str, cfg: SentenceConfig) -> pl.Expr:
    dtype = items.schema[name]
    col = pl.col(name)
    if isinstance(dtype, pl.List):
        inner = dtype.inner
        if isinstance(inner, pl.List):
            col = col.list.eval(pl.element().list.join(" > "))
        elif inner != pl.Utf8:
            col = col.list.eval(pl.element().cast(pl.Utf8))
        text = col.list.join(cfg.list_separator)
    else:
        text = col.cast(pl.Utf8)
    text = _clean(text.fill_null(""))
    limit = cfg.max_words.get(name, 64) if isinstance(cfg.max_words, dict) else cfg.max_words
    return text.str.split(" ").list.head(limit).list.join(" ")


def item_sentences(items: pl.DataFrame, fields: list[str] | tuple[str, ...] | None = None,
                   config: SentenceConfig | None = None) -> list[str]:
    """One sentence per item row, in row order. `fields` overrides the config's field list."""
    cfg = config or SentenceConfig()
    names = list(fields or cfg.fields or [c for c in items.columns if c not in ("item_idx", "item_id")])
    missing = [n for n in names if n not in items.columns]
    if missing:
        raise KeyError(f"item table has no field(s) {missing}; available: {items.columns}")
    parts = []
    for name in names:
        value = _field_text(items, name, cfg)
        prefix, suffix = cfg.template.format(key=name, value="\x00").split("\x00")
        piece = pl.concat_str([pl.lit(prefix), value, pl.lit(suffix)])
        parts.append(piece if cfg.include_empty else pl.when(value != "").then(piece))
    sentence = pl.concat_list(parts).list.drop_nulls().list.join(cfg.separator)
    return items.select(sentence.alias("s"))["s"].to_list()
