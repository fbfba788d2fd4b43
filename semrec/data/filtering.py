"""Interaction clean-up before indexing: rating threshold, duplicates, iterative k-core."""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl

from semrec.data.dataset import Dataset

Duplicates = Literal["keep-all", "keep-first", "keep-last"]


def kcore(interactions: pl.DataFrame, user_k: int = 5, item_k: int = 5, user_col: str = "user_idx",
          item_col: str = "item_idx", max_rounds: int = 100) -> pl.DataFrame:
    """Drop users with < user_k and items with < item_k interactions, repeating until stable.

    On dense non-negative integer indices the counts are kept per user and item and only the dropped rows are
    subtracted each round (a few bytes per row, no window over the table); other key types use polars windows.
    Both give the same rows in the same order."""
    cols = [interactions[c] for c in (user_col, item_col)]
    if not all(c.dtype.is_integer() and not c.null_count() and (not len(c) or c.min() >= 0) for c in cols):
        return _kcore_windows(interactions, user_k, item_k, user_col, item_col, max_rounds)
    user, item = (c.to_numpy() for c in cols)
    keep = np.ones(len(user), dtype=bool)
    user_n, item_n = np.bincount(user), np.bincount(item)
    for _ in range(max_rounds):
        changed = False
        for key, k, counts, other, other_counts in ((item, item_k, item_n, user, user_n),
                                                    (user, user_k, user_n, item, item_n)):
            if k > 1:
                rows = np.flatnonzero(keep)
                drop = rows[counts[key[rows]] < k]
                if len(drop):
                    keep[drop] = False
                    counts -= np.bincount(key[drop], minlength=len(counts))
                    other_counts -= np.bincount(other[drop], minlength=len(other_counts))
                    changed = True
        if not changed:
            break
    return interactions if keep.all() else interactions.filter(pl.Series(keep))


def _kcore_windows(interactions: pl.DataFrame, user_k: int, item_k: int, user_col: str, item_col: str,
                   max_rounds: int) -> pl.DataFrame:
    inter = interactions
    for _ in range(max_rounds):
        before = inter.height
        if item_k > 1:
            inter = inter.filter(pl.len().over(item_col) >= item_k)
        if user_k > 1:
            inter = inter.filter(pl.len().over(user_col) >= user_k)
        if inter.height == before:
            break
    return inter


def filter_dataset(ds: Dataset, *, min_rating: float | None = None, duplicates: Duplicates = "keep-all",
                   user_k: int = 0, item_k: int = 0, keep_items_without_interactions: bool = False) -> Dataset:
    """Apply the standard clean-up in its standard order and re-index; the options land in the manifest."""
    inter = ds.interactions
    if min_rating is not None:
        if "rating" not in inter.columns:
            raise ValueError("min_rating given but the dataset has no ratings")
        inter = inter.filter(pl.col("rating") >= min_rating)
    if duplicates != "keep-all":
        inter = inter.unique(["user_idx", "item_idx"], keep="first" if duplicates == "keep-first" else "last",
                             maintain_order=True)
    if user_k > 1 or item_k > 1:
        inter = kcore(inter, user_k, item_k)
    options = {"min_rating": min_rating, "duplicates": duplicates, "user_k": user_k, "item_k": item_k}
    return ds.reindexed(inter, keep_items=keep_items_without_interactions,
                        filtering={**ds.meta.get("filtering", {}), **options})
