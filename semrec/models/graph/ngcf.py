"""NGCF (Wang et al., SIGIR 2019): graph convolution with feature transforms and an affinity term.

Layer k: e^(k+1) = LeakyReLU(W1 (L + I) e^(k) + W2 ((L e^(k)) * e^(k))), message dropout, L2-normalised; the
final vector concatenates layers 0..K. Defaults follow RecBole 1.2.1 (d=64, three 64-d layers, message
dropout 0.1, L2 1e-5, lr 1e-3, batch 2048, BPR).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from semrec.errors import ConfigError
from semrec.models.base import register
from semrec.models.graph.adjacency import symmetric_mm
from semrec.models.graph.base import GraphModule, GraphRecommender
from semrec.models.layers import Dropout
from semrec.training.config import TrainConfig


@dataclass
class NGCFConfig:
    dim: int = 64
    hidden: tuple[int, ...] = (64, 64, 64)  # output size of each propagation layer
    message_dropout: float = 0.1
    loss: str = "bpr"  # bpr | sampled-softmax
    n_negatives: int = 256
    temperature: float = 0.1
    reg_weight: float = 1e-5
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=300, batch_size=2048, lr=1e-3,
                                                                   patience=10))

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.dim < 1 or any(h < 1 for h in self.hidden) or not 0 <= self.message_dropout < 1:
            raise ConfigError("ngcf: dim and hidden sizes must be >= 1, message_dropout in [0, 1)")


class NGCFModule(GraphModule):
    def __init__(self, n_users: int, n_items: int, n_edges: int, cfg: NGCFConfig):
        super().__init__(n_users, n_items, n_edges)
        self.user_emb = nn.Embedding(n_users, cfg.dim)
        self.item_emb = nn.Embedding(n_items, cfg.dim)
        sizes = (cfg.dim, *cfg.hidden)
        self.w1 = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.w2 = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.drop = Dropout(cfg.message_dropout)
        for m in (self.user_emb, self.item_emb, *self.w1, *self.w2):
            nn.init.xavier_uniform_(m.weight)

    def forward(self, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([self.user_emb.weight, self.item_emb.weight])
        layers = [x]
        for w1, w2 in zip(self.w1, self.w2):
            side = symmetric_mm(adj, x)
            x = F.leaky_relu(w1(side + x) + w2(side * x), negative_slope=0.2)
            x = F.normalize(self.drop(x), dim=1)
            layers.append(x)
        out = torch.cat(layers, dim=1)
        return out[:self.n_users], out[self.n_users:]

    def ego_l2(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return 0.5 * (self.user_emb(batch["users"]).pow(2).sum() + self.item_emb(batch["pos"]).pow(2).sum()
                      + self.item_emb(batch["neg"]).pow(2).sum())


@register
class NGCF(GraphRecommender):
    """NGCF; scored like LightGCN (training users by index, other histories folded in)."""

    name = "ngcf"
    Config = NGCFConfig

    def build_module(self) -> nn.Module:
        return NGCFModule(self.n_users, self.n_items, self.n_edges, self.config)
