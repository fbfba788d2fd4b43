"""Decoder-only TIGER: one causal Transformer reads the history (one vector per item, the sum of its code-token
embeddings) and then generates the next item's codes, constrained by the catalogue trie.

Training sees every (prefix -> next item) pair of a window in ONE pass: the code tokens of each target are
appended after the item stream, and an attention mask lets target t's codes see only items before t and its
own earlier codes. That is exactly the per-pair model, at about a fifth of the encoder-decoder's training cost.
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
from semrec.models.tiger_layers import Block, CodeTokens, KVCache, bucketed_batches, item_codes
from semrec.models.layers import Dropout
from semrec.training.config import TrainConfig


@dataclass
class TigerDecoderConfig:
    """Same sizes as TIGER's decoder (4 layers, d_model 128, 6 heads of 64, d_ff 1024, dropout 0.1, 20 items);
    training options live in `train`."""

    codes_path: str | None = None  # (n_items, n_levels) int64 code table aligned with item_idx
    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 6
    d_head: int = 64
    d_ff: int = 1024
    dropout: float = 0.1
    max_history: int = 20
    user_buckets: int = 0  # kept for the shared decoding code; the decoder-only model has no user token
    beam: int = 20
    decode_batch: int = 256
    reserve_new: float = 0.0  # share of the top-k reserved for items unseen in training (cold start)
    unseen_last_code: str = "model"  # or "siblings": unseen items' last code scores as their trained siblings' mean
    device: str = "cpu"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=30, batch_size=128, lr=2e-3, weight_decay=0.05, optimizer="adamw", max_grad_norm=1.0,
        warmup_steps=200, lr_schedule="cosine", patience=5, eval_every=3))  # batch = windows of <= 20 targets

    def __post_init__(self) -> None:
        if min(self.n_layers, self.d_model, self.n_heads, self.d_head, self.d_ff, self.max_history) < 1:
            raise ConfigError("tiger-decoder: layers, sizes and max_history must be >= 1")
        check_unseen_last_code("tiger-decoder", self.unseen_last_code)


def training_windows(train: Sequences, max_history: int) -> np.ndarray:
    """(n_windows, max_history + 1) item indices, start-aligned, -1 padded; consecutive windows of one sequence
    overlap by one item so every item after a sequence's first is a target exactly once."""
    t = max_history + 1
    n = train.lengths
    n_win = np.where(n >= 2, -(-(n - 1) // (t - 1)), 0)
    seq = np.repeat(np.arange(len(train)), n_win)
    c = np.arange(n_win.sum()) - np.repeat(np.cumsum(n_win) - n_win, n_win)  # 0 = the last window
    end = n[seq] - c * (t - 1)
    start = np.maximum(end - t, 0)
    idx = start[:, None] + np.arange(t)[None, :]
    return np.where(idx < end[:, None], train.items[train.offsets[seq][:, None] + np.minimum(idx, end[:, None] - 1)], -1)


def window_mask(t: int, n_levels: int) -> torch.Tensor:
    """(S, S) attention mask (True = attend) for t items followed by (t-1) * (n_levels-1) code tokens."""
    m = n_levels - 1
    s = t + (t - 1) * m
    row_item = torch.cat([torch.arange(t), torch.arange(t - 1).repeat_interleave(m)])  # last item a row may see
    row_code = torch.cat([torch.full((t,), -1), torch.arange(m).repeat(t - 1)])  # code slot (-1 = item row)
    row_tgt = torch.cat([torch.full((t,), -1), torch.arange(t - 1).repeat_interleave(m)])
    cols = torch.arange(s)
    item_ok = (cols[None, :t] <= row_item[:, None])
    code_ok = (row_tgt[:, None] == row_tgt[None, t:]) & (row_code[None, t:] <= row_code[:, None]) & (row_tgt[:, None] >= 0)
    return torch.cat([item_ok, code_ok], 1)


class TigerDecoderNet(nn.Module):
    def __init__(self, cfg: TigerDecoderConfig, vocab_sizes: list[int]):
        super().__init__()
        self.cfg, self.vocab, self.n_levels = cfg, CodeTokens(vocab_sizes), len(vocab_sizes)
        d = cfg.d_model
        self.emb = nn.Embedding(self.vocab.n_tokens, d, padding_idx=0)
        self.pos = nn.Embedding(cfg.max_history + 1, d)
        self.kind = nn.Embedding(self.n_levels, d)  # 0: item vector, j: the (j-1)-th code of the next item
        self.blocks = nn.ModuleList([Block(d, cfg.n_heads, cfg.d_head, cfg.d_ff, cfg.dropout) for _ in range(cfg.n_layers)])
        self.ln, self.drop = nn.LayerNorm(d), Dropout(cfg.dropout)
        for mod in self.modules():
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                nn.init.normal_(mod.weight, std=0.02)
            if isinstance(mod, nn.Linear) and mod.bias is not None:
                nn.init.zeros_(mod.bias)

    def level_logits(self, h: torch.Tensor, level: int) -> torch.Tensor:
        return h @ self.emb.weight[self.vocab.level_slice(level)].T

    def items_in(self, codes: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Item-stream inputs: sum of code embeddings (padding rows are zero) + position + kind 0."""
        return self.emb(self.vocab.tokens(codes)).sum(-2) + self.pos(pos) + self.kind.weight[0]

    def forward(self, win_codes: torch.Tensor) -> torch.Tensor:
        """Mean token-level cross-entropy over every target of every window; win_codes (B, T, L), -1 = padding."""
        b, t, n_levels = win_codes.shape
        valid = win_codes[..., 0] >= 0
        x_items = self.items_in(win_codes, torch.arange(t, device=win_codes.device).expand(b, t))
        tgt = win_codes[:, 1:]  # (B, T-1, L) targets
        code_in = self.emb(self.vocab.tokens(tgt[..., :-1]).clamp(min=0))  # (B, T-1, L-1)
        code_in = code_in + self.pos.weight[: t - 1, None] + self.kind.weight[1:]
        x = self.drop(torch.cat([x_items, code_in.reshape(b, -1, x_items.shape[-1])], 1))
        mask = window_mask(t, n_levels).to(x.device)
        for blk in self.blocks:
            x = blk(x, mask=mask)
        x = self.ln(x)
        h0 = x[:, : t - 1]  # item t-1 predicts the first code of item t
        hc = x[:, t:].view(b, t - 1, n_levels - 1, -1)
        has = valid[:, 1:]
        loss = F.cross_entropy(self.level_logits(h0[has], 0), tgt[..., 0][has])
        for l in range(1, n_levels):
            loss = loss + F.cross_entropy(self.level_logits(hc[:, :, l - 1][has], l), tgt[..., l][has])
        return loss / n_levels

    def prefill(self, hist_codes: torch.Tensor, cache: KVCache | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the left-padded history (B, H, L); returns last hidden state, key mask (B, H), last position."""
        valid = hist_codes[..., 0] >= 0
        valid[:, -1] = True  # an empty history still has one (padding) position to attend to
        pos = (valid.cumsum(1) - 1).clamp(min=0)
        x = self.drop(self.items_in(hist_codes, pos))
        h = hist_codes.shape[1]
        causal = torch.ones(h, h, dtype=torch.bool, device=x.device).tril()
        mask = (causal & valid[:, None, :]) | torch.eye(h, dtype=torch.bool, device=x.device)
        for i, blk in enumerate(self.blocks):
            x = blk(x, mask=mask[:, None], cache=cache, layer=i)
        return self.ln(x[:, -1]), valid, pos[:, -1]

    @torch.no_grad()
    def next_code_logp(self, hist_codes: torch.Tensor, users: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Reference path without cache: history then code prefix (B, t) as one causal sequence."""
        b, h, _ = hist_codes.shape
        t = prefix.shape[1]
        valid = hist_codes[..., 0] >= 0
        valid[:, -1] = True
        pos = (valid.cumsum(1) - 1).clamp(min=0)
        code = self.emb(self.vocab.tokens(prefix)) + self.pos(pos[:, -1:]) + self.kind.weight[1:t + 1]
        x = torch.cat([self.items_in(hist_codes, pos), code], 1)
        keys = torch.cat([valid, torch.ones(b, t, dtype=torch.bool, device=x.device)], 1)
        eye = torch.eye(h + t, dtype=torch.bool, device=x.device)
        mask = (eye | torch.ones_like(eye).tril()) & keys[:, None, :] | eye
        for blk in self.blocks:
            x = blk(x, mask=mask[:, None])
        return F.log_softmax(self.level_logits(self.ln(x[:, -1]), t).float(), -1)

    @torch.no_grad()
    def step_fn(self, hist_codes: torch.Tensor, users: torch.Tensor):
        return self.step_factory(hist_codes, users)()

    def step_factory(self, hist_codes: torch.Tensor, users: torch.Tensor):
        """The history's prefill (its keys/values), computed once; each call of the result starts a fresh decoding
        from it (the cache's lists are copied, and its tensors are only ever replaced, never written in place)."""
        prefix = KVCache(len(self.blocks))
        h_last, valid, last = self.prefill(hist_codes, prefix)
        return lambda: self._decode_from(prefix.copy(), h_last, valid, last)

    def _decode_from(self, cache: KVCache, h_last: torch.Tensor, valid: torch.Tensor, last: torch.Tensor):
        state = {"keys": valid, "pos": last}

        def step(level: int, tokens: torch.Tensor | None, parents: torch.Tensor | None) -> torch.Tensor:
            if level == 0:
                return F.log_softmax(self.level_logits(h_last, 0).float(), -1)
            cache.reorder(parents)
            keys = torch.cat([state["keys"][parents], torch.ones_like(parents, dtype=torch.bool)[:, None]], 1)
            pos = state["pos"][parents]
            state["keys"], state["pos"] = keys, pos
            x = (self.emb(self.vocab.level_tokens(tokens, level - 1)) + self.pos(pos) + self.kind.weight[level]).unsqueeze(1)
            for i, blk in enumerate(self.blocks):
                x = blk.step(x, cache, i, self_mask=keys[:, None, None, :])
            return F.log_softmax(self.level_logits(self.ln(x[:, 0]), level).float(), -1)

        return step


@register
class TigerDecoder(GenerativeMixin, TorchRecommender):
    """Decoder-only generative retrieval over semantic IDs (all training pairs of a window in one pass), trained
    by the shared loop (checkpoints, resume, early stopping on validation, time budget)."""

    name = "tiger-decoder"
    Config = TigerDecoderConfig
    item_input = True

    def __init__(self, n_items: int, config: TigerDecoderConfig | None = None, codes: np.ndarray | None = None,
                 codebook_sizes: list[int] | None = None, **overrides: Any):
        super().__init__(n_items, config, **overrides)
        self.init_codes(codes, codebook_sizes)

    def build_module(self) -> nn.Module:
        return TigerDecoderNet(self.config, self.vocab_sizes)

    def build(self, device: str | torch.device | None = None) -> "TigerDecoder":
        self.config.device = str(device or self.config.device)
        self.train_config.device = self.config.device
        self._codes_t = None
        return super().build(self.config.device)

    def fit(self, train: Sequences, valid: EvalSet | None = None) -> "TigerDecoder":
        """Token-level cross-entropy on every (history prefix -> next item) pair, one window per pass."""
        self.mark_seen(train)
        self._trie, self._codes_t = None, None
        self._windows = training_windows(train, self.config.max_history)  # the same windows every epoch
        return super().fit(train, valid)

    def num_batches(self, train: Sequences, batch_size: int) -> int:
        return math.ceil(len(self._windows) / batch_size)

    def batches(self, train: Sequences, batch_size: int, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        """Length-bucketed windows; each batch trims its right padding."""
        windows = self._windows
        for rows in bucketed_batches(len(windows), batch_size, rng, (windows >= 0).sum(1)):
            w = windows[rows]
            yield {"items": torch.from_numpy(w[:, : max(2, int((w >= 0).sum(1).max()))])}

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.module(item_codes(self.codes_on(batch["items"].device), batch["items"]))

    def score(self, histories: Sequences) -> torch.Tensor:
        raise NotImplementedError("tiger-decoder ranks by constrained beam search: use recommend()")

    def state_dict(self) -> dict[str, torch.Tensor]:
        return GenerativeMixin.state_dict(self)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        GenerativeMixin.load_state_dict(self, state)
        self._codes_t = None
