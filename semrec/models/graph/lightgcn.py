"""LightGCN (He et al., SIGIR 2020): free user and item vectors smoothed over the user-item graph.

e^(k+1) = L e^(k) with L = D^-1/2 A D^-1/2 (no weights, no non-linearity); the final vector of a node is the
mean of its layers 0..K and a score is the dot product. Defaults follow the paper (d=64, 3 layers, lr 1e-3,
batch 2048, L2 1e-4 on the batch's layer-0 vectors, BPR with one negative per edge).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from semrec.errors import ConfigError
from semrec.models.base import register
from semrec.models.graph.adjacency import propagate
from semrec.models.graph.base import GraphModule, GraphRecommender
from semrec.training.config import TrainConfig


@dataclass
class LightGCNConfig:
    dim: int = 64
    n_layers: int = 3
    loss: str = "bpr"  # bpr | sampled-softmax
    n_negatives: int = 256  # sampled-softmax: uniform negatives shared by a batch
    temperature: float = 0.1  # sampled-softmax logits are scores / temperature
    reg_weight: float = 1e-4  # L2 on the batch's layer-0 user/item vectors, per row
    init_std: float = 0.1  # normal init of the embedding tables (the paper's code)
    init: str = "normal"  # normal (std init_std) | xavier (uniform, RecBole's: far smaller for large tables)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=300, batch_size=2048, lr=1e-3,
                                                                   patience=10, eval_every=1))

    def __post_init__(self) -> None:
        if self.dim < 1 or self.n_layers < 0 or self.n_negatives < 1 or self.temperature <= 0:
            raise ConfigError("lightgcn: dim, n_negatives >= 1, n_layers >= 0, temperature > 0")
        if self.init not in ("normal", "xavier"):
            raise ConfigError(f"lightgcn: init={self.init!r} is not one of normal, xavier")


class LightGCNModule(GraphModule):
    def __init__(self, n_users: int, n_items: int, n_edges: int, cfg: LightGCNConfig):
        super().__init__(n_users, n_items, n_edges)
        self.n_layers = cfg.n_layers
        self.user_emb = nn.Embedding(n_users, cfg.dim)
        self.item_emb = nn.Embedding(n_items, cfg.dim)
        for table in (self.user_emb, self.item_emb):
            if cfg.init == "xavier":
                nn.init.xavier_uniform_(table.weight)
            else:
                nn.init.normal_(table.weight, std=cfg.init_std)

    def forward(self, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = propagate(adj, torch.cat([self.user_emb.weight, self.item_emb.weight]), self.n_layers)
        return x[:self.n_users], x[self.n_users:]

    def ego_l2(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return 0.5 * (self.user_emb(batch["users"]).pow(2).sum() + self.item_emb(batch["pos"]).pow(2).sum()
                      + self.item_emb(batch["neg"]).pow(2).sum())


@register
class LightGCN(GraphRecommender):
    """LightGCN; `recommend(histories, users=...)` scores training users, histories alone are folded in."""

    name = "lightgcn"
    Config = LightGCNConfig

    def build_module(self) -> nn.Module:
        return LightGCNModule(self.n_users, self.n_items, self.n_edges, self.config)
