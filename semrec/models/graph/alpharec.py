"""AlphaRec-style language CF (Sheng et al., "Language Representations Can be What Recommenders Need", 2025).

Item vectors are an MLP of frozen language embeddings (no item-ID table); a user's input is the mean language
embedding of their training items through the same MLP; LightGCN propagation (mean of layers) smooths both,
and scores are cosine similarities trained with an InfoNCE (sampled-softmax) loss at temperature 0.15.
Everything is a function of text, so it ranks items nobody interacted with and transfers zero-shot to a new
catalogue (`zero_shot`): there an item vector is the MLP of its embedding and a user the MLP of their
history's mean embedding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semrec.data.sequences import Sequences
from semrec.errors import ConfigError
from semrec.models.base import register
from semrec.models.graph.adjacency import propagate
from semrec.models.graph.multimodal import (
    FeatureModule,
    MultimodalGraphRecommender,
    mlp,
)
from semrec.training.config import TrainConfig


@dataclass
class AlphaRecConfig:
    features: str = ""  # NAME=PATH,...: language embeddings (several are concatenated), row = item_idx
    dim: int = 64
    hidden: int = 512  # MLP hidden size
    n_layers: int = 2
    loss: str = "sampled-softmax"  # InfoNCE over n_negatives shared negatives (bpr also allowed)
    n_negatives: int = 256
    temperature: float = 0.15
    reg_weight: float = 0.0
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=500, batch_size=4096, lr=5e-4,
                                                                   patience=20, metric="recall@20"))

    def __post_init__(self) -> None:
        if self.dim < 1 or self.hidden < 1 or self.n_layers < 0 or self.temperature <= 0:
            raise ConfigError("alpharec: dim, hidden >= 1, n_layers >= 0, temperature > 0")


class AlphaRecModule(FeatureModule):
    cosine = True

    def __init__(self, n_users: int, n_items: int, n_edges: int, dims: dict[str, int], cfg: AlphaRecConfig):
        super().__init__(n_users, n_items, n_edges, dims)
        self.n_layers = cfg.n_layers
        self.mlp = mlp(sum(dims.values()), cfg.dim, cfg.hidden)
        self._user_lang: torch.Tensor | None = None

    def language(self) -> torch.Tensor:
        return torch.cat([self.feature(n) for n in self.modalities], dim=1)

    def reset_graph(self) -> None:
        super().reset_graph()
        self._user_lang = None

    def user_language(self) -> torch.Tensor:
        """(n_users, D): mean language embedding of each user's training items (from the edges)."""
        if self._user_lang is None:
            u, i = self.edges
            deg = torch.zeros(self.n_users, device=u.device).index_add_(0, u, torch.ones_like(u, dtype=torch.float32))
            lang = self.language()
            self._user_lang = torch.zeros(self.n_users, lang.shape[1], device=u.device).index_add_(
                0, u, lang[i]) / deg.clamp_min(1)[:, None]
        return self._user_lang

    def forward(self, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = propagate(adj, torch.cat([self.mlp(self.user_language()), self.mlp(self.language())]), self.n_layers)
        return x[:self.n_users], x[self.n_users:]


@register
class AlphaRec(MultimodalGraphRecommender):
    """AlphaRec; needs language embeddings (`features=text=PATH`)."""

    name = "alpharec"
    Config = AlphaRecConfig

    def build_module(self) -> nn.Module:
        return AlphaRecModule(self.n_users, self.n_items, self.n_edges, self._dims, self.config)

    def score(self, histories: Sequences) -> torch.Tensor:
        """Histories without a user index: the user is the MLP of the history's mean language embedding (the
        model's own user input, no propagation); items are the trained (propagated) item vectors."""
        _, items = self.final_vectors()
        lang = self.module.language()
        rows = torch.from_numpy(np.repeat(np.arange(len(histories)), histories.lengths)).to(lang.device)
        idx = torch.from_numpy(histories.items).to(lang.device)
        mean = torch.zeros(len(histories), lang.shape[1], device=lang.device).index_add_(0, rows, lang[idx])
        mean = mean / torch.from_numpy(np.maximum(histories.lengths, 1)).to(lang.device, torch.float32)[:, None]
        return F.normalize(self.module.mlp(mean), dim=-1) @ F.normalize(items, dim=-1).T

    def zero_shot(self, features: dict[str, np.ndarray]) -> AlphaRec:
        """This trained model on another catalogue (same modalities and dims, row = the new item_idx), with no
        interactions there: items = MLP(language), users folded in from their histories (`recommend(h)`)."""
        n_items = {len(v) for v in features.values()}
        if len(n_items) != 1 or {k: int(v.shape[1]) for k, v in features.items()} != self._dims:
            raise ConfigError(f"zero_shot needs the trained modalities {self._dims} with one row count, "
                              f"got {[(k, v.shape) for k, v in features.items()]}")
        other = AlphaRec(n_items.pop(), self.config)
        other.with_features(features)
        other.n_users, other._edges = 0, np.zeros((2, 0), dtype=np.int64)
        other.build(self.device)
        other.module.mlp.load_state_dict(self.module.mlp.state_dict())
        other.module.eval()
        return other
