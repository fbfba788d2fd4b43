"""Two-level generative retrieval: an item-level causal Transformer reads the history (one vector per item, the
sum of its code embeddings) and a small code-level Transformer spells the next item's semantic ID, one code at a
time, constrained by the catalogue trie.

Why two levels: in TIGER every beam re-runs the whole decoder for every code. Here the user's state is computed
once per user (like SASRec, all positions of a sequence in one training pass), and only the small code decoder
runs per beam and per code. Training costs about what SASRec costs; decoding at beam 20 is a few small matmuls
per step. The model is still generative: it ranks items by the log-probability of their code, sum over levels,
and can only return codes in the trie, so new items are recommendable from their codes alone.
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
from semrec.errors import ConfigError
from semrec.models.base import TorchRecommender, register
from semrec.models.tiger_decoder import training_windows
from semrec.models.tiger_generate import GenerativeMixin, check_unseen_last_code
from semrec.models.tiger_layers import Block, CodeTokens, KVCache, bucketed_batches, item_codes
from semrec.models.layers import Dropout
from semrec.training.config import TrainConfig


@dataclass
class TigerHierConfig:
    """Sizes and training chosen on Beauty validation on a 2-core CPU (benchmarks/notes/generative.md);
    `head_layers` is the code decoder's depth. Set `train.max_train_seconds` to anneal within a time budget."""

    codes_path: str | None = None  # (n_items, n_levels) int64 code table aligned with item_idx
    n_layers: int = 2  # item-level (user state) blocks
    head_layers: int = 1  # code-level blocks
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_ff: int = 512
    dropout: float = 0.2
    max_history: int = 20
    id_input: bool = True  # add a learned per-item vector to the item input (zero for items never trained)
    user_buckets: int = 0  # no user token (kept for the shared decoding code)
    beam: int = 20
    decode_batch: int = 512
    reserve_new: float = 0.0  # share of the top-k reserved for items unseen in training (cold start)
    unseen_last_code: str = "model"  # or "siblings": unseen items' last code scores as their trained siblings' mean
    device: str = "cpu"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=100, batch_size=128, lr=2e-3, weight_decay=0.05, optimizer="adamw", max_grad_norm=1.0,
        warmup_steps=200, lr_schedule="cosine", patience=5, eval_every=3))

    def __post_init__(self) -> None:
        if min(self.n_layers, self.head_layers, self.d_model, self.n_heads, self.d_head, self.d_ff,
               self.max_history) < 1:
            raise ConfigError("tiger-hier: layers, sizes and max_history must be >= 1")
        check_unseen_last_code("tiger-hier", self.unseen_last_code)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"tiger-hier: dropout must be in [0, 1), got {self.dropout}")


