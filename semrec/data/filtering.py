"""Interaction clean-up before indexing: rating threshold, duplicates, iterative k-core."""

from __future__ import annotations

from typing import Literal

import polars as pl

from semrec.data.dataset import Dataset

Duplicates = Literal["keep-all", "keep-first", "keep-last"]


def kcore(interactions: pl.DataFrame, user_k: int = 5, item_k: int = 5, user_col: str = "user_idx",
          item_col: str = "item_idx", max_rounds: int = 100) -> pl.DataFrame:
    """Drop users with < user_k and items with < item_k interactions, repeating until stable."""
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
