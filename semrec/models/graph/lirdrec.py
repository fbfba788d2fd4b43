"""LIRDRec (Zhou et al., "Learning Item Representations Directly from Multimodal Features for Effective
Recommendation"): no free item-ID table; every item vector is computed from its features.

- Modality encoders: per modality m, item vector MLP_m(x_m) (Linear -> LeakyReLU -> Linear, hidden 4d); each
  user has one free preference vector per branch.
- Multimodal transformation: one more branch encodes the orthonormal DCT-II spectra of all modalities,
  concatenated, so the model also sees the modalities jointly in the frequency domain.
- Each branch's [user prefs; item vectors] is L2-normalised, the branches are concatenated and propagated over
  the user-item graph (sum of layers 0..K), and items are further smoothed over the frozen item-item kNN graph.
- Progressive weight copying (PWC) fuses a user's branches: attention = softmax(w1 * a(u) + w2 * theta_u),
  with a(u) small per-branch MLPs and theta_u copied from the previous epoch's attention; w1 decays each epoch.
Score = fused user vector . item vector. Loss: BPR + reg_weight (mean squared user and item vectors).
Because items come from features, an item with features and no interactions is scored (cold start).
Defaults follow the released configuration (d=64, 2 user-item layers, 1 item-item layer, k=10, image weight
0.1, decay base 0.9, w1 0.9, lr 1e-4); n_ui_layers, reg_weight, lr are tuned on validation there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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
class LIRDRecConfig:
    features: str = ""  # NAME=PATH,... (e.g. image=img.npy,text=txt.npy); row = item_idx
    dim: int = 64
    n_ui_layers: int = 2
    n_mm_layers: int = 1
    knn_k: int = 10
    image_weight: float = 0.1
    spectral_branch: bool = True  # the DCT multimodal-transformation branch
    decay_base: float = 0.9  # PWC: w1 <- w1 * base^epoch, renormalised with w2
    decay_weight: float = 0.9  # PWC: initial w1 (weight of the attention network vs the copied weights)
    reg_weight: float = 1e-4
    loss: str = "bpr"  # bpr | sampled-softmax
    n_negatives: int = 256
    temperature: float = 0.1
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1000, batch_size=2048, lr=1e-4,
                                                                   patience=20, metric="recall@20"))

    def __post_init__(self) -> None:
        if not 0 < self.decay_base <= 1 or not 0 <= self.decay_weight <= 1 or self.dim < 4 or self.knn_k < 1:
            raise ConfigError("lirdrec: decay_base in (0, 1], decay_weight in [0, 1], dim >= 4, knn_k >= 1")


def dct_matrix(n: int) -> torch.Tensor:
    """(n, n) orthonormal DCT-II matrix C: dct(x) = x @ C.T (what torch_dct.dct(x, norm='ortho') computes)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    j = torch.arange(n, dtype=torch.float64)[None, :]
    c = torch.cos(math.pi * (2 * j + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c.float()


class PWC(nn.Module):
    """Progressive weight copying: per-user branch attention mixing an attention network with copied weights."""

    def __init__(self, n_users: int, n_branches: int, dim: int, w1: float):
        super().__init__()
        self.att = nn.ModuleList(nn.Sequential(nn.Linear(dim, max(dim // 4, 1)), nn.LeakyReLU(),
                                               nn.Linear(max(dim // 4, 1), 1)) for _ in range(n_branches))
        self.theta = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_users, n_branches)))
        self.register_buffer("w", torch.tensor([w1, 1.0 - w1]))
        self.register_buffer("epoch", torch.zeros((), dtype=torch.int64))  # saved, so a resumed run continues
        self.last: torch.Tensor | None = None

    def copy_weights(self, base: float) -> None:
        """Start of an epoch: decay w1 by base^epoch (renormalised) and copy the last attention into theta."""
        self.epoch += 1
        w1 = self.w[0] * base ** int(self.epoch)
        self.w.copy_(torch.stack([w1, self.w[1]]) / (w1 + self.w[1]))
        if self.last is not None:
            self.theta.data.copy_(self.last)

    def forward(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        a = torch.cat([net(b) for net, b in zip(self.att, blocks)], dim=1)
        att = F.softmax(self.w[0] * a + self.w[1] * self.theta, dim=1)
        if self.training:
            self.last = att.detach()
        return torch.cat([att[:, j:j + 1] * b for j, b in enumerate(blocks)], dim=1)


class LIRDRecModule(FeatureModule):
    def __init__(self, n_users: int, n_items: int, n_edges: int, dims: dict[str, int], cfg: LIRDRecConfig):
        super().__init__(n_users, n_items, n_edges, dims)
        self.cfg = cfg
        d = cfg.dim
        self.encoders = nn.ModuleDict({n: mlp(k, d, 4 * d) for n, k in dims.items()})
        branches = list(dims) + (["spectral"] if cfg.spectral_branch else [])
        self.branches = branches
        self.prefs = nn.ParameterDict({b: nn.Parameter(nn.init.xavier_normal_(torch.empty(n_users, d)))
                                       for b in branches})
        if cfg.spectral_branch:
            self.spectral = mlp(sum(dims.values()), d, 4 * d)
            for n, k in dims.items():
                self.register_buffer(f"dct_{n}", dct_matrix(k), persistent=False)
        self.pwc = PWC(n_users, len(branches), d, cfg.decay_weight)
        self._spectrum: torch.Tensor | None = None

    def item_inputs(self) -> list[torch.Tensor]:
        """Per-branch item vectors computed from the features (the model has no item-ID table)."""
        out = [self.encoders[n](self.feature(n)) for n in self.modalities]
        if self.cfg.spectral_branch:
            out.append(self.spectral(self.spectrum()))
        return out

    def spectrum(self) -> torch.Tensor:
        """The DCT-II spectra of all modalities, concatenated; the features are frozen, so computed once."""
        if self._spectrum is None or self._spectrum.device != self.edges.device:
            with torch.inference_mode(False), torch.no_grad():  # a normal tensor even if first made in scoring
                self._spectrum = torch.cat([self.feature(n) @ getattr(self, f"dct_{n}").T for n in self.modalities],
                                           dim=1)
        return self._spectrum

    def reset_graph(self) -> None:
        super().reset_graph()
        self._spectrum = None

    def forward(self, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([F.normalize(torch.cat([self.prefs[b], it]), dim=1)
                       for b, it in zip(self.branches, self.item_inputs())], dim=1)
        rep = propagate(adj, x, self.cfg.n_ui_layers, reduce="sum")
        users, items = rep[:self.n_users], rep[self.n_users:]
        d = self.cfg.dim
        users = self.pwc([users[:, j * d:(j + 1) * d] for j in range(len(self.branches))])
        h = items
        graph = self.item_graph(self.cfg.knn_k, self.cfg.image_weight)
        for _ in range(self.cfg.n_mm_layers):
            h = torch.sparse.mm(graph, h)
        return users, items + h


@register
class LIRDRec(MultimodalGraphRecommender):
    """LIRDRec; needs item features (`features=image=PATH,text=PATH`, any number of modalities)."""

    name = "lirdrec"
    Config = LIRDRecConfig

    def build_module(self) -> nn.Module:
        return LIRDRecModule(self.n_users, self.n_items, self.n_edges, self._dims, self.config)

    def start_epoch(self, rng: np.random.Generator) -> None:
        self.module.pwc.copy_weights(self.config.decay_base)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self._cache = None
        users, items = self.module(self.module.train_adjacency())
        loss = self.ranking_loss(users[batch["users"]], items, batch)
        return loss + self.config.reg_weight * (users.pow(2).mean() + items.pow(2).mean())
