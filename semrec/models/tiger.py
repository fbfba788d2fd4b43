"""TIGER (Rajput et al., NeurIPS 2023): an encoder-decoder Transformer that generates the next item's semantic ID.

The encoder reads the user's last `max_history` items, the decoder emits the next item's codes level by
level, and a catalogue trie constrains decoding so every output is a real item. On CPU the encoder by default
reads one vector per history item (the sum of its code-token embeddings) instead of one token per code,
which cuts encoder cost by the number of levels. Items can be added or removed after training (`add_items`,
`remove_items`); `reserve_new` keeps a share of the top-k for items never seen in training (cold start).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semrec.data.sequences import Sequences
from semrec.data.splits import EvalSet
from semrec.errors import ConfigError
from semrec.models.base import TorchRecommender, register
from semrec.models.tiger_generate import GenerativeMixin, check_unseen_last_code
from semrec.models.tiger_layers import (Block, CodeTokens, KVCache, bucketed_batches, item_codes, next_item_pairs,
                                        trim_left)
from semrec.models.layers import Dropout
from semrec.training.config import TrainConfig


@dataclass
class TigerConfig:
    """Defaults follow the TIGER paper (4+4 layers, d_model 128, 6 heads of 64, d_ff 1024, dropout 0.1, 20 items);
    training options (AdamW, warm-up, cosine decay, early stopping on validation) live in `train`."""

    codes_path: str | None = None  # (n_items, n_levels) int64 code table aligned with item_idx (.npy/.safetensors/.parquet)
    encoder_layers: int = 4
    decoder_layers: int = 4
    d_model: int = 128
    n_heads: int = 6
    d_head: int = 64
    d_ff: int = 1024
    dropout: float = 0.1
    max_history: int = 20
    user_buckets: int = 0  # TIGER's hashed user token uses 2,000; 0 = off (recommend() sees histories only)
    encoder_input: str = "auto"  # "item": one vector per history item, "token": one per code; auto = item on CPU
    beam: int = 20
    decode_batch: int = 256  # users per beam-search batch
    reserve_new: float = 0.0  # share of the top-k reserved for items unseen in training (cold start)
    unseen_last_code: str = "model"  # or "siblings": unseen items' last code scores as their trained siblings' mean
    device: str = "cpu"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=30, batch_size=256, lr=2e-3, weight_decay=0.05, optimizer="adamw", max_grad_norm=1.0,
        warmup_steps=500, lr_schedule="cosine", patience=5, eval_every=3))

    def __post_init__(self) -> None:
        if min(self.encoder_layers, self.decoder_layers, self.d_model, self.n_heads, self.d_head, self.d_ff,
               self.max_history) < 1:
            raise ConfigError("tiger: layers, sizes and max_history must be >= 1")
        if self.encoder_input not in ("auto", "item", "token"):
            raise ConfigError(f"tiger: encoder_input must be auto, item or token (got {self.encoder_input!r})")
        check_unseen_last_code("tiger", self.unseen_last_code)


class TigerNet(nn.Module):
    """The encoder-decoder network; token ids come from `CodeTokens`."""

    def __init__(self, cfg: TigerConfig, vocab_sizes: list[int], item_input: bool):
        super().__init__()
        self.cfg, self.vocab, self.item_input = cfg, CodeTokens(vocab_sizes), item_input
        n_levels, d = len(vocab_sizes), cfg.d_model
        self.n_levels = n_levels
        enc_len = cfg.max_history * (1 if item_input else n_levels) + 1  # + user token
        self.emb = nn.Embedding(self.vocab.n_tokens, d, padding_idx=0)
        self.level_emb = nn.Embedding(n_levels, d)
        self.enc_pos = nn.Embedding(enc_len, d)
        self.dec_pos = nn.Embedding(n_levels, d)
        self.user_emb = nn.Embedding(cfg.user_buckets + 1, d)
        block = lambda cross: Block(d, cfg.n_heads, cfg.d_head, cfg.d_ff, cfg.dropout, cross)  # noqa: E731
        self.encoder = nn.ModuleList([block(False) for _ in range(cfg.encoder_layers)])
        self.decoder = nn.ModuleList([block(True) for _ in range(cfg.decoder_layers)])
        self.enc_ln, self.dec_ln, self.drop = nn.LayerNorm(d), nn.LayerNorm(d), Dropout(cfg.dropout)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def encode(self, hist_codes: torch.Tensor, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """hist_codes (B, H, L), -1 = padding (left). Returns memory (B, S, d) and its mask (B, 1, 1, S)."""
        b, h, n_levels = hist_codes.shape
        tok = self.emb(self.vocab.tokens(hist_codes))  # (B, H, L, d)
        if self.item_input:
            x, valid = tok.sum(2), hist_codes[..., 0] >= 0
        else:
            x = (tok + self.level_emb.weight).view(b, h * n_levels, -1)
            valid = (hist_codes >= 0).view(b, h * n_levels)
        x = torch.cat([self.user_emb(users).unsqueeze(1), x], 1)
        valid = torch.cat([users.unsqueeze(1) > 0, valid], 1)
        valid[:, -1] = True  # an empty history still attends to something (a padding vector)
        x = self.drop(x + self.enc_pos.weight[-x.shape[1]:])
        mask = valid[:, None, None, :]
        for blk in self.encoder:
            x = blk(x, mask=mask)
        return self.enc_ln(x), mask

    def level_logits(self, h: torch.Tensor, level: int) -> torch.Tensor:
        """Logits over the codes of `level` (output layer tied to the code-token embeddings)."""
        return h @ self.emb.weight[self.vocab.level_slice(level)].T

    def decode(self, memory: torch.Tensor, mask: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Decoder hidden states (B, t+1, d) for BOS + the given code prefix (B, t), no cache."""
        bos = torch.full((prefix.shape[0], 1), self.vocab.bos, device=memory.device)
        inp = torch.cat([bos, self.vocab.tokens(prefix)], 1)
        x = self.drop(self.emb(inp) + self.dec_pos.weight[: inp.shape[1]])
        for blk in self.decoder:
            x = blk(x, causal=True, memory_kv=blk.xattn.keys_values(memory), memory_mask=mask)
        return self.dec_ln(x)

    def forward(self, hist_codes: torch.Tensor, users: torch.Tensor, target_codes: torch.Tensor) -> torch.Tensor:
        """Mean token-level cross-entropy of the target codes (B, L) under teacher forcing."""
        x = self.decode(*self.encode(hist_codes, users), target_codes[:, :-1])
        return sum(F.cross_entropy(self.level_logits(x[:, l], l), target_codes[:, l])
                   for l in range(self.n_levels)) / self.n_levels

    @torch.no_grad()
    def next_code_logp(self, hist_codes: torch.Tensor, users: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the next code after `prefix` (B, t), recomputed from scratch (reference path)."""
        x = self.decode(*self.encode(hist_codes, users), prefix)
        return F.log_softmax(self.level_logits(x[:, -1], prefix.shape[1]).float(), -1)

    @torch.no_grad()
    def step_fn(self, hist_codes: torch.Tensor, users: torch.Tensor):
        """A `semrec.generation.StepFn` for one batch of users, with cached decoder keys/values."""
        return self.step_factory(hist_codes, users)()

    def step_factory(self, hist_codes: torch.Tensor, users: torch.Tensor):
        """The encoder's memory (and its cross-attention keys/values), computed once; each call of the result
        starts a fresh decoding over it."""
        memory, mask = self.encode(hist_codes, users)
        memory_kv = [blk.xattn.keys_values(memory) for blk in self.decoder]
        bos = torch.full((hist_codes.shape[0], 1), self.vocab.bos, device=memory.device)
        return lambda: self._decode_from(memory_kv, mask, bos)

    def _decode_from(self, memory_kv: list, mask: torch.Tensor, bos: torch.Tensor):
        cache = KVCache(len(self.decoder))

        def step(level: int, tokens: torch.Tensor | None, parents: torch.Tensor | None) -> torch.Tensor:
            if level == 0:
                x = self.emb(bos)
            else:
                cache.reorder(parents)
                x = self.emb(self.vocab.level_tokens(tokens, level - 1)).unsqueeze(1)
            x = x + self.dec_pos.weight[level]
            for i, blk in enumerate(self.decoder):
                x = blk.step(x, cache, i, memory_kv=memory_kv[i], memory_mask=mask)
            return F.log_softmax(self.level_logits(self.dec_ln(x[:, 0]), level).float(), -1)

        return step


@register
class Tiger(GenerativeMixin, TorchRecommender):
    """Encoder-decoder generative retrieval over semantic IDs, decoded with a catalogue trie; trained by the
    shared loop (checkpoints, resume, early stopping on validation, time budget)."""

    name = "tiger"
    Config = TigerConfig

    def __init__(self, n_items: int, config: TigerConfig | None = None, codes: np.ndarray | None = None,
                 codebook_sizes: list[int] | None = None, **overrides: Any):
        super().__init__(n_items, config, **overrides)
        self.init_codes(codes, codebook_sizes)

    @property
    def item_input(self) -> bool:
        mode = self.config.encoder_input
        return mode == "item" or (mode == "auto" and torch.device(self.config.device).type == "cpu")

    def build_module(self) -> nn.Module:
        return TigerNet(self.config, self.vocab_sizes, self.item_input)

    def build(self, device: str | torch.device | None = None) -> "Tiger":
        self.config.device = str(device or self.config.device)
        self.train_config.device = self.config.device
        self._codes_t = None
        return super().build(self.config.device)

    def fit(self, train: Sequences, valid: EvalSet | None = None) -> "Tiger":
        """Token-level cross-entropy on every (last <= max_history items -> next item) pair of `train`."""
        self.mark_seen(train)
        self._trie, self._codes_t = None, None
        self._pairs = (*next_item_pairs(train, self.config.max_history), self.pair_users(train))
        return super().fit(train, valid)

    def num_batches(self, train: Sequences, batch_size: int) -> int:
        return math.ceil(len(self._pairs[1]) / batch_size)

    def batches(self, train: Sequences, batch_size: int, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        """Length-bucketed (history, user, target) pairs; each batch trims its left padding."""
        hist, target, users = self._pairs
        for rows in bucketed_batches(len(target), batch_size, rng, (hist >= 0).sum(1)):
            yield {"hist": torch.from_numpy(trim_left(hist[rows])), "users": torch.from_numpy(users[rows]),
                   "target": torch.from_numpy(target[rows])}

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        codes = self.codes_on(batch["hist"].device)
        return self.module(item_codes(codes, batch["hist"]), batch["users"], codes[batch["target"]])

    def score(self, histories: Sequences) -> torch.Tensor:
        raise NotImplementedError("tiger ranks by constrained beam search: use recommend()")

    def state_dict(self) -> dict[str, torch.Tensor]:
        return GenerativeMixin.state_dict(self)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        GenerativeMixin.load_state_dict(self, state)
        self._codes_t = None
