"""FREEDOM (Zhou & Shen, "A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal
Recommendation", MM 2023).

Two graphs: a frozen item-item graph (per-modality top-k cosine kNN graphs of the raw features, weighted sum,
built once) smooths the free item vectors, and the user-item graph is denoised during training by
degree-sensitive edge pruning (a fresh sample each epoch, `edge_drop` of the edges removed, edges between
popular nodes more likely). Item vector = LightGCN output + item-graph output; user vector = LightGCN output.
Loss: BPR + reg_weight x (BPR of the user against each modality's projected features). Defaults follow the
paper's released configuration (d=64, 2 user-item layers, 1 item-item layer, k=10, image weight 0.1,
edge drop 0.8, lr 1e-3, batch 2048); `reg_weight` and `edge_drop` are tuned on validation there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from semrec.errors import ConfigError
from semrec.models.base import register
from semrec.models.graph.adjacency import propagate, prune_edges, to_csr
from semrec.models.graph.base import bpr_loss
from semrec.models.graph.multimodal import FeatureModule, MultimodalGraphRecommender
from semrec.training.config import TrainConfig


@dataclass
class FREEDOMConfig:
    features: str = ""  # NAME=PATH,... (e.g. image=img.npy,text=txt.npy); row = item_idx
    dim: int = 64
    n_ui_layers: int = 2
    n_mm_layers: int = 1
    knn_k: int = 10
    image_weight: float = 0.1  # weight of the `image` kNN graph (the other modalities share the rest)
    edge_drop: float = 0.8  # fraction of user-item edges pruned each epoch (0 = off)
    reg_weight: float = 1e-5  # weight of the modality BPR terms
    loss: str = "bpr"  # FREEDOM is defined with BPR
    n_negatives: int = 256
    temperature: float = 0.1
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1000, batch_size=2048, lr=1e-3,
                                                                   patience=20, metric="recall@20"))

    def __post_init__(self) -> None:
        if self.loss != "bpr":
            raise ConfigError("freedom: loss must be bpr (its modality terms are BPR terms)")
        if not 0 <= self.edge_drop < 1 or not 0 <= self.image_weight <= 1 or self.knn_k < 1:
            raise ConfigError("freedom: edge_drop in [0, 1), image_weight in [0, 1], knn_k >= 1")


class FREEDOMModule(FeatureModule):
    def __init__(self, n_users: int, n_items: int, n_edges: int, dims: dict[str, int], cfg: FREEDOMConfig):
        super().__init__(n_users, n_items, n_edges, dims)
        self.cfg = cfg
        self.user_emb = nn.Embedding(n_users, cfg.dim)
        self.item_emb = nn.Embedding(n_items, cfg.dim)
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        self.proj = nn.ModuleDict({n: nn.Linear(d, cfg.dim) for n, d in dims.items()})
        self.pruned: torch.Tensor | None = None

    def train_adjacency(self) -> torch.Tensor:
        return self.pruned if self.pruned is not None else self.adjacency()

    def forward(self, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.item_emb.weight
        graph = self.item_graph(self.cfg.knn_k, self.cfg.image_weight)
        for _ in range(self.cfg.n_mm_layers):
            h = torch.sparse.mm(graph, h)
        x = propagate(adj, torch.cat([self.user_emb.weight, self.item_emb.weight]), self.cfg.n_ui_layers)
        return x[:self.n_users], x[self.n_users:] + h

    def projected(self, name: str) -> torch.Tensor:
        return self.proj[name](self.feature(name))


@register
class FREEDOM(MultimodalGraphRecommender):
    """FREEDOM; needs item features (`features=image=PATH,text=PATH`)."""

    name = "freedom"
    Config = FREEDOMConfig

    def build_module(self) -> nn.Module:
        return FREEDOMModule(self.n_users, self.n_items, self.n_edges, self._dims, self.config)

    def start_epoch(self, rng: np.random.Generator) -> None:
        """Prune the user-item graph afresh (degree-sensitive sampling driven by the loop's rng)."""
        if self.config.edge_drop > 0:
            g = torch.Generator().manual_seed(int(rng.integers(2**62)))
            self.module.pruned = to_csr(prune_edges(self.module.edges, self.n_users, self.n_items,
                                                    self.config.edge_drop, g))

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self._cache = None
        users, items = self.module(self.module.train_adjacency())
        u = users[batch["users"]]
        loss = self.ranking_loss(u, items, batch)
        if self.config.reg_weight:
            for name in self.module.modalities:
                f = self.module.projected(name)
                loss = loss + self.config.reg_weight * bpr_loss((u * f[batch["pos"]]).sum(-1),
                                                                (u * f[batch["neg"]]).sum(-1))
        return loss
