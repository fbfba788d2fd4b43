"""Pieces shared by the neural ID models: batching of sequences into padded tensors, a Transformer block,
and the three next-item losses (BCE with one sampled negative, sampled softmax, full softmax).

Token convention for every model here: item `i` is token `i + 1`, token 0 is padding. The item table of a
model is therefore `embedding.weight[1:n_items + 1]`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semrec.data.sequences import Sequences
from semrec.errors import ConfigError, DataError

PAD = 0
LOSSES = ("bce", "sampled-softmax", "ce")


def check_items(seqs: Sequences, n_items: int) -> None:
    """Raise a DataError when a sequence holds an item index outside [0, n_items)."""
    if seqs.items.size and (seqs.items.min() < 0 or seqs.items.max() >= n_items):
        bad = int(seqs.items[(seqs.items < 0) | (seqs.items >= n_items)][0])
        raise DataError(f"item index {bad} is outside the model's catalogue [0, {n_items})",
                        fix="use the split the model was trained on, or retrain with the current n_items")


def padded_tokens(seqs: Sequences, max_len: int, left: bool = True) -> np.ndarray:
    """(n, W) tokens (item + 1, 0 = pad) of the last `max_len` items; W = longest kept row (<= max_len)."""
    width = max(1, min(max_len, int(seqs.lengths.max(initial=1))))
    return seqs.to_padded(width, pad=-1, left=left) + 1


def epoch_rows(n: int, batch_size: int, rng: np.random.Generator, lengths: np.ndarray | None = None,
               pool: int = 0) -> list[np.ndarray]:
    """A random permutation of `n` rows cut into batches (the last one may be smaller).

    With `lengths` and `pool` > 0, rows are sorted by length inside random pools of `pool` batches and the
    batches are shuffled, so a batch's rows have similar lengths and little padding (batch width = its longest
    row); without them the draws are exactly the plain permutation's."""
    order = rng.permutation(n)
    if lengths is None or pool <= 0:
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    step = batch_size * pool
    order = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in np.split(order, range(step, n, step))])
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def next_item_pairs(seqs: Sequences, max_len: int, left: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Padded (inputs, targets) for training on every position: input t predicts item t+1.

    Width is the longest row of this batch (at most `max_len`), so short batches cost less."""
    width = max(2, min(max_len + 1, int(seqs.lengths.max(initial=2))))
    tokens = seqs.to_padded(width, pad=-1, left=left) + 1
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    return inputs, np.where(inputs == PAD, PAD, targets)


def prefix_rows(seqs: Sequences, width: int) -> Sequences:
    """Every prefix of length >= 2 of every sequence, each cut to its last `width` items: the one-row-per-
    (history, next item) expansion RecBole trains on (sum of (length - 1) rows), built without Python loops."""
    lengths = seqs.lengths
    n_pref = np.maximum(lengths - 1, 0)
    seq_start = np.repeat(seqs.offsets[:-1], n_pref)
    ends = seq_start + 2 + (np.arange(int(n_pref.sum())) - np.repeat(np.cumsum(n_pref) - n_pref, n_pref))
    starts = np.maximum(seq_start, ends - width)
    out_len = ends - starts
    offsets = np.zeros(len(ends) + 1, dtype=np.int64)
    np.cumsum(out_len, out=offsets[1:])
    idx = np.repeat(starts - offsets[:-1], out_len) + np.arange(offsets[-1])
    return Sequences(offsets, seqs.items[idx])


class Dropout(nn.Dropout):
    """nn.Dropout whose CPU mask comes from `torch.rand` rather than `bernoulli_`: the same distribution
    (keep with probability 1 - p, kept values scaled by 1 / (1 - p)), about 3x cheaper forward and backward on
    CPU, where dropout masks were ~23% of a SASRec training step. Other devices, and reduced precision (whose
    coarse uniform draws would shift the keep rate), use the fused kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not 0 < self.p < 1 or x.device.type != "cpu" or x.dtype != torch.float32:
            return super().forward(x)
        return x * torch.rand_like(x).ge_(self.p).mul_(1.0 / (1.0 - self.p))


class MLP(nn.Module):
    """Position-wise feed-forward layer of a Transformer block."""

    def __init__(self, hidden: int, inner: int, dropout: float, activation: str = "gelu"):
        super().__init__()
        self.fc = nn.Linear(hidden, inner)
        self.proj = nn.Linear(inner, hidden)
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(self.drop(self.act(self.fc(x)))))


