"""The served catalogue: external ids <-> item indices, titles, attributes, text search, attribute filters,
and which items are currently recommendable.

Rows 0..n_base-1 are the trained dataset's items (row = item_idx); items added while serving get the next
indices. Deleting an item only clears its `active` flag, so indices stay stable for every model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from semrec.errors import ConfigError

TITLE_COLUMNS = ("title", "name")
MAX_QUERY_WORDS = 12


def _to_lower_sentences(items: pl.DataFrame, fields: list[str]) -> pl.Series:
    from semrec.data.sentences import item_sentences

    names = [f for f in fields if f in items.columns]
    if not names:  # none of the text fields: the id alone is searchable
        return items["item_id"].cast(pl.Utf8).str.to_lowercase().alias("search")
    text = pl.Series("t", item_sentences(items, names), dtype=pl.Utf8)
    return (items["item_id"].cast(pl.Utf8) + " " + text.fill_null("")).str.to_lowercase().alias("search")


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    return v


class Catalogue:
    """Item metadata for serving. `fields` are the text fields that make an item's sentence."""

    def __init__(self, items: pl.DataFrame, fields: list[str], popularity: np.ndarray | None = None):
        items = items.with_columns(pl.col("item_id").cast(pl.Utf8))
        self.fields = list(fields)
        self.table = items.drop("item_idx") if "item_idx" in items.columns else items
        self.n_base = self.table.height
        self.ids: list[str] = self.table["item_id"].to_list()
        self.index: dict[str, int] = {i: n for n, i in enumerate(self.ids)}
        self.title_col = next((c for c in TITLE_COLUMNS if c in self.table.columns), None)
        self.titles: list[str] = self._titles(self.table)
        self.active = np.ones(self.n_base, dtype=bool)
        self.popularity = np.zeros(self.n_base, np.float64) if popularity is None else np.asarray(
            popularity, np.float64)[: self.n_base]
        self.search_text = _to_lower_sentences(self.table, self.fields)
        self._mask_cache: dict[str, np.ndarray] = {}

    def _titles(self, table: pl.DataFrame) -> list[str]:
        if self.title_col is None or self.title_col not in table.columns:
            return table["item_id"].to_list()
        col = table[self.title_col].cast(pl.Utf8, strict=False).fill_null("")
        return [t or i for t, i in zip(col.to_list(), table["item_id"].to_list())]

    # ------------------------------------------------------------------ size and lookup
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_active(self) -> int:
        return int(self.active.sum())

    @property
    def n_added(self) -> int:
        return len(self.ids) - self.n_base

    def lookup(self, ids: list[str]) -> tuple[np.ndarray, list[str]]:
        """(indices of the known ids, in order; the unknown ids)."""
        idx = [self.index.get(i, -1) for i in ids]
        unknown = [i for i, j in zip(ids, idx) if j < 0]
        return np.asarray([j for j in idx if j >= 0], dtype=np.int64), unknown

    # ------------------------------------------------------------------ changes
    def append(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """Add items (dicts with item_id and attribute values); returns their new indices."""
        if not rows:
            return np.zeros(0, np.int64)
        new = pl.DataFrame([{k: v for k, v in r.items()} for r in rows], infer_schema_length=None)
        new = new.with_columns(pl.col("item_id").cast(pl.Utf8))
        try:
            self.table = pl.concat([self.table, new], how="diagonal_relaxed")
        except (pl.exceptions.PolarsError, TypeError):  # a value that fits no common type: keep it as text
            new = new.with_columns([pl.col(c).cast(pl.Utf8, strict=False) for c in new.columns
                                    if c in self.table.columns and c != "item_id"])
            self.table = pl.concat([self.table.with_columns(
                [pl.col(c).cast(pl.Utf8, strict=False) for c in new.columns if c in self.table.columns
                 and c != "item_id" and self.table.schema[c] != new.schema[c]]), new], how="diagonal_relaxed")
        start = len(self.ids)
        idx = np.arange(start, start + len(rows), dtype=np.int64)
        self.ids += new["item_id"].to_list()
        self.index.update({i: int(n) for i, n in zip(new["item_id"].to_list(), idx)})
        self.titles += self._titles(new)
        self.active = np.concatenate([self.active, np.ones(len(rows), bool)])
        self.popularity = np.concatenate([self.popularity, np.zeros(len(rows))])
        self.search_text = pl.concat([self.search_text, _to_lower_sentences(new, self.fields)])
        self._mask_cache.clear()
        return idx

    def deactivate(self, idx: np.ndarray) -> None:
        self.active[np.asarray(idx, dtype=np.int64)] = False

    def sentences(self, idx: np.ndarray) -> list[str]:
        """The item sentences a text encoder sees (the run's fields, in order)."""
        from semrec.data.sentences import item_sentences

        rows = self.table[np.asarray(idx, dtype=np.int64)]
        names = [f for f in self.fields if f in rows.columns]
        if not names:
            raise ConfigError(f"new items need at least one of the text fields {self.fields} in 'attributes'")
        return item_sentences(rows, names)

    # ------------------------------------------------------------------ views
    def record(self, i: int) -> dict[str, Any]:
        """JSON-ready attributes of item `i` (no nulls)."""
        row = self.table.row(int(i), named=True)
        return {k: _json_value(v) for k, v in row.items() if k != "item_id" and v is not None}

    def search(self, query: str, limit: int = 20) -> np.ndarray:
        """Active items whose id or text contains every word of `query` (case-insensitive), most popular first;
        an exact id match comes first."""
        words = [w for w in query.lower().split() if w][:MAX_QUERY_WORDS]
        mask = self.text_mask(words) & self.active
        hits = np.flatnonzero(mask)
        hits = hits[np.argsort(-self.popularity[hits], kind="stable")][:limit]
        exact = self.index.get(query.strip(), -1)
        if exact >= 0 and self.active[exact]:
            hits = np.concatenate([[exact], hits[hits != exact]])[:limit]
        return hits

    def text_mask(self, words: list[str]) -> np.ndarray:
        if not words:
            return np.ones(len(self), bool)
        expr = pl.all_horizontal([pl.col("search").str.contains(w, literal=True) for w in words])
        return self.search_text.to_frame().select(expr)[:, 0].to_numpy()

    def filter_mask(self, constraints: dict[str, Any]) -> np.ndarray:
        """Items meeting every constraint: `field: value` (equal, or contained in a list field), `field: [values]`
        (any of them), `field: {"min": a, "max": b}` (numeric range). Unknown fields raise ConfigError."""
        import json

        if not constraints:
            return np.ones(len(self), bool)
        key = json.dumps(constraints, sort_keys=True, default=str)
        if key in self._mask_cache:
            return self._mask_cache[key]
        exprs = []
        for name, want in constraints.items():
            if name not in self.table.columns or name == "item_idx":
                raise ConfigError(f"filter: unknown attribute {name!r}; available: "
                                  f"{', '.join(c for c in self.table.columns if c != 'item_idx')}")
            exprs.append(self._constraint(name, want))
        try:
            mask = self.table.select(pl.all_horizontal(exprs).fill_null(False))[:, 0].to_numpy()
        except (pl.exceptions.PolarsError, TypeError, ValueError) as e:
            raise ConfigError(f"filter {constraints!r} does not fit the attribute types ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]})") from None
        if len(self._mask_cache) > 256:
            self._mask_cache.clear()
        self._mask_cache[key] = mask
        return mask

    def _constraint(self, name: str, want: Any) -> pl.Expr:
        dtype = self.table.schema[name]
        col = pl.col(name)
        if isinstance(want, dict):
            if not dtype.is_numeric():
                raise ConfigError(f"filter: {name!r} is {dtype}, so a min/max range does not apply")
            expr = pl.lit(True)
            if want.get("min") is not None:
                expr = expr & (col >= float(want["min"]))
            if want.get("max") is not None:
                expr = expr & (col <= float(want["max"]))
            return expr
        values = want if isinstance(want, list) else [want]
        if isinstance(dtype, pl.List):
            inner = col.list.eval(pl.element().cast(pl.Utf8, strict=False)) if not isinstance(dtype.inner, pl.List) \
                else col.list.eval(pl.element().list.join(" > "))
            flat = inner.list.join("\u0000")
            return pl.any_horizontal([flat.str.contains(str(v), literal=True) for v in values] or [pl.lit(False)])
        if dtype.is_numeric():
            try:
                nums = [float(v) for v in values]
            except (TypeError, ValueError):
                raise ConfigError(f"filter: {name!r} holds numbers; got {values!r}") from None
            return col.cast(pl.Float64).is_in(nums)
        return col.cast(pl.Utf8, strict=False).is_in([str(v) for v in values])
