"""Parallel set identifiers (RPG, Hou et al. KDD 2025; SETRec): every item has a long identifier of independent
digits (e.g. 32 product-quantised sub-space codes, `semrec.semantic_ids.PQKMeans`); a causal Transformer reads
the history (each item = the scaled sum of its digit embeddings) and predicts ALL digits of the next item at
once, one softmax per digit, trained with the summed per-digit cross-entropy (multi-token prediction).

Decoding is exact: every catalogue item is scored by the sum of its digits' log-probabilities, one
`embedding_bag` over the (items, digits) code table per batch of users (a batched gather-sum, no loop over
items), so there is no beam, no search error, and ranking is a plain top-k. An item added after training is
scored from its codes alone, like any generative model.
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
from semrec.models.tiger_layers import Block, bucketed_batches, load_codes
from semrec.models.layers import Dropout
from semrec.training.config import TrainConfig


@dataclass
class TigerSetConfig:
    """Sizes as `tiger-hier` (2 blocks, d_model 128) plus a per-digit output head `head_dim` wide."""

    codes_path: str | None = None  # (n_items, n_digits) int64 code table aligned with item_idx
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_ff: int = 512
    dropout: float = 0.2
    max_history: int = 20
    id_input: bool = False  # add a learned per-item vector to the item input (zero for items never trained)
    head_dim: int = 32  # per-digit output width: logits_j = (W_j h) . O_j[c]; the output layer dominates the cost
    item_loss: float = 0.0  # weight of an item-level sampled softmax over summed digit logits (0 = digits only)
    item_negatives: int = 256  # uniformly sampled catalogue items per batch for `item_loss`
    score_batch: int = 512  # users per exact-scoring batch
    device: str = "cpu"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=200, batch_size=128, lr=2e-3, weight_decay=0.05, optimizer="adamw", max_grad_norm=1.0,
        warmup_steps=200, lr_schedule="cosine", patience=5, eval_every=2))

    def __post_init__(self) -> None:
        if min(self.n_layers, self.d_model, self.n_heads, self.d_head, self.d_ff, self.max_history,
               self.score_batch, self.head_dim) < 1:
            raise ConfigError("tiger-set: layers, sizes, max_history and score_batch must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"tiger-set: dropout must be in [0, 1), got {self.dropout}")
        if self.item_loss < 0 or self.item_negatives < 1:
            raise ConfigError("tiger-set: item_loss must be >= 0 and item_negatives >= 1")


class TigerSetNet(nn.Module):
    """Token t = 1 + digit * K + code (0 = padding) indexes the input table; each digit has its own small output
    table (`head_dim` wide) read by its own projection of the user state."""

    def __init__(self, cfg: TigerSetConfig, n_digits: int, codebook: int, n_items: int):
        super().__init__()
        self.m, self.k, d = n_digits, codebook, cfg.d_model
        self.item_loss, self.item_negatives = cfg.item_loss, cfg.item_negatives
        self.emb = nn.Embedding(n_digits * codebook + 1, d, padding_idx=0)
        self.pos = nn.Embedding(cfg.max_history, d)
        self.blocks = nn.ModuleList([Block(d, cfg.n_heads, cfg.d_head, cfg.d_ff, cfg.dropout)
                                     for _ in range(cfg.n_layers)])
        self.ln, self.drop = nn.LayerNorm(d), Dropout(cfg.dropout)
        self.proj = nn.Linear(d, n_digits * cfg.head_dim)  # the user state seen by each digit
        self.out = nn.Parameter(torch.zeros(n_digits, codebook, cfg.head_dim))  # per-digit output codewords
        for mod in self.modules():
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                nn.init.normal_(mod.weight, std=0.02)
            if isinstance(mod, nn.Linear) and mod.bias is not None:
                nn.init.zeros_(mod.bias)
        nn.init.normal_(self.out, std=0.02)
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0) if cfg.id_input else None
        if self.item_emb is not None:
            nn.init.zeros_(self.item_emb.weight)  # untrained (new) items add nothing to their code vector

    def tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """(..., m) codes (-1 = padding item) -> token ids."""
        off = torch.arange(self.m, device=codes.device) * self.k + 1
        return torch.where(codes >= 0, codes + off, 0)

    def item_vectors(self, codes: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        """(B, T, m) codes -> (B, T, d): sum of digit embeddings / sqrt(m) (+ the per-item vector)."""
        b, t, m = codes.shape
        x = F.embedding_bag(self.tokens(codes).view(-1, m), self.emb.weight, mode="sum", padding_idx=0)
        x = x.view(b, t, -1) * m ** -0.5
        if self.item_emb is not None and items is not None:  # items added after training have no row: zero
            x = x + self.item_emb(torch.where(items < self.item_emb.num_embeddings - 1, items + 1, 0))
        return x

    def states(self, codes: torch.Tensor, items: torch.Tensor | None, pos: torch.Tensor,
               mask: torch.Tensor | None, x: torch.Tensor | None = None) -> torch.Tensor:
        """Causal Transformer over the item vectors (from `codes`, or given as `x`) -> (B, T, d) states."""
        x = self.drop((self.item_vectors(codes, items) if x is None else x) + self.pos(pos))
        for blk in self.blocks:
            x = blk(x, mask=mask, causal=mask is None)
        return self.ln(x)

    def digit_logits(self, h: torch.Tensor) -> torch.Tensor:
        """(N, d) user states -> (N, m, K) logits of every digit of the next item."""
        hj = self.proj(h).view(len(h), self.m, -1).transpose(0, 1)  # (m, N, e)
        return torch.bmm(hj, self.out.transpose(1, 2)).transpose(0, 1)  # (N, m, K)

    def forward(self, codes: torch.Tensor, items: torch.Tensor, catalogue: torch.Tensor | None = None) -> torch.Tensor:
        """Mean per-digit cross-entropy of every next item in start-aligned windows: codes (B, T, m), items (B, T);
        plus `item_loss` x an item-level sampled softmax (summed digit logits of the target against
        `item_negatives` uniform catalogue items; `catalogue` = the (n_items, m) code table)."""
        b, t, _ = codes.shape
        pos = torch.arange(t - 1, device=codes.device).expand(b, t - 1)
        h = self.states(codes[:, :-1], items[:, :-1], pos, None)
        has = items[:, 1:] >= 0
        logits = self.digit_logits(self.drop(h[has]))
        target = codes[:, 1:][has]
        loss = F.cross_entropy(logits.reshape(-1, self.k), target.reshape(-1))
        if self.item_loss > 0 and catalogue is not None:
            off = torch.arange(self.m, device=codes.device) * self.k
            neg = torch.randint(0, len(catalogue), (self.item_negatives,), device=codes.device)
            flat = logits.flatten(1)  # (N, m*K)
            pos_s = flat.gather(1, target + off).sum(1, keepdim=True)
            neg_s = item_scores(flat.view_as(logits), catalogue[neg] + off)  # (N, S)
            neg_s = neg_s.masked_fill(neg[None, :] == items[:, 1:][has][:, None], -math.inf)  # accidental hits
            item_ce = -F.log_softmax(torch.cat([pos_s, neg_s], 1), 1)[:, 0].mean()
            loss = loss + self.item_loss * item_ce
        return loss

    def last_state(self, codes: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        """(B, H, m) left-padded history codes -> (B, d) state after the last item."""
        valid = codes[..., 0] >= 0
        valid[:, -1] = True  # an empty history still has one (padding) position to attend to
        pos = (valid.cumsum(1) - 1).clamp(min=0)
        eye = torch.eye(codes.shape[1], dtype=torch.bool, device=codes.device)
        mask = (torch.ones_like(eye).tril() & valid[:, None, :]) | eye
        return self.states(codes, items, pos, mask[:, None])[:, -1]


def item_scores(logp: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Exact sum of digit log-probabilities of every item: logp (B, m, K), tokens (N, m) flat indices into
    m * K -> (B, N). One embedding_bag (a fused gather-sum) over the catalogue, no loop over items."""
    table = logp.flatten(1).T.contiguous()  # (m*K, B)
    return F.embedding_bag(tokens, table, mode="sum").T