class SelfAttention(nn.Module):
    """Multi-head self-attention with a boolean mask (True = may attend), via scaled_dot_product_attention."""

    def __init__(self, hidden: int, n_heads: int, dropout: float):
        super().__init__()
        if hidden % n_heads:
            raise ConfigError(f"hidden={hidden} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.dropout = dropout
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (t.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = scaled_attention(q, k, v, mask[:, None], self.drop)
        return self.drop(self.proj(y.transpose(1, 2).reshape(b, n, d)))


def scaled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                     drop: nn.Dropout, causal: bool = False) -> torch.Tensor:
    """scaled_dot_product_attention with `drop`'s rate on the weights when it is training; on CPU in float32 that
    dropout goes through `attend` (Dropout's cheaper mask) instead of SDPA's math kernel with bernoulli_.
    `mask`: bool, True = may attend; `causal` (without a mask): query i sees keys <= i."""
    if drop.training and drop.p and q.device.type == "cpu" and q.dtype == torch.float32:
        if mask is None and causal:
            mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
        return attend(q, k, v, True if mask is None else mask, drop)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None,
                                          dropout_p=drop.p if drop.training else 0.0)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | bool, drop: nn.Module
           ) -> torch.Tensor:
    """Attention with `drop` on the weights: what scaled_dot_product_attention computes with dropout, spelled out
    because on CPU its dropout path (the math kernel and a bernoulli_ mask) is ~1.4x slower forward + backward
    than this with `Dropout`'s mask. `mask` (True = may attend) broadcasts against (B, heads, L, L); `True`: no mask."""
    weights = (q @ k.transpose(-2, -1)).mul_(q.shape[-1] ** -0.5)
    if mask is not True:
        weights = weights.masked_fill_(~mask, -math.inf)
    return drop(weights.softmax(-1)) @ v


class Block(nn.Module):
    """Pre-LayerNorm Transformer block: x + attn(ln(x)), then x + mlp(ln(x)).

    `inner`: feed-forward width; None keeps the historical default (4 x hidden for gelu, hidden for relu)."""

    def __init__(self, hidden: int, n_heads: int, dropout: float, activation: str = "gelu",
                 inner: int | None = None):
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden)
        self.attn = SelfAttention(hidden, n_heads, dropout)
        self.ln2 = nn.LayerNorm(hidden)
        if inner is None:
            inner = 4 * hidden if activation == "gelu" else hidden
        self.mlp = MLP(hidden, inner, dropout, activation)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp(self.ln2(x))


def attention_mask(tokens: torch.Tensor, causal: bool) -> torch.Tensor:
    """(B, L, L) True where query i may attend key j: real keys (and j <= i if causal); always itself.

    Letting every position see itself keeps padded query rows finite (they are masked out of the loss).
    """
    n = tokens.shape[1]
    mask = (tokens != PAD)[:, None, :].expand(-1, n, -1)
    if causal:
        mask = mask & torch.ones(n, n, dtype=torch.bool, device=tokens.device).tril()
    return mask | torch.eye(n, dtype=torch.bool, device=tokens.device)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Truncated-normal init of linear and embedding weights (BERT/GPT practice), zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------- losses
def sample_negatives(rng: np.random.Generator, shape: tuple[int, ...], n_items: int,
                     avoid: np.ndarray | None = None, rounds: int = 5) -> np.ndarray:
    """Uniform random item tokens in [1, n_items] drawn in one call. With `avoid` (B, L tokens) the
    negatives of row b that equal any token of `avoid[b]` are redrawn (a few vectorised rounds), as the
    published SASRec sampler does; shape must then start with B."""
    neg = rng.integers(1, n_items + 1, size=shape)
    if avoid is None:
        return neg
    for _ in range(rounds):
        flat = neg.reshape(len(neg), -1)
        hit = (flat[:, :, None] == avoid[:, None, :]).any(-1)
        if not hit.any():
            break
        flat[hit] = rng.integers(1, n_items + 1, size=int(hit.sum()))
        neg = flat.reshape(shape)
    return neg


