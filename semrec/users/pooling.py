"""Pooled user vectors: a user as the (idf-weighted) mean of item vectors over the whole history.

A next-item model's exported state (`pool="last"`) encodes what comes next; attributes and long-term taste
(gender, age, look-alike audiences) are read better from the whole history. `mean` averages the model's item
vectors (`item_embeddings()`, or the frozen text vectors with `source="text"`) over the history, counting
repeats; `idf-mean` weights each item by log(n_users / popularity), so rare items say more about a user.
Pooled vectors are for probing, segmentation and look-alikes: `user @ items.T` is not the model's score.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from semrec.data.sequences import Sequences
from semrec.errors import ConfigError, DataError

POOLS = ("last", "mean", "idf-mean")
POOL_SOURCES = ("model", "text")


def item_idf(reference: Sequences, n_items: int) -> np.ndarray:
    """(n_items,) log(n_users / popularity), popularity = number of `reference` users with the item (at least 1,
    so an item no reference user has weighs as much as the rarest)."""
    if len(reference) == 0:
        raise DataError("item_idf needs at least one reference history", fix="pass the training sequences")
    rows = np.repeat(np.arange(len(reference)), reference.lengths)
    pairs = np.unique(rows.astype(np.int64) * n_items + reference.items)  # one count per (user, item)
    popularity = np.bincount(pairs % n_items, minlength=n_items)
    return np.log(len(reference) / np.maximum(popularity, 1)).astype(np.float32)


def pool_items(table: np.ndarray, histories: Sequences, weights: np.ndarray | None = None) -> np.ndarray:
    """(n, d) float32 weighted mean of `table` rows over each history (one sparse matmul, repeats counted);
    a history that is empty, or whose items all weigh 0, gets a zero vector."""
    n_items = len(table)
    if histories.items.size and (histories.items.min() < 0 or histories.items.max() >= n_items):
        raise DataError(f"history item {int(histories.items.max())} is outside the {n_items}-item table",
                        fix="embed histories of the dataset the model was trained on")
    w = np.ones(n_items, np.float64) if weights is None else np.asarray(weights, np.float64)
    hist = csr_matrix((w[histories.items], histories.items, histories.offsets), shape=(len(histories), n_items))
    total = np.asarray(hist.sum(axis=1)).ravel()
    pooled = hist @ np.asarray(table, np.float64)
    return (pooled / np.where(total > 0, total, 1.0)[:, None]).astype(np.float32)


def pool_table(model: Any, source: str = "model") -> np.ndarray:
    """The item table a pooled vector averages: the model's item vectors, or the frozen text vectors of a
    text-based model (`text_embeddings()`)."""
    if source not in POOL_SOURCES:
        raise ConfigError(f"pool source {source!r} is not one of {', '.join(POOL_SOURCES)}")
    if source == "model":
        return np.asarray(model.item_embeddings())
    if not callable(getattr(model, "text_embeddings", None)):
        raise ConfigError(f"model {model.name!r} has no item text vectors (fix: use --pool-source model, or a "
                          "text-based model such as user-text or text-seq)")
    return np.asarray(model.text_embeddings())


def pooled_user_vectors(model: Any, histories: Sequences, pool: str = "mean", source: str = "model",
                        reference: Sequences | None = None) -> np.ndarray:
    """(n, d) float32 `mean` / `idf-mean` pooled user vectors; idf popularity comes from `reference` (default:
    `histories` themselves; pass the training sequences to make a user's vector independent of the batch)."""
    if pool not in POOLS[1:]:
        raise ConfigError(f"pool {pool!r} is not one of {', '.join(POOLS[1:])} (`last` is the model's own state)")
    table = pool_table(model, source)
    weights = item_idf(reference if reference is not None else histories, len(table)) if pool == "idf-mean" else None
    return pool_items(table, histories, weights)
