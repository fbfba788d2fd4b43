"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item sequence.

Item + learned positional embeddings, `n_layers` causal Transformer blocks, and the item embedding table
reused as the output layer. Trained on every position of each sequence at once (position t predicts
item t + 1) with a selectable loss: `bce` (one sampled negative per position, as published),
`sampled-softmax` (`n_negatives` shared uniform negatives) or `ce` (full softmax over all items, the
variant that makes SASRec stronger than most generative recommenders).
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
from semrec.models.layers import (LOSSES, PAD, Block, Dropout, attention_mask, check_items, epoch_rows, init_weights,
                                  next_item_loss, next_item_pairs, padded_tokens, positions, prefix_rows,
                                  sample_negatives)
from semrec.training.config import TrainConfig


@dataclass
class SASRecConfig:
    """Published SASRec setup for the sparse Amazon sets (Kang & McAuley: lr 1e-3, batch 128, dropout 0.5,
    2 blocks, 1 head, max length 50; d=64 as in the TIGER comparison)."""

    hidden: int = 64
    n_layers: int = 2
    n_heads: int = 1
    max_len: int = 50
    dropout: float = 0.5
    loss: str = "bce"  # bce (published) | sampled-softmax | ce
    n_negatives: int = 256  # sampled-softmax only: uniform negatives shared by a batch
    inner: int | None = None  # feed-forward width; None = hidden (the published SASRec; RecBole uses 4 x hidden)
    ce_chunk: int = 0  # ce only: > 0 = full softmax CE computed this many rows at a time with fused gradients
    #                   (the same loss; the logits of a whole batch are never materialised)
    precision: str = "fp32"  # fp32 | bf16: training forward under bf16 autocast and (with ce_chunk) bf16 CE
    #                           matmuls; scoring is always float32
    train_rows: str = "sequence"  # sequence: one row per user, every position predicts the next item |
    #                               prefix: one row per (prefix, next item), loss on its last position (RecBole)
    length_pool: int = 0  # 0 = uniformly random batches; N = rows of similar length share a batch, sorted
    #                       within random pools of N batches (less padding per epoch, same rows)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=200, batch_size=128, lr=1e-3,
                                                                   patience=20))

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"sasrec: loss={self.loss!r} is not one of {', '.join(LOSSES)}")
        if self.max_len < 1 or self.hidden < 1 or self.n_layers < 0 or self.n_negatives < 1:
            raise ConfigError("sasrec: max_len, hidden and n_negatives must be >= 1, n_layers >= 0")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"sasrec: precision={self.precision!r}; choose fp32 or bf16")
        if self.train_rows not in ("sequence", "prefix"):
            raise ConfigError(f"sasrec: train_rows={self.train_rows!r}; choose sequence or prefix")
        if self.ce_chunk < 0 or self.length_pool < 0:
            raise ConfigError("sasrec: ce_chunk and length_pool must be >= 0 (0 = off)")
        if self.inner is not None and self.inner < 1:
            raise ConfigError(f"sasrec: inner (feed-forward width) must be >= 1 or null, got {self.inner}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"sasrec: dropout must be in [0, 1), got {self.dropout}")


class SASRecModule(nn.Module):
    """The network: tokens (B, L) left-padded (0 = pad, item i = token i+1) -> hidden states (B, L, d)."""

    def __init__(self, n_items: int, cfg: SASRecConfig):
        super().__init__()
        self.n_items, self.max_len, self.hidden = n_items, cfg.max_len, cfg.hidden
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=PAD)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg.hidden, cfg.n_heads, cfg.dropout, activation="relu", inner=cfg.inner)
                                    for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.hidden)
        init_weights(self)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens[:, -self.max_len:]
        real = (tokens != PAD)[..., None]
        x = self.item_emb(tokens) * math.sqrt(self.hidden)
        x = self.drop(x + self.pos_emb(positions(tokens.shape[1], self.max_len, tokens.device))) * real
        mask = attention_mask(tokens, causal=True)
        for block in self.blocks:
            x = block(x, mask) * real
        return self.ln_f(x)

    def score_last(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, n_items) scores of every item as the next one after each left-padded history."""
        return self(tokens)[:, -1] @ self.item_emb.weight[1:].T


@register
class SASRec(TorchRecommender):
    """SASRec with a selectable loss; `item_embeddings()` is the trained (shared input/output) item table."""

    name = "sasrec"
    Config = SASRecConfig

    def build_module(self) -> nn.Module:
        return SASRecModule(self.n_items, self.config)

    def _trainable(self, train: Sequences) -> Sequences:
        seqs = train.select(np.flatnonzero(train.lengths >= 2))
        return prefix_rows(seqs, self.config.max_len + 1) if self.config.train_rows == "prefix" else seqs

    def num_batches(self, train: Sequences, batch_size: int) -> int:
        long = train.lengths >= 2
        rows = int((train.lengths[long] - 1).sum()) if self.config.train_rows == "prefix" else int(long.sum())
        return math.ceil(rows / batch_size)

    def batches(self, train: Sequences, batch_size: int, rng: np.random.Generator
                ) -> Iterator[dict[str, torch.Tensor]]:
        """Whole sequences (last max_len + 1 items), shuffled; negatives drawn here from `rng`."""
        check_items(train, self.n_items)
        seqs = self._trainable(train)
        cfg = self.config
        for rows in epoch_rows(len(seqs), batch_size, rng, seqs.lengths, cfg.length_pool):
            inputs, targets = next_item_pairs(seqs.select(rows), cfg.max_len)
            if cfg.train_rows == "prefix":
                targets[:, :-1] = PAD
            batch = {"inputs": torch.from_numpy(inputs), "targets": torch.from_numpy(targets)}
            if cfg.loss == "bce":
                seen = np.concatenate([inputs, targets[:, -1:]], axis=1)
                batch["negatives"] = torch.from_numpy(sample_negatives(rng, targets.shape, self.n_items, seen))
            elif cfg.loss == "sampled-softmax":
                batch["negatives"] = torch.from_numpy(sample_negatives(rng, (cfg.n_negatives,), self.n_items))
            yield batch

    def shared_batch_keys(self) -> frozenset[str]:
        return frozenset({"negatives"}) if self.config.loss == "sampled-softmax" else frozenset()

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        bf16 = self.config.precision == "bf16"
        with torch.autocast(batch["inputs"].device.type, dtype=torch.bfloat16, enabled=bf16):
            hidden = self.module(batch["inputs"])
        return next_item_loss(hidden.float(), batch["targets"], self.module.item_emb.weight, self.config.loss,
                              batch.get("negatives"), ce_chunk=self.config.ce_chunk,
                              ce_dtype=torch.bfloat16 if bf16 else None)

    dot_product = True  # score = embed_users(h) @ item_embeddings().T

    def _user_state(self, histories: Sequences) -> torch.Tensor:
        check_items(histories, self.n_items)
        tokens = torch.from_numpy(padded_tokens(histories, self.config.max_len)).to(self.device)
        return self.module(tokens)[:, -1]

    def score_factors(self, histories: Sequences) -> tuple[torch.Tensor, torch.Tensor]:
        return self._user_state(histories), self.module.item_emb.weight[1:]

    def embed_users(self, histories: Sequences) -> np.ndarray:
        """(n, hidden) last-position state: the vector the model scores every item against."""
        return self.batched_vectors(histories, self._user_state)

    def item_embeddings(self) -> np.ndarray:
        return self.module.item_emb.weight[1:].detach().cpu().numpy()