class _ChunkedSoftmaxCE(torch.autograd.Function):
    """Full-softmax cross-entropy whose gradients are computed in the forward pass, `chunk` rows at a time.

    Same loss as `F.cross_entropy(h @ W.T, t)`; the (rows x items) logits never exist whole (a chunk of them
    stays in cache), and nothing but the two gradients is kept for backward, so the big allocations,
    log-softmax backward and their memory traffic are skipped."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, chunk: int,
                dtype: torch.dtype | None = None) -> torch.Tensor:
        w = table[1:]
        low = dtype is not None and dtype != h.dtype  # e.g. bf16 matmuls, softmax and sums in float32
        w_mm = w.detach().to(dtype) if low else w
        n = len(h)
        total = torch.zeros((), dtype=torch.float64, device=h.device)
        need = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_h = torch.empty_like(h) if need else None
        grad_w = torch.zeros_like(table) if need else None
        for s in range(0, n, chunk):
            hc, tc = h[s:s + chunk], targets[s:s + chunk] - 1
            hc_mm = hc.detach().to(dtype) if low else hc
            logits = (hc_mm @ w_mm.T).float() if low else hc @ w.T
            rows = torch.arange(len(hc), device=h.device)
            picked = logits[rows, tc]
            top = logits.amax(1, keepdim=True)
            probs = logits.sub_(top).exp_()
            norm = probs.sum(1, keepdim=True)
            total += (norm.log().squeeze(1) + top.squeeze(1) - picked).sum(dtype=torch.float64)
            if need:
                probs.div_(norm)
                probs[rows, tc] -= 1.0
                if low:
                    p_mm = probs.to(dtype)
                    grad_h[s:s + chunk] = p_mm @ w_mm
                    grad_w[1:] += p_mm.T @ hc_mm
                else:
                    grad_h[s:s + chunk] = probs @ w
                    grad_w[1:].addmm_(probs.T, hc)
        ctx.save_for_backward(grad_h, grad_w)
        return (total / max(n, 1)).to(h.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_out / max(len(grad_h), 1)
        return grad_h * scale, grad_w * scale, None, None, None


def softmax_ce(h: torch.Tensor, item_table: torch.Tensor, targets: torch.Tensor, chunk: int = 0,
               dtype: torch.dtype | None = None) -> torch.Tensor:
    """Mean full-softmax cross-entropy of `h` (P, d) against all items of `item_table` (row 0 = padding) for
    target tokens `targets` (P,); `chunk` > 0 computes it `chunk` rows at a time with fused gradients, its
    matmuls in `dtype` when given (e.g. torch.bfloat16; softmax and sums stay float32)."""
    if chunk > 0:
        return _ChunkedSoftmaxCE.apply(h, item_table, targets, chunk, dtype)
    return F.cross_entropy(h @ item_table[1:].T, targets - 1)


def next_item_loss(hidden: torch.Tensor, targets: torch.Tensor, item_table: torch.Tensor, loss: str,
                   negatives: torch.Tensor | None = None, ce_chunk: int = 0,
                   ce_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Mean next-item loss over all non-padded positions.

    hidden (B, L, d) sequence outputs; targets (B, L) tokens (0 = no target); item_table (n_items + 1, d)
    with row 0 = padding. `ce`: softmax over all items. `bce`: `negatives` (B, L) holds one sampled item
    per position; binary cross-entropy on the positive and the negative (Kang & McAuley).
    `sampled-softmax`: `negatives` (N,) are shared by the whole batch; softmax over the positive and
    them, with accidental hits (negative == positive) masked out. `ce_chunk` > 0: `ce` via `softmax_ce`'s
    chunked, fused-gradient path (same loss, less memory traffic).
    """
    valid = targets != PAD
    h = hidden[valid]  # (P, d): only real positions pay for the output layer
    pos = targets[valid]
    if loss == "ce":
        return softmax_ce(h, item_table, pos, ce_chunk, ce_dtype)
    if negatives is None:
        raise ConfigError(f"loss={loss!r} needs sampled negatives in the batch")
    if loss == "bce":
        pos_logit = (h * item_table[pos]).sum(-1)
        neg_logit = (h * item_table[negatives[valid]]).sum(-1)
        return (F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit))
                + F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit)))
    if loss == "sampled-softmax":
        pos_logit = (h * item_table[pos]).sum(-1, keepdim=True)
        neg_logit = (h @ item_table[negatives].T).masked_fill(negatives[None, :] == pos[:, None], float("-inf"))
        logits = torch.cat([pos_logit, neg_logit], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=logits.device))
    raise ConfigError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float, ids: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric in-batch InfoNCE (CLIP-style) between row-paired views `a` and `b` (N, d): row i of `a` should be
    closer to row i of `b` than to any other row, both ways. Inputs are L2-normalised here (cosine / temperature).
    `ids` (N,): rows with the same id are the same thing (e.g. one target item at several positions), so they are
    not each other's negatives."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    labels = torch.arange(len(a), device=a.device)
    if ids is not None:
        same = (ids[:, None] == ids[None, :]) & (labels[:, None] != labels[None, :])
        logits = logits.masked_fill(same, -math.inf)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def positions(width: int, max_len: int, device: torch.device | str) -> torch.Tensor:
    """Position ids for a left-padded window of `width`: the last column is always position max_len - 1,
    so a history is encoded the same whatever the batch's longest row."""
    return torch.arange(max_len - width, max_len, device=device)


__all__ = ["LOSSES", "PAD", "Block", "MLP", "SelfAttention", "attend", "attention_mask", "check_items", "epoch_rows",
           "info_nce", "init_weights", "next_item_loss", "next_item_pairs", "padded_tokens", "positions", "prefix_rows",
           "sample_negatives", "scaled_attention", "softmax_ce"]
