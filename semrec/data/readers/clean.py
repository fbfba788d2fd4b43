"""Text attributes as real-world files write them, made uniform: HTML entities decoded, missing-value markers
(`NaN`, `null`, `None`, empty or blank strings) turned into real nulls, so that `semrec data inspect` counts
them as missing and the text encoder never embeds the word "nan".

Vectorised: entities are decoded once per distinct value (`html.unescape` on the unique values that hold an
'&', then one polars `replace`), markers are found with one `is_in` per column.
"""

from __future__ import annotations

import html

import polars as pl

MISSING_MARKERS = ("", "nan", "null", "none")


def _unescape_pairs(values: pl.Series) -> tuple[list[str], list[str]]:
    """(escaped, unescaped) for the distinct values that change under html.unescape. JSON object text (Amazon
    `details`) is left alone: a decoded `&quot;` inside it would break its quoting."""
    wanted = values.str.contains("&", literal=True) & ~values.str.starts_with("{")
    candidates = values.filter(wanted.fill_null(False)).unique()
    old = candidates.to_list()
    new = [html.unescape(v) for v in old]  # one call per distinct value holding '&', not per row
    changed = [(o, n) for o, n in zip(old, new) if o != n]
    return [o for o, _ in changed], [n for _, n in changed]


def _is_marker(e: pl.Expr) -> pl.Expr:
    return e.str.strip_chars().str.to_lowercase().is_in(MISSING_MARKERS)


def clean_strings(values: pl.Series) -> pl.Series:
    """A Utf8 column with entities decoded and missing markers as null."""
    old, new = _unescape_pairs(values)
    if old:
        values = values.replace(old, new)
    return pl.select(pl.when(_is_marker(pl.lit(values))).then(None).otherwise(pl.lit(values))).to_series() \
        .alias(values.name)


def clean_string_lists(values: pl.Series) -> pl.Series:
    """A List(Utf8) column: entities decoded in every element, missing elements dropped, empty lists null."""
    old, new = _unescape_pairs(values.explode())
    e = pl.element().replace(old, new) if old else pl.element()
    cleaned = values.list.eval(e.filter(e.is_not_null() & ~_is_marker(e)))
    return pl.select(pl.when(pl.lit(cleaned).list.len() > 0).then(pl.lit(cleaned))).to_series().alias(values.name)


def clean_attributes(table: pl.DataFrame | None, keep: tuple[str, ...] = ("item_id", "user_id")) -> \
        pl.DataFrame | None:
    """Clean every Utf8 and List(Utf8) attribute column of an item or user table; id columns are left alone."""
    if table is None:
        return None
    cols = []
    for name, dtype in table.schema.items():
        if name in keep:
            continue
        if dtype == pl.Utf8:
            cols.append(clean_strings(table[name]))
        elif isinstance(dtype, pl.List) and dtype.inner == pl.Utf8:
            cols.append(clean_string_lists(table[name]))
    return table.with_columns(cols) if cols else table