class TigerHierNet(nn.Module):
    def __init__(self, cfg: TigerHierConfig, vocab_sizes: list[int], n_items: int):
        super().__init__()
        self.vocab, self.n_levels = CodeTokens(vocab_sizes), len(vocab_sizes)
        d = cfg.d_model

        def blocks(n: int) -> nn.ModuleList:
            return nn.ModuleList([Block(d, cfg.n_heads, cfg.d_head, cfg.d_ff, cfg.dropout) for _ in range(n)])

        self.emb = nn.Embedding(self.vocab.n_tokens, d, padding_idx=0)  # code tokens: item input, head input, output
        self.pos = nn.Embedding(cfg.max_history, d)
        self.level = nn.Embedding(self.n_levels, d)  # head position j predicts level j
        self.items, self.head = blocks(cfg.n_layers), blocks(cfg.head_layers)
        self.ln_items, self.ln_head, self.drop = nn.LayerNorm(d), nn.LayerNorm(d), Dropout(cfg.dropout)
        for mod in self.modules():
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                nn.init.normal_(mod.weight, std=0.02)
            if isinstance(mod, nn.Linear) and mod.bias is not None:
                nn.init.zeros_(mod.bias)
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0) if cfg.id_input else None
        if self.item_emb is not None:
            nn.init.zeros_(self.item_emb.weight)  # untrained (cold) items add nothing to their code vector

    def user_states(self, codes: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None,
                    items: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, L) item codes (-1 = padding) and (B, T) item indices -> (B, T, d) state after each item."""
        x = self.emb(self.vocab.tokens(codes)).sum(-2) + self.pos(pos)
        if self.item_emb is not None and items is not None:  # items added after training have no row: zero
            x = x + self.item_emb(torch.where(items < self.item_emb.num_embeddings - 1, items + 1, 0))
        x = self.drop(x)
        for blk in self.items:
            x = blk(x, mask=mask, causal=mask is None)
        return self.ln_items(x)

    def head_inputs(self, state: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """(N, d) states and (N, j) code prefixes -> (N, j + 1, d) code-decoder inputs (position 0: no code yet)."""
        tok = self.emb(self.vocab.tokens(prefix))
        tok = torch.cat([tok.new_zeros(tok.shape[0], 1, tok.shape[-1]), tok], 1)
        return state[:, None] + tok + self.level.weight[: prefix.shape[1] + 1]

    def level_logits(self, h: torch.Tensor, level: int) -> torch.Tensor:
        return h @ self.emb.weight[self.vocab.level_slice(level)].T

    def forward(self, codes: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Mean code-level cross-entropy of every next item in a batch of start-aligned windows: codes (B, T, L),
        items (B, T), -1 = padding."""
        return self.code_loss(codes, items)[0]

    def code_loss(self, codes: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`forward`'s loss, with the states (N, d) of the positions that have a next item and where those are
        ((B, T - 1) mask), for losses on the user state (tiger-prorec's distillation)."""
        b, t, _ = codes.shape
        pos = torch.arange(t - 1, device=codes.device).expand(b, t - 1)
        state = self.user_states(codes[:, :-1], pos, None, items[:, :-1])
        has = codes[:, 1:, 0] >= 0  # item t+1 exists
        target = codes[:, 1:][has]  # (N, L)
        x = self.drop(self.head_inputs(state[has], target[:, :-1]))
        for blk in self.head:
            x = blk(x, causal=True)
        x = self.ln_head(x)
        loss = x.new_zeros(())
        for level in range(self.n_levels):
            loss = loss + F.cross_entropy(self.level_logits(x[:, level], level), target[:, level])
        return loss / self.n_levels, state[has], has

    @torch.no_grad()
    def last_state(self, hist_codes: torch.Tensor, hist_items: torch.Tensor | None = None) -> torch.Tensor:
        """(B, H, L) left-padded history codes (and (B, H) items) -> (B, d) state after the last item."""
        valid = hist_codes[..., 0] >= 0
        valid[:, -1] = True  # an empty history still has one (padding) position to attend to
        pos = (valid.cumsum(1) - 1).clamp(min=0)
        h = hist_codes.shape[1]
        eye = torch.eye(h, dtype=torch.bool, device=hist_codes.device)
        mask = (torch.ones_like(eye).tril() & valid[:, None, :]) | eye
        return self.user_states(hist_codes, pos, mask[:, None], hist_items)[:, -1]

    @torch.no_grad()
    def next_code_logp(self, hist_codes: torch.Tensor, users: torch.Tensor, prefix: torch.Tensor,
                       hist_items: torch.Tensor | None = None) -> torch.Tensor:
        """Reference path without a cache: log-probabilities of the code after `prefix` (B, t)."""
        x = self.head_inputs(self.last_state(hist_codes, hist_items), prefix)
        for blk in self.head:
            x = blk(x, causal=True)
        return F.log_softmax(self.level_logits(self.ln_head(x[:, -1]), prefix.shape[1]).float(), -1)

    @torch.no_grad()
    def step_fn(self, hist_codes: torch.Tensor, users: torch.Tensor, hist_items: torch.Tensor | None = None):
        return self.step_factory(hist_codes, users, hist_items)()

    def step_factory(self, hist_codes: torch.Tensor, users: torch.Tensor, hist_items: torch.Tensor | None = None):
        """The item-level Transformer's state, computed once; each call of the result starts a fresh decoding."""
        h = self.last_state(hist_codes, hist_items)
        return lambda: self._decode_from(h)

    def _decode_from(self, h: torch.Tensor):
        cache = KVCache(len(self.head))
        state = {"h": h}  # replaced, never written in place: searches started from one `h` stay independent

        def step(level: int, tokens: torch.Tensor | None, parents: torch.Tensor | None) -> torch.Tensor:
            if level == 0:
                x = (state["h"] + self.level.weight[0])[:, None]
                for i, blk in enumerate(self.head):
                    x = blk(x, cache=cache, layer=i)
            else:
                cache.reorder(parents)
                state["h"] = state["h"][parents]
                x = (state["h"] + self.emb(self.vocab.level_tokens(tokens, level - 1)) + self.level.weight[level])[:, None]
                for i, blk in enumerate(self.head):
                    x = blk.step(x, cache, i)
            return F.log_softmax(self.level_logits(self.ln_head(x[:, 0]), level).float(), -1)

        return step


@register
class TigerHier(GenerativeMixin, TorchRecommender):
    """Item-level Transformer + per-code decoder over semantic IDs; trained by the shared loop (checkpoints,
    early stopping on validation through the same constrained beam search used for recommending)."""

    name = "tiger-hier"
    Config = TigerHierConfig
    item_input = True

    def __init__(self, n_items: int, config: TigerHierConfig | None = None, codes: np.ndarray | None = None,
                 codebook_sizes: list[int] | None = None, **overrides: Any):
        super().__init__(n_items, config, **overrides)
        self.init_codes(codes, codebook_sizes)

    def build_module(self) -> nn.Module:
        return TigerHierNet(self.config, self.vocab_sizes, self.n_items)

    def build(self, device: str | torch.device | None = None) -> "TigerHier":
        self.config.device = str(device or self.config.device)
        self.train_config.device = self.config.device
        return super().build(self.config.device)

    def fit(self, train: Sequences, valid=None) -> "TigerHier":
        self.mark_seen(train)
        self._trie, self._codes_t = None, None
        self._windows = training_windows(train, self.config.max_history)  # the same windows every epoch
        return super().fit(train, valid)

    def num_batches(self, train: Sequences, batch_size: int) -> int:
        return math.ceil(len(self._windows) / batch_size)

    def batches(self, train: Sequences, batch_size: int, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        """Windows of up to max_history + 1 items, length-bucketed so each batch trims its right padding."""
        windows = self._windows
        for rows in bucketed_batches(len(windows), batch_size, rng, (windows >= 0).sum(1)):
            w = windows[rows]
            yield {"items": torch.from_numpy(w[:, : max(2, int((w >= 0).sum(1).max()))])}

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.module(item_codes(self.codes_on(batch["items"].device), batch["items"]), batch["items"])

    def step_factory(self, hist_codes: torch.Tensor, users: torch.Tensor, hist_items: torch.Tensor):
        return self.module.step_factory(hist_codes, users, hist_items)

    def score(self, histories: Sequences) -> torch.Tensor:
        raise NotImplementedError("tiger-hier ranks by constrained beam search: use recommend()")

    def state_dict(self) -> dict[str, torch.Tensor]:
        return GenerativeMixin.state_dict(self)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        GenerativeMixin.load_state_dict(self, state)
        self._codes_t = None

    # ------------------------------------------------------------------ user vectors (semrec.users)
    dot_product = False  # ranks by constrained code decoding; the vectors below are its state, not its scores

    def embed_users(self, histories: Sequences) -> np.ndarray:
        """(n, d_model) item-level Transformer state after the last item: what the code decoder reads."""
        codes = torch.as_tensor(self.codes, device=self.config.device)

        def state(h: Sequences) -> torch.Tensor:
            hist = torch.as_tensor(h.to_padded(self.config.max_history, pad=-1), device=self.config.device)
            return self.module.last_state(item_codes(codes, hist), hist)

        return self.batched_vectors(histories, state, self.config.decode_batch)

    def item_embeddings(self) -> np.ndarray:
        """(n_items, d_model) item input vectors (sum of code embeddings + per-item vector): the history side's
        space, useful for similarity and as CF vectors, but `user @ items.T` is not the model's ranking."""
        with torch.no_grad():
            items = torch.arange(self.n_items, device=self.config.device)
            codes = torch.as_tensor(self.codes, device=self.config.device)
            x = self.module.emb(self.module.vocab.tokens(codes)).sum(-2)
            if self.module.item_emb is not None:
                x = x + self.module.item_emb(torch.where(items < self.module.item_emb.num_embeddings - 1, items + 1, 0))
        return x.float().cpu().numpy()
