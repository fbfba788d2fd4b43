"""ItemKNN on sequential co-occurrence: "people who bought A bought B next".

Fit: count transitions a -> b for every pair within `window` positions in a training sequence (weight
`distance_decay^(gap-1)`, plus `backward_weight` for b -> a), normalise to
sim(a, b) = C[a, b] / (f_a^alpha * f_b^(1-alpha) + shrink) (alpha = 0.5: cosine over item frequencies f),
keep the `neighbours` strongest per item. Score: sum over the last `history_items` history items of
`history_decay^(t-1) * sim(item, .)`, most recent first; items with no signal fall back to popularity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from semrec.data.sequences import Sequences
from semrec.data.splits import EvalSet
from semrec.errors import ConfigError
from semrec.models.base import ScoringRecommender, register


@dataclass
class ItemKNNConfig:
    """Defaults: validation NDCG@10 within 0.0001 of the best point of a 108-point grid on Beauty and Toys, and
    0.0308 vs 0.0311 on Sports (which prefers backward_weight 0.3); see benchmarks/baselines.py."""

    window: int = 5  # pairs up to this many positions apart count as a transition
    distance_decay: float = 0.5  # weight of a pair `gap` apart: distance_decay ** (gap - 1)
    backward_weight: float = 0.0  # also count b -> a with this weight (1.0 = symmetric co-occurrence)
    alpha: float = 0.85  # 0.5 = cosine; larger favours targets that are popular
    shrink: float = 0.0  # added to the denominator; damps similarities of rare items
    neighbours: int = 200  # strongest similarities kept per item (0 = all)
    history_items: int = 3  # how many of the latest history items vote
    history_decay: float = 0.3  # vote weight of the t-th latest item: history_decay ** (t - 1)
    popularity_prior: float = 1e-6  # tiny popularity score that orders items without co-occurrence signal

    def __post_init__(self) -> None:
        if self.window < 1 or self.history_items < 1:
            raise ConfigError("itemknn: window and history_items must be >= 1")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"itemknn: alpha must be in [0, 1], got {self.alpha}")
        if min(self.distance_decay, self.backward_weight, self.shrink, self.history_decay,
               self.popularity_prior) < 0:
            raise ConfigError("itemknn: distance_decay, backward_weight, shrink, history_decay and "
                              "popularity_prior must be >= 0")


def transition_counts(train: Sequences, n_items: int, window: int, distance_decay: float,
                      backward_weight: float = 0.0) -> sp.csr_matrix:
    """Sparse (n_items, n_items) weighted counts of item -> later item within `window` positions."""
    pos = np.arange(len(train.items)) - np.repeat(train.offsets[:-1], train.lengths)
    remaining = np.repeat(train.lengths, train.lengths) - pos - 1  # items after this one in its sequence
    src, dst, w = [], [], []
    for gap in range(1, window + 1):
        i = np.flatnonzero(remaining >= gap)
        weight = distance_decay ** (gap - 1)
        src.append(train.items[i])
        dst.append(train.items[i + gap])
        w.append(np.full(len(i), weight))
        if backward_weight:
            src.append(train.items[i + gap])
            dst.append(train.items[i])
            w.append(np.full(len(i), weight * backward_weight))
    rows, cols, vals = (np.concatenate(x) if x else np.zeros(0) for x in (src, dst, w))
    return sp.csr_matrix((vals, (rows.astype(np.int64), cols.astype(np.int64))), shape=(n_items, n_items))


def top_n_per_row(m: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Keep the n largest entries of every row (vectorised: one lexsort over all non-zeros)."""
    m = m.tocsr()
    m.sum_duplicates()
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    order = np.lexsort((-m.data, rows))
    rank = np.arange(len(order)) - m.indptr[rows[order]]
    keep = order[rank < n]
    return sp.csr_matrix((m.data[keep], (rows[keep], m.indices[keep])), shape=m.shape)


@register
class ItemKNN(ScoringRecommender):
    name = "itemknn"
    Config = ItemKNNConfig

    def __init__(self, n_items: int, config: ItemKNNConfig | None = None, **overrides):
        super().__init__(n_items, config, **overrides)
        self.sim = sp.csr_matrix((n_items, n_items), dtype=np.float32)
        self.popularity = np.zeros(n_items, dtype=np.float32)

    def fit(self, train: Sequences, valid: EvalSet | None = None) -> "ItemKNN":
        c = self.config
        counts = transition_counts(train, self.n_items, c.window, c.distance_decay, c.backward_weight).tocoo()
        freq = np.bincount(train.items, minlength=self.n_items).astype(np.float64)
        denom = freq[counts.row] ** c.alpha * freq[counts.col] ** (1.0 - c.alpha) + c.shrink
        sim = sp.csr_matrix((counts.data / np.maximum(denom, 1e-12), (counts.row, counts.col)), shape=counts.shape)
        if c.neighbours:
            sim = top_n_per_row(sim, c.neighbours)
        self.sim = sim.astype(np.float32)
        self.popularity = (freq / max(freq.max(), 1.0)).astype(np.float32)
        return self

    def score(self, histories: Sequences) -> torch.Tensor:
        c = self.config
        recent = histories.truncate(c.history_items)
        # position from the end: 0 for the latest item
        from_end = np.repeat(recent.offsets[1:], recent.lengths) - np.arange(len(recent.items)) - 1
        rows = np.repeat(np.arange(len(recent)), recent.lengths)
        votes = sp.csr_matrix((c.history_decay ** from_end.astype(np.float64), (rows, recent.items)),
                              shape=(len(recent), self.n_items))
        scores = np.asarray((votes @ self.sim).todense(), dtype=np.float32)
        scores += c.popularity_prior * self.popularity
        return torch.from_numpy(scores)

    def state_dict(self) -> dict[str, torch.Tensor]:
        s = self.sim.tocsr()
        return {"sim_indptr": torch.from_numpy(s.indptr.astype(np.int64)),
                "sim_indices": torch.from_numpy(s.indices.astype(np.int64)),
                "sim_data": torch.from_numpy(s.data.astype(np.float32)),
                "popularity": torch.from_numpy(self.popularity)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.sim = sp.csr_matrix((state["sim_data"].numpy(), state["sim_indices"].numpy(),
                                  state["sim_indptr"].numpy()), shape=(self.n_items, self.n_items))
        self.popularity = state["popularity"].numpy()
