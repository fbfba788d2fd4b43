"""Look-alike users: nearest users to one user, and expansion of a seed segment to the users most like it.

Similarity is cosine between user vectors (a user's scale reflects activity, not taste). A segment is expanded
from the centroid of its normalised members (`centroid`, one matmul), or by each candidate's best similarity to
any member (`max`, better for segments made of several sub-groups).
"""

from __future__ import annotations

import numpy as np
import torch

from semrec.errors import ConfigError, DataError

EXPAND_METHODS = ("centroid", "max", "mean")


def _unit(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.array(x, dtype=np.float32))  # a copy: inputs may be read-only (Parquet)
    return t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)


def similar_users(vectors: np.ndarray, rows: np.ndarray, k: int = 10, batch_size: int = 2048
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(len(rows), k) most cosine-similar users to each user in `rows` (itself excluded) and their similarities."""
    rows = np.asarray(rows, dtype=np.int64)
    n = len(vectors)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise DataError(f"user row {int(rows.max())} is outside the {n} user vectors")
    k = min(int(k), n - 1)
    if k < 1:
        raise ConfigError("similar users need at least 2 user vectors and k >= 1")
    u = _unit(vectors)
    ids, sims = np.empty((len(rows), k), np.int64), np.empty((len(rows), k), np.float32)
    for s in range(0, len(rows), batch_size):
        r = torch.from_numpy(rows[s:s + batch_size])
        scores = u[r] @ u.T
        scores[torch.arange(len(r)), r] = -torch.inf
        top = torch.topk(scores, k, dim=1)
        ids[s:s + batch_size], sims[s:s + batch_size] = top.indices.numpy(), top.values.numpy()
    return ids, sims


def segment_scores(vectors: np.ndarray, seeds: np.ndarray, method: str = "centroid") -> np.ndarray:
    """(n,) similarity of every user to the seed segment (seed users themselves get -inf)."""
    if method not in EXPAND_METHODS:
        raise ConfigError(f"expansion method {method!r} is not one of {', '.join(EXPAND_METHODS)}")
    seeds = np.unique(np.asarray(seeds, dtype=np.int64))
    if not seeds.size:
        raise DataError("the seed segment is empty", fix="pass at least one known user id")
    u = _unit(vectors)
    s = u[torch.from_numpy(seeds)]
    if method == "centroid":
        scores = u @ (s.mean(0) / s.mean(0).norm().clamp_min(1e-12))
    else:
        sims = u @ s.T
        scores = sims.max(1).values if method == "max" else sims.mean(1)
    scores[torch.from_numpy(seeds)] = -torch.inf
    return scores.numpy()


def expand_segment(vectors: np.ndarray, seeds: np.ndarray, k: int = 50, method: str = "centroid"
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The k users outside `seeds` most like the segment, best first, and their scores."""
    scores = torch.from_numpy(segment_scores(vectors, seeds, method))
    top = torch.topk(scores, min(int(k), int(torch.isfinite(scores).sum())))
    return top.indices.numpy(), top.values.numpy()
