"""Ranking metrics computed per evaluation row from the rank of each target item.

A row has one or more distinct target items; `ranks` gives each target's 0-based position in the
model's ranked list, or -1 when it is not in the top `cutoff` (the largest K evaluated). With
T = the row's targets and r_t the 0-based rank of target t:

- Recall@K = |{t : r_t < K}| / |T|                       (= hit rate when |T| = 1)
- NDCG@K   = sum_{t : r_t < K} 1/log2(r_t + 2)  /  sum_{i < min(|T|, K)} 1/log2(i + 2)
- MRR@K    = 1 / (min_t r_t + 1) if min_t r_t < K else 0 (reciprocal rank of the first hit)
- MRR      = MRR@cutoff: the ranked list is cut at the largest K evaluated; misses beyond it count 0.

Dataset-level values are plain means over rows.
"""

from __future__ import annotations

import numpy as np

ROW_METRICS = ("recall", "ndcg", "mrr")


def _row_index(offsets: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def recall_at(ranks: np.ndarray, offsets: np.ndarray, k: int) -> np.ndarray:
    """Per-row Recall@k: the fraction of the row's targets ranked in the top k."""
    hit = (ranks >= 0) & (ranks < k)
    n = len(offsets) - 1
    hits = np.bincount(_row_index(offsets), weights=hit, minlength=n)
    return hits / np.maximum(np.diff(offsets), 1)


def ndcg_at(ranks: np.ndarray, offsets: np.ndarray, k: int) -> np.ndarray:
    """Per-row NDCG@k with binary relevance; the ideal DCG places min(|targets|, k) hits first."""
    hit = (ranks >= 0) & (ranks < k)
    gain = np.where(hit, 1.0 / np.log2(np.where(hit, ranks, 0) + 2.0), 0.0)
    n = len(offsets) - 1
    dcg = np.bincount(_row_index(offsets), weights=gain, minlength=n)
    ideal_prefix = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))])
    idcg = ideal_prefix[np.minimum(np.diff(offsets), k)]
    return np.divide(dcg, idcg, out=np.zeros(n), where=idcg > 0)


def mrr_at(ranks: np.ndarray, offsets: np.ndarray, k: int) -> np.ndarray:
    """Per-row reciprocal rank of the first target within the top k (0 when none is)."""
    hit = (ranks >= 0) & (ranks < k)
    rr = np.where(hit, 1.0 / (np.where(hit, ranks, 0) + 1.0), 0.0)
    out = np.zeros(len(offsets) - 1)
    np.maximum.at(out, _row_index(offsets), rr)
    return out


_FUNCS = {"recall": recall_at, "ndcg": ndcg_at, "mrr": mrr_at}


def row_metric(name: str, ranks: np.ndarray, offsets: np.ndarray, cutoff: int) -> np.ndarray:
    """Per-row values of a metric name such as 'recall@10', 'ndcg@5', 'mrr@20' or 'mrr' (= mrr@cutoff)."""
    base, _, k = name.partition("@")
    if base not in _FUNCS or (k and not k.isdigit()) or (not k and base != "mrr"):
        raise KeyError(f"unknown metric {name!r}; per-row metrics are recall@K, ndcg@K, mrr@K and mrr")
    kk = int(k) if k else cutoff
    if kk > cutoff:
        raise KeyError(f"{name}: K={kk} exceeds the evaluated cut-off {cutoff} (re-evaluate with a larger K)")
    return _FUNCS[base](ranks, offsets, kk)


def metric_names(ks: tuple[int, ...]) -> list[str]:
    """The per-row metric names reported for cut-offs `ks`, in table order."""
    return [f"{m}@{k}" for k in ks for m in ROW_METRICS] + ["mrr"]
