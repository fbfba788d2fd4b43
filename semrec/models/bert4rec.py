"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional Transformer trained with the Cloze task.

Random items of each training sequence are replaced by a [MASK] token and predicted from both sides
with a full softmax over all items. To recommend, a [MASK] is appended to the history and its
prediction is the next item.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semrec.data.sequences import Sequences
from semrec.errors import ConfigError
from semrec.models.base import TorchRecommender, register
from semrec.models.layers import (PAD, Block, Dropout, attention_mask, check_items, epoch_rows, init_weights,
                                  padded_tokens, positions)
from semrec.training.config import TrainConfig


@dataclass
class BERT4RecConfig:
    """Published Beauty setup (hidden 64, 2 layers, 2 heads, N = 50, mask proportion 0.6, dropout 0.1).

    lr is 1e-3 rather than the paper's 1e-4: the paper trains for far more steps than this loop's budget."""

    hidden: int = 64
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 50
    dropout: float = 0.1
    mask_prob: float = 0.6
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=200, batch_size=256, lr=1e-3,
                                                                   weight_decay=0.0, patience=20))

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_prob < 1.0:
            raise ConfigError(f"bert4rec: mask_prob must be in (0, 1), got {self.mask_prob}")
        if self.max_len < 2 or self.hidden < 1:
            raise ConfigError("bert4rec: max_len must be >= 2 and hidden >= 1")


class BERT4RecModule(nn.Module):
    """tokens (B, L) left-padded (0 = pad, item i = i + 1, n_items + 1 = [MASK]) -> item logits (B, L, n_items)."""

    def __init__(self, n_items: int, cfg: BERT4RecConfig):
        super().__init__()
        self.n_items, self.max_len = n_items, cfg.max_len
        self.mask_token = n_items + 1
        self.item_emb = nn.Embedding(n_items + 2, cfg.hidden, padding_idx=PAD)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.ln_in = nn.LayerNorm(cfg.hidden)
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg.hidden, cfg.n_heads, cfg.dropout, activation="gelu")
                                    for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.hidden)
        # output head of the paper: dense + GELU + LayerNorm, then the shared item table plus a bias
        self.head = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(), nn.LayerNorm(cfg.hidden))
        self.out_bias = nn.Parameter(torch.zeros(n_items))
        init_weights(self)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, d) after the output transform."""
        tokens = tokens[:, -self.max_len:]
        x = self.item_emb(tokens) + self.pos_emb(positions(tokens.shape[1], self.max_len, tokens.device))
        x = self.drop(self.ln_in(x))
        mask = attention_mask(tokens, causal=False)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln_f(x))

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.item_emb.weight[1:self.n_items + 1].T + self.out_bias


@register
class BERT4Rec(TorchRecommender):
    """BERT4Rec; `item_embeddings()` is the shared input/output item table."""

    name = "bert4rec"
    Config = BERT4RecConfig

    def build_module(self) -> nn.Module:
        return BERT4RecModule(self.n_items, self.config)

    def num_batches(self, train: Sequences, batch_size: int) -> int:
        return math.ceil(int((train.lengths >= 1).sum()) / batch_size)

    def batches(self, train: Sequences, batch_size: int, rng: np.random.Generator
                ) -> Iterator[dict[str, torch.Tensor]]:
        """Cloze batches: each real item is masked with probability mask_prob; a row with no mask gets its
        last item masked, which is also exactly the inference situation."""
        check_items(train, self.n_items)
        seqs = train.select(np.flatnonzero(train.lengths >= 1))
        cfg = self.config
        mask_token = self.n_items + 1
        for rows in epoch_rows(len(seqs), batch_size, rng):
            part = seqs.select(rows)
            width = min(cfg.max_len, int(part.lengths.max()))
            tokens = part.to_padded(width, pad=-1, left=True) + 1
            real = tokens != PAD
            masked = real & (rng.random(tokens.shape) < cfg.mask_prob)
            masked[~masked.any(axis=1), -1] = True  # left padding: the last column is the newest item
            inputs = np.where(masked, mask_token, tokens)
            labels = np.where(masked, tokens, PAD)
            yield {"inputs": torch.from_numpy(inputs), "labels": torch.from_numpy(labels)}

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = batch["labels"]
        where = labels != PAD
        h = self.module(batch["inputs"])[where]  # only masked positions pay for the softmax
        return F.cross_entropy(self.module.logits(h), labels[where] - 1)

    dot_product = True  # score = embed_users(h) @ item_embeddings(with_bias=True).T

    def _mask_state(self, histories: Sequences) -> torch.Tensor:
        check_items(histories, self.n_items)
        tokens = padded_tokens(histories, self.config.max_len - 1)  # room for the appended [MASK]
        tokens = np.concatenate([tokens, np.full((len(tokens), 1), self.n_items + 1)], axis=1)
        return self.module(torch.from_numpy(tokens).to(self.device))[:, -1]

    def score_factors(self, histories: Sequences) -> tuple[torch.Tensor, torch.Tensor]:
        """The [MASK] state with a constant 1, against the output table with the item bias as a last column."""
        table = self.module.item_emb.weight[1:self.n_items + 1]
        return (F.pad(self._mask_state(histories), (0, 1), value=1.0),
                torch.cat([table, self.module.out_bias[:, None]], dim=1))

    def embed_users(self, histories: Sequences) -> np.ndarray:
        """(n, hidden + 1): the [MASK] position's output plus a constant 1 that meets the item bias, so
        `embed_users(h) @ item_embeddings(with_bias=True).T` equals the model's scores."""
        return self.batched_vectors(histories, lambda h: self.score_factors(h)[0])

    def item_embeddings(self, with_bias: bool = True) -> np.ndarray:
        """(n_items, hidden + 1) output item table with the per-item bias as the last column; `with_bias=False`:
        the (n_items, hidden) shared input/output table alone (e.g. as CF vectors for semantic IDs)."""
        table = self.module.item_emb.weight[1:self.n_items + 1]
        if with_bias:
            table = torch.cat([table, self.module.out_bias[:, None]], dim=1)
        return table.detach().cpu().numpy()
