"""GRU4Rec (Hidasi et al., ICLR 2016) as used for next-item recommendation on user sequences.

Item embeddings feed a GRU; each output is projected back to the embedding space and scored against
the (shared) item table. Trained with full-softmax cross-entropy on every position of each sequence
at once (the strongest GRU4Rec loss in later studies); sequences are right-padded, so padding never
enters the recurrent state of a real position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch import nn

from semrec.data.sequences import Sequences
from semrec.errors import ConfigError
from semrec.models.base import TorchRecommender, register
from semrec.models.layers import (PAD, Dropout, check_items, epoch_rows, init_weights, next_item_loss, next_item_pairs,
                                  padded_tokens)
from semrec.training.config import TrainConfig


@dataclass
class GRU4RecConfig:
    """Embedding 64, one GRU layer of 128 units, dropout 0.3 (the common RecBole setup), max length 50."""

    embedding: int = 64
    hidden: int = 128
    n_layers: int = 1
    dropout: float = 0.3
    max_len: int = 50
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=200, batch_size=256, lr=1e-3,
                                                                   patience=10))

    def __post_init__(self) -> None:
        if min(self.embedding, self.hidden, self.n_layers, self.max_len) < 1:
            raise ConfigError("gru4rec: embedding, hidden, n_layers and max_len must be >= 1")


class GRU4RecModule(nn.Module):
    """tokens (B, L) right-padded (0 = pad, item i = i + 1) -> outputs (B, L, embedding)."""

    def __init__(self, n_items: int, cfg: GRU4RecConfig):
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 1, cfg.embedding, padding_idx=PAD)
        self.drop = Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.embedding, cfg.hidden, num_layers=cfg.n_layers, batch_first=True)
        self.proj = nn.Linear(cfg.hidden, cfg.embedding)
        init_weights(self)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.drop(self.item_emb(tokens)))
        return self.proj(out)


@register
class GRU4Rec(TorchRecommender):
    """GRU4Rec with CE over all positions; `item_embeddings()` is the shared input/output item table."""

    name = "gru4rec"
    Config = GRU4RecConfig

    def build_module(self) -> nn.Module:
        return GRU4RecModule(self.n_items, self.config)

    def num_batches(self, train: Sequences, batch_size: int) -> int:
        return math.ceil(int((train.lengths >= 2).sum()) / batch_size)

    def batches(self, train: Sequences, batch_size: int, rng: np.random.Generator
                ) -> Iterator[dict[str, torch.Tensor]]:
        check_items(train, self.n_items)
        seqs = train.select(np.flatnonzero(train.lengths >= 2))
        for rows in epoch_rows(len(seqs), batch_size, rng):
            inputs, targets = next_item_pairs(seqs.select(rows), self.config.max_len, left=False)
            yield {"inputs": torch.from_numpy(inputs), "targets": torch.from_numpy(targets)}

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return next_item_loss(self.module(batch["inputs"]), batch["targets"], self.module.item_emb.weight, "ce")

    dot_product = True  # score = embed_users(h) @ item_embeddings().T

    def _user_state(self, histories: Sequences) -> torch.Tensor:
        check_items(histories, self.n_items)
        tokens = torch.from_numpy(padded_tokens(histories, self.config.max_len, left=False)).to(self.device)
        out = self.module(tokens)
        kept = np.minimum(histories.lengths, self.config.max_len)
        last = torch.from_numpy(np.maximum(kept - 1, 0)).to(self.device)
        return out[torch.arange(len(last), device=self.device), last]

    def score_factors(self, histories: Sequences) -> tuple[torch.Tensor, torch.Tensor]:
        return self._user_state(histories), self.module.item_emb.weight[1:]

    def embed_users(self, histories: Sequences) -> np.ndarray:
        """(n, embedding) projected GRU output after the last item: the vector scored against the item table."""
        return self.batched_vectors(histories, self._user_state)

    def item_embeddings(self) -> np.ndarray:
        return self.module.item_emb.weight[1:].detach().cpu().numpy()
