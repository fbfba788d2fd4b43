"""A tiny TorchRecommender for training-loop tests: next item from the last item (bigram), full softmax.

Kept here so the loop's tests do not depend on the real sequence models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from semrec.data.sequences import Sequences
from semrec.models.base import TorchRecommender, register
from semrec.training import TrainConfig


@dataclass
class TinyConfig:
    dim: int = 16
    dropout: float = 0.1  # exercises the torch RNG, which resume must restore
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=4, batch_size=512, lr=0.01,
                                                                   progress=False))


class _Net(nn.Module):
    def __init__(self, n_items: int, dim: int, dropout: float):
        super().__init__()
        self.emb = nn.Embedding(n_items, dim)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(dim, n_items)

    def forward(self, prev: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(self.emb(prev)))


@register
class TinyBigram(TorchRecommender):
    name = "tiny-bigram"
    Config = TinyConfig

    def build_module(self) -> nn.Module:
        return _Net(self.n_items, self.config.dim, self.config.dropout)

    def batches(self, train: Sequences, batch_size: int, rng: np.random.Generator):
        # every (item, next item) pair inside a sequence, shuffled
        nxt = np.ones(len(train.items), dtype=bool)
        nxt[train.offsets[:-1][train.lengths > 0]] = False
        pos = np.flatnonzero(nxt)
        pos = pos[rng.permutation(len(pos))]
        for s in range(0, len(pos), batch_size):
            p = pos[s:s + batch_size]
            yield {"prev": torch.from_numpy(train.items[p - 1]), "next": torch.from_numpy(train.items[p])}

    def num_batches(self, train: Sequences, batch_size: int) -> int:
        return -(-int((train.lengths - 1).clip(0).sum()) // batch_size)

    def loss(self, batch):
        return nn.functional.cross_entropy(self.module(batch["prev"]), batch["next"])

    def score(self, histories: Sequences) -> torch.Tensor:
        last = torch.from_numpy(histories.last(1)).to(self.device)
        return self.module(last)

    def item_embeddings(self) -> np.ndarray:
        return self.module.emb.weight.detach().cpu().numpy()
