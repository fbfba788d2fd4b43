"""What every graph CF model shares: the training user-item edges, (user, positive, negative) batches, BPR and
sampled-softmax losses, and scoring by user index through the shared evaluator.

Graph models learn one vector per training user (row i of the training sequences = user i), so they set
`uses_users` and the evaluator passes each row's user index. A history without a user index (e.g.
`semrec recommend --history`) is folded in: its user vector is the mean of its items' final vectors.
Subclasses implement `build_module` (a `GraphModule`) and may override `loss`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semrec.data.sequences import Sequences
from semrec.data.splits import EvalSet
from semrec.errors import ConfigError
from semrec.models.base import TorchRecommender
from semrec.models.graph.adjacency import interaction_edges, normalized_adjacency, to_csr

LOSSES = ("bpr", "sampled-softmax")


class GraphModule(nn.Module):
    """Holds the training edges as a buffer (saved with the weights) and builds the normalised adjacency once."""

    def __init__(self, n_users: int, n_items: int, n_edges: int):
        super().__init__()
        self.n_users, self.n_items = n_users, n_items
        self.register_buffer("edges", torch.zeros(2, n_edges, dtype=torch.int64))
        self._adj: torch.Tensor | None = None

    def adjacency(self) -> torch.Tensor:
        """The full normalised (n_users + n_items)^2 adjacency (CSR), built on first use after edges are set."""
        if self._adj is None or self._adj.device != self.edges.device:
            self._adj = to_csr(normalized_adjacency(self.edges, self.n_users, self.n_items))
        return self._adj

    def reset_graph(self) -> None:
        self._adj = None

    def train_adjacency(self) -> torch.Tensor:
        """The graph used in training steps (FREEDOM overrides it with a pruned one)."""
        return self.adjacency()

    def forward(self, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n_users, d) user and (n_items, d) item vectors after propagation over `adj`."""
        raise NotImplementedError

    cosine: bool = False  # score by cosine similarity (AlphaRec) instead of the dot product

    def similarity(self, u: torch.Tensor, v: torch.Tensor, rowwise: bool) -> torch.Tensor:
        """Scores of user vectors u (B, d) with item vectors v: row-wise (v is (B, d)) or all pairs ((M, d) -> B x M)."""
        if self.cosine:
            u, v = F.normalize(u, dim=-1), F.normalize(v, dim=-1)
        return (u * v).sum(-1) if rowwise else u @ v.T

    def ego_l2(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Half the squared norm of the batch's layer-0 (free) vectors, for L2 regularisation; 0 when none."""
        return torch.zeros((), device=self.edges.device)


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(s(u, i+) - s(u, i-)), averaged."""
    return -F.logsigmoid(pos - neg).mean()


def sampled_softmax_loss(pos: torch.Tensor, neg: torch.Tensor, pos_items: torch.Tensor, neg_items: torch.Tensor,
                         temperature: float) -> torch.Tensor:
    """Cross-entropy of the positive among itself and M shared negatives (B, M); a negative that is the row's
    positive is masked out."""
    neg = neg.masked_fill(neg_items[None, :] == pos_items[:, None], -math.inf)
    logits = torch.cat([pos[:, None], neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=pos.device))


class GraphRecommender(TorchRecommender):
    """Base of LightGCN, NGCF, FREEDOM, LIRDRec and AlphaRec: edges from `fit`, batches, losses, scoring."""

    uses_users = True
    module: Any

    def __init__(self, n_items: int, config: Any = None, **overrides: Any):
        super().__init__(n_items, config, **overrides)
        cfg = self.config
        if getattr(cfg, "loss", "bpr") not in LOSSES:
            raise ConfigError(f"{self.name}: loss={cfg.loss!r} is not one of {', '.join(LOSSES)}")
        self.n_users = 0
        self._edges: np.ndarray | None = None
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------ graph from the training sequences
    def fit(self, train: Sequences, valid: EvalSet | None = None) -> GraphRecommender:
        """Build the user-item graph from `train` (row i = user i), then run the shared training loop."""
        self.n_users = len(train)
        self._edges = interaction_edges(train, self.n_items)
        if self._edges.shape[1] == 0:
            raise ConfigError(f"{self.name}: the training sequences hold no interactions")
        self.module, self._cache = None, None
        return super().fit(train, valid)

    def build(self, device: str | torch.device = "cpu") -> GraphRecommender:
        super().build(device)
        if self._edges is not None:
            self.module.edges.copy_(torch.from_numpy(self._edges))
            self.module.reset_graph()
        return self

    @property
    def n_edges(self) -> int:
        if self._edges is not None:
            return int(self._edges.shape[1])
        return int(self.module.edges.shape[1]) if self.module is not None else 0

    def extra_state(self) -> dict[str, Any]:
        return {"n_users": self.n_users, "n_edges": self.n_edges}

    @classmethod
    def from_extra(cls, n_items: int, config: Any, extra: dict[str, Any], device: str = "cpu") -> GraphRecommender:
        model = cls(n_items, config)
        model.n_users = int(extra["n_users"])
        model._edges = np.zeros((2, int(extra["n_edges"])), dtype=np.int64)  # shapes only; load_state_dict fills
        model.build(device)
        model._edges = None
        return model

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        if self.module is not None:
            self.module.reset_graph()
        self._cache = None

    # ------------------------------------------------------------------ training
    def num_batches(self, train: Sequences, batch_size: int) -> int:
        return math.ceil(self.n_edges / batch_size)

    def start_epoch(self, rng: np.random.Generator) -> None:
        """Hook run before each epoch's batches (FREEDOM prunes edges, LIRDRec copies attention weights)."""

    def batches(self, train: Sequences, batch_size: int, rng: np.random.Generator
                ) -> Iterator[dict[str, torch.Tensor]]:
        """Every training (user, item) edge once, shuffled; one uniform negative per edge (bpr, resampled while it
        is one of the user's items) or `n_negatives` shared uniform negatives per batch (sampled-softmax)."""
        self.start_epoch(rng)
        edges = self._edges
        n = edges.shape[1]
        keys = edges[0] * self.n_items + edges[1]  # sorted: interaction_edges returns np.unique keys
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            users, pos = edges[0, rows], edges[1, rows]
            batch = {"users": torch.from_numpy(users), "pos": torch.from_numpy(pos)}
            if self.config.loss == "bpr":
                neg = rng.integers(0, self.n_items, len(rows))
                for _ in range(10):
                    k = users * self.n_items + neg
                    hit = keys[np.minimum(np.searchsorted(keys, k), n - 1)] == k
                    if not hit.any():
                        break
                    neg[hit] = rng.integers(0, self.n_items, int(hit.sum()))
                batch["neg"] = torch.from_numpy(neg)
            else:
                batch["neg"] = torch.from_numpy(rng.integers(0, self.n_items, self.config.n_negatives))
            yield batch

    def shared_batch_keys(self) -> frozenset[str]:
        return frozenset() if self.config.loss == "bpr" else frozenset({"neg"})  # softmax: one set per batch

    def ranking_loss(self, u: torch.Tensor, items: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The configured loss for user vectors `u` (B, d) of the batch against item table `items` (n_items, d)."""
        sim = self.module.similarity
        pos = sim(u, items[batch["pos"]], rowwise=True)
        if self.config.loss == "bpr":
            return bpr_loss(pos, sim(u, items[batch["neg"]], rowwise=True))
        neg = sim(u, items[batch["neg"]], rowwise=False)
        return sampled_softmax_loss(pos, neg, batch["pos"], batch["neg"], self.config.temperature)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Ranking loss on the propagated vectors + L2 on the batch's layer-0 vectors (reg_weight, per row)."""
        self._cache = None
        users, items = self.module(self.module.train_adjacency())
        u = users[batch["users"]]
        loss = self.ranking_loss(u, items, batch)
        if self.config.reg_weight:
            loss = loss + self.config.reg_weight * self.module.ego_l2(batch) / len(batch["users"])
        return loss

    # ------------------------------------------------------------------ scoring
    def final_vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(user, item) vectors over the full graph, computed once per weights (cleared by training/loading)."""
        if self._cache is None:
            with torch.inference_mode():
                self._cache = self.module(self.module.adjacency())
        return self._cache

    def score_users(self, histories: Sequences, users: np.ndarray) -> torch.Tensor:
        users = np.asarray(users, dtype=np.int64)
        if users.size and (users.min() < 0 or users.max() >= self.n_users):
            raise ConfigError(f"{self.name}: user index outside the {self.n_users} training users "
                              "(graph models score users of the split they were trained on)")
        u, items = self.final_vectors()
        return self.module.similarity(u[torch.from_numpy(users).to(u.device)], items, rowwise=False)

    def score(self, histories: Sequences) -> torch.Tensor:
        """Fold-in for histories without a user index: the user vector is the mean of the history's items'
        final vectors (an approximation of a trained user vector; empty histories score 0)."""
        _, items = self.final_vectors()
        rows = torch.from_numpy(np.repeat(np.arange(len(histories)), histories.lengths)).to(items.device)
        idx = torch.from_numpy(histories.items).to(items.device)
        u = torch.zeros(len(histories), items.shape[1], device=items.device).index_add_(0, rows, items[idx])
        u = u / torch.from_numpy(np.maximum(histories.lengths, 1)).to(items.device, torch.float32)[:, None]
        return self.module.similarity(u, items, rowwise=False)

    def item_embeddings(self) -> np.ndarray:
        return self.final_vectors()[1].detach().cpu().numpy()
