"""`Dataset.build` for a log that arrives in chunks, so memory follows the indexed result, not the raw text.

A 100M-row log as id strings is ~6 GB in memory before indexing starts; indexed, it is 2.8 GB. Here every
chunk is indexed as it arrives (ids -> dense indices by first appearance, against a map of the ids seen so
far), only the integer columns are kept, and the final sort by (user, time) works column by column. The result
is identical to `Dataset.build` on the whole table: same item/user orders, same stable tie order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import polars as pl

from semrec.data.dataset import Dataset


class IdIndex:
    """Dense indices of string ids in order of first appearance, seeded with a table's ids (its row order)."""

    def __init__(self, seed: pl.Series):
        self.map = pl.DataFrame({"id": seed.cast(pl.Utf8), "idx": np.arange(len(seed), dtype=np.int64)})
        self.n_seed = len(seed)
        self.new: list[pl.Series] = []  # ids first seen in the log, in order

    @property
    def n(self) -> int:
        return self.map.height

    def codes(self, ids: pl.Series) -> np.ndarray:
        """Index of every id of one chunk; ids not seen before get the next indices, by first appearance."""
        frame = pl.DataFrame({"id": ids})
        idx = frame.join(self.map, on="id", how="left", maintain_order="left")["idx"]
        unseen = idx.is_null()
        if unseen.any():
            fresh = ids.filter(unseen).unique(maintain_order=True)
            add = pl.DataFrame({"id": fresh, "idx": np.arange(self.n, self.n + len(fresh), dtype=np.int64)})
            self.map = pl.concat([self.map, add]).rechunk()
            self.new.append(fresh)
            idx = frame.join(self.map, on="id", how="left", maintain_order="left")["idx"]
        return idx.to_numpy()

    def table(self, base: pl.DataFrame, kind: str) -> pl.DataFrame:
        """`base` (the seed table) then the ids seen only in the log, indexed like `Dataset.build` does."""
        key = f"{kind}_id"
        extra = pl.concat(self.new).alias(key).to_frame() if self.new else None
        table = pl.concat([base, extra], how="diagonal_relaxed") if extra is not None else base
        table = table.with_row_index(f"{kind}_idx").with_columns(pl.col(f"{kind}_idx").cast(pl.Int64))
        return table.select([f"{kind}_idx", key, *[c for c in table.columns if c not in (f"{kind}_idx", key)]])


def _seed_table(table: pl.DataFrame | None, kind: str) -> pl.DataFrame:
    key = f"{kind}_id"
    if table is None:
        return pl.DataFrame({key: pl.Series([], dtype=pl.Utf8)})
    return table.with_columns(pl.col(key).cast(pl.Utf8)).unique(key, keep="first", maintain_order=True)


def user_time_order(user: np.ndarray, time: np.ndarray, n_users: int) -> np.ndarray:
    """The stable permutation sorting rows by (user, time), as `Dataset.build` sorts (one packed u64 key
    when it fits: a single-key sort is much faster and needs one key array, not two)."""
    if len(user) == 0:
        return np.zeros(0, dtype=np.int64)
    t_min, t_max = int(time.min()), int(time.max())
    user_bits = max(int(n_users - 1).bit_length(), 1)
    if t_max - t_min >= 1 << (64 - user_bits):
        return np.lexsort((time, user))
    key = user.astype(np.uint64) << np.uint64(64 - user_bits)
    key |= (time - t_min).astype(np.uint64)
    return np.argsort(key, kind="stable")


def build_streamed(chunks: Iterable[pl.DataFrame], items: pl.DataFrame | None = None,
                   users: pl.DataFrame | None = None, *, name: str = "dataset", text_fields: list[str] | None = None,
                   meta: dict[str, Any] | None = None) -> Dataset:
    """`Dataset.build(concat(chunks), items, users=users, **build)` without holding the concatenation.

    Chunks have user_id, item_id, [timestamp], [rating] (the same columns in every chunk), in log order.
    """
    items, users = _seed_table(items, "item"), _seed_table(users, "user")
    item_index, user_index = IdIndex(items["item_id"]), IdIndex(users["user_id"])
    cols: dict[str, list[np.ndarray]] = {"user_idx": [], "item_idx": [], "timestamp": [], "rating": []}
    has_time = has_rating = None
    seen = np.zeros(0, dtype=np.int64)  # interactions per user so far (positions when there is no timestamp)
    for chunk in chunks:
        if has_time is None:
            has_time, has_rating = "timestamp" in chunk.columns, "rating" in chunk.columns
        u = user_index.codes(chunk["user_id"].cast(pl.Utf8))
        cols["user_idx"].append(u.astype(np.int32) if user_index.n < 2**31 else u)
        cols["item_idx"].append(item_index.codes(chunk["item_id"].cast(pl.Utf8)).astype(
            np.int32 if item_index.n < 2**31 else np.int64))
        if has_time:
            cols["timestamp"].append(chunk["timestamp"].cast(pl.Int64).to_numpy())
        else:  # row order within the user, continued across chunks
            seen = np.concatenate([seen, np.zeros(user_index.n - len(seen), np.int64)])
            order = np.argsort(u, kind="stable")
            su = u[order]
            starts = np.r_[0, np.flatnonzero(np.diff(su)) + 1]
            rank = np.empty(len(u), np.int64)
            rank[order] = np.arange(len(u)) - np.repeat(starts, np.diff(np.r_[starts, len(u)]))
            cols["timestamp"].append(seen[u] + rank)
            seen += np.bincount(u, minlength=user_index.n)
        if has_rating:
            cols["rating"].append(chunk["rating"].cast(pl.Float32).to_numpy())
    columns = ["user_idx", "item_idx", "timestamp"] + (["rating"] if has_rating else [])
    arrays = {}
    for col in columns:  # one column at a time: the chunks of a column are freed once joined
        parts = cols.pop(col)
        arrays[col] = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        parts.clear()
    order = user_time_order(arrays["user_idx"], arrays["timestamp"], user_index.n)
    series = []
    for col in columns:  # gather and widen column by column, dropping each source as soon as it is copied
        a = arrays.pop(col)[order]
        series.append(pl.Series(col, a).cast(pl.Float32 if col == "rating" else pl.Int64))
        del a
    del order
    items_t, users_t = item_index.table(items, "item"), user_index.table(users, "user")
    ds = Dataset(items=items_t, users=users_t, interactions=pl.DataFrame(series), name=name,
                 text_fields=list(text_fields or []), meta=dict(meta or {}))
    return ds