@register
class TigerSet(TorchRecommender):
    """Parallel-digit generative retrieval: all digits of the next item at once, exact scoring of the catalogue."""

    name = "tiger-set"
    Config = TigerSetConfig

    def __init__(self, n_items: int, config: TigerSetConfig | None = None, codes: np.ndarray | None = None,
                 codebook_sizes: list[int] | None = None, **overrides: Any):
        super().__init__(n_items, config, **overrides)
        if codes is None and self.config.codes_path:
            codes, codebook_sizes = load_codes(self.config.codes_path, n_items)
        self.codes = None if codes is None else np.asarray(codes, dtype=np.int64)
        self.codebook = 0
        if self.codes is not None:
            if len(self.codes) != n_items:
                raise ConfigError(f"tiger-set: code table has {len(self.codes)} rows for {n_items} items")
            if (self.codes < 0).any():
                raise ConfigError("tiger-set: the code table has negative codes (every item needs all digits)")
            self.codebook = max([int(self.codes.max()) + 1, *(codebook_sizes or [])])
        self.active = np.ones(n_items, dtype=bool)
        self._tokens: torch.Tensor | None = None
        self._codes_t: torch.Tensor | None = None

    @property
    def n_digits(self) -> int:
        return int(self.codes.shape[1])

    def build_module(self) -> nn.Module:
        if self.codes is None:
            raise ConfigError("tiger-set needs a code table: pass codes=... or set codes_path in its config")
        return TigerSetNet(self.config, self.n_digits, self.codebook, self.n_items)

    def build(self, device: str | torch.device | None = None) -> "TigerSet":
        self.config.device = str(device or self.config.device)
        self.train_config.device = self.config.device
        self._tokens = self._codes_t = None
        return super().build(self.config.device)

    # ------------------------------------------------------------------ training
    def fit(self, train: Sequences, valid=None) -> "TigerSet":
        self._windows = training_windows(train, self.config.max_history)  # the same windows every epoch
        return super().fit(train, valid)

    def num_batches(self, train: Sequences, batch_size: int) -> int:
        return math.ceil(len(self._windows) / batch_size)

    def batches(self, train: Sequences, batch_size: int, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        windows = self._windows
        for rows in bucketed_batches(len(windows), batch_size, rng, (windows >= 0).sum(1)):
            w = windows[rows]
            yield {"items": torch.from_numpy(w[:, : max(2, int((w >= 0).sum(1).max()))])}

    def codes_tensor(self, device: torch.device) -> torch.Tensor:
        if self._codes_t is None or self._codes_t.device != device:
            with torch.inference_mode(False):  # cached during validation, reused by training: a normal tensor
                self._codes_t = torch.as_tensor(self.codes, device=device)
        return self._codes_t

    def history_codes(self, items: torch.Tensor) -> torch.Tensor:
        codes = self.codes_tensor(items.device)
        return torch.where(items[..., None] >= 0, codes[items.clamp(min=0)], -1)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.module(self.history_codes(batch["items"]), batch["items"], self.codes_tensor(batch["items"].device))

    # ------------------------------------------------------------------ scoring
    @property
    def score_batch_size(self) -> int:  # type: ignore[override]
        return self.config.score_batch

    def digit_logp(self, histories: Sequences) -> torch.Tensor:
        """(B, m, K) log-probabilities of every digit of each history's next item."""
        hist = torch.as_tensor(histories.to_padded(self.config.max_history, pad=-1), device=self.device)
        h = self.module.last_state(self.history_codes(hist), hist)
        return F.log_softmax(self.module.digit_logits(h).float(), -1)

    @torch.no_grad()
    def score(self, histories: Sequences) -> torch.Tensor:
        """(B, n_items): each item's identifier log-probability (sum over digits); removed items -inf."""
        if self._tokens is None or self._tokens.device != self.device:
            with torch.inference_mode(False):
                off = torch.arange(self.n_digits, device=self.device) * self.codebook
                self._tokens = self.codes_tensor(self.device) + off
        scores = item_scores(self.digit_logp(histories), self._tokens)
        if not self.active.all():
            scores[:, torch.as_tensor(~self.active, device=scores.device)] = -math.inf
        return scores

    # ------------------------------------------------------------------ catalogue
    def add_items(self, items: np.ndarray, codes: np.ndarray) -> None:
        """Make new (or changed) items recommendable from their codes, without retraining."""
        items, codes = np.asarray(items, np.int64), np.asarray(codes, np.int64)
        if codes.shape != (len(items), self.n_digits) or (codes < 0).any() or (codes >= self.codebook).any():
            raise ConfigError(f"add_items: codes must be ({len(items)}, {self.n_digits}) in [0, {self.codebook})")
        n = max(self.n_items, int(items.max(initial=-1)) + 1)
        if n > self.n_items:
            self.codes = np.concatenate([self.codes, np.zeros((n - self.n_items, self.n_digits), np.int64)])
            self.active = np.concatenate([self.active, np.zeros(n - self.n_items, bool)])
            self.n_items = n
        self.codes[items], self.active[items] = codes, True
        self._tokens = self._codes_t = None

    def remove_items(self, items: np.ndarray) -> None:
        """Stop recommending `items` (e.g. out of stock); their codes are kept."""
        self.active[np.asarray(items, np.int64)] = False

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"net.{k}": v for k, v in self.module.state_dict().items()}
        return state | {"codes": torch.as_tensor(self.codes), "active": torch.as_tensor(self.active)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.codes = state["codes"].cpu().numpy().astype(np.int64)
        self.active = state["active"].cpu().numpy().astype(bool)
        self.n_items, self._tokens, self._codes_t = len(self.codes), None, None
        self.module.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
        self.module.eval()

    def extra_state(self) -> dict[str, Any]:
        return {"codebook": self.codebook, "n_digits": self.n_digits, "n_items_trained": self._trained_items()}

    def _trained_items(self) -> int:
        emb = getattr(self.module, "item_emb", None)
        return self.n_items if emb is None else emb.num_embeddings - 1

    @classmethod
    def from_extra(cls, n_items: int, config: Any, extra: dict[str, Any], device: str = "cpu") -> "TigerSet":
        config.codes_path = None  # the code table comes from model.safetensors
        trained = int(extra.get("n_items_trained", n_items))
        model = cls(trained, config, codes=np.zeros((trained, int(extra["n_digits"])), np.int64),
                    codebook_sizes=[int(extra["codebook"])])
        model.build(device)
        return model
