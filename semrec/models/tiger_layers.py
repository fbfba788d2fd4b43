"""Pieces shared by the two TIGER models: the code table, code-token embeddings, attention with a
key/value cache, Transformer blocks and training pairs (training itself is `semrec.training`).

Token convention: code c at level l is token `1 + offset[l] + c` (offset = cumulative codebook sizes),
token 0 is padding and the last token is BOS. An item's vector is the sum of its code-token embeddings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semrec.data.sequences import Sequences
from semrec.errors import DataError
from semrec.models.layers import Dropout, scaled_attention
from semrec.semantic_ids.importing import check_collision_free


def load_codes(path: str | Path, n_items: int | None = None) -> tuple[np.ndarray, list[int] | None]:
    """Read an (n_items, n_levels) int64 code table aligned with item_idx: .npy, .safetensors, .parquet, or an
    `semrec ids fit` folder (its codes.safetensors). Returns (codes, codebook sizes when the file records them)."""
    sizes = None
    path = Path(path)
    if path.is_dir():  # a `semrec ids fit` output folder
        path = path / "codes.safetensors"
    if not path.exists():
        raise DataError("code table not found", path=path, fix="build codes with `semrec codes ...` or fix codes_path")
    if path.suffix == ".npy":
        codes = np.load(path, allow_pickle=False)
    elif path.suffix == ".safetensors":
        import json

        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            key = "codes" if "codes" in f.keys() else next(iter(f.keys()))
            codes = f.get_tensor(key)
            meta = f.metadata() or {}
        if "codebook_sizes" in meta:
            sizes = [int(v) for v in json.loads(meta["codebook_sizes"])]
    elif path.suffix == ".parquet":
        import polars as pl

        df = pl.read_parquet(path)
        if "item_idx" in df.columns:
            df = df.sort("item_idx")
        cols = [c for c in df.columns if c.startswith("code")]
        if len(cols) == 1 and isinstance(df.schema[cols[0]], pl.List):
            codes = np.stack(df[cols[0]].to_list())
        elif cols:
            codes = df.select(cols).to_numpy()
        else:
            raise DataError("no code column", path=path, field="code_0", fix="name the columns code_0, code_1, ...")
    else:
        raise DataError(f"unsupported code table format {path.suffix!r}", path=path, fix="use .npy, .safetensors or .parquet")
    codes = np.asarray(codes)
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise DataError(f"code table must be a 2-d integer array, got {codes.dtype} {codes.shape}", path=path)
    if n_items is not None and len(codes) != n_items:
        raise DataError(f"code table has {len(codes)} rows for {n_items} items", path=path,
                        fix="encode the codes for this dataset (rows aligned with item_idx)")
    check_collision_free(codes, path)  # at load, not at the first validation's trie
    return codes.astype(np.int64), sizes


def item_codes(codes: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """(..., L) codes of item indices (...); padding items (< 0) get codes -1."""
    return torch.where(items[..., None] >= 0, codes[items.clamp(min=0)], -1)


class CodeTokens:
    """Maps codes to token ids: per-level offsets, padding 0 and a BOS token."""

    def __init__(self, vocab_sizes: list[int]):
        self.vocab_sizes = [int(v) for v in vocab_sizes]
        self.offsets = np.concatenate([[0], np.cumsum(self.vocab_sizes)[:-1]]).astype(np.int64)
        self.n_tokens = int(sum(self.vocab_sizes)) + 2  # + PAD + BOS
        self.bos = self.n_tokens - 1

    def tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """(..., t) codes of levels 0..t-1 -> token ids (codes < 0, i.e. padding, -> 0)."""
        off = torch.as_tensor(self.offsets[: codes.shape[-1]], device=codes.device)  # a prefix uses the first levels
        return torch.where(codes >= 0, codes + off + 1, 0)

    def level_tokens(self, codes: torch.Tensor, level: int) -> torch.Tensor:
        """Token ids of codes that all belong to one `level` (the step-wise decoding input)."""
        return codes + 1 + int(self.offsets[level])

    def level_slice(self, level: int) -> slice:
        start = 1 + int(self.offsets[level])
        return slice(start, start + self.vocab_sizes[level])


class Attention(nn.Module):
    """Multi-head attention (self or cross) with an optional key/value cache for step-wise decoding."""

    def __init__(self, d_model: int, n_heads: int, d_head: int, dropout: float):
        super().__init__()
        self.h, self.dh = n_heads, d_head
        self.q = nn.Linear(d_model, n_heads * d_head, bias=False)
        self.kv = nn.Linear(d_model, 2 * n_heads * d_head, bias=False)
        self.o = nn.Linear(n_heads * d_head, d_model, bias=False)
        self.drop = Dropout(dropout)  # on the attention weights (no parameters: the saved state is unchanged)

    def split(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, h*dh) -> (B, h, T, dh)
        return x.view(x.shape[0], x.shape[1], self.h, self.dh).transpose(1, 2)

    def keys_values(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(src).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor] | None = None,
                mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """x (B, T, d); kv: precomputed (B, h, S, dh) keys/values (default: from x); mask: bool, True = attend."""
        q = self.split(self.q(x))
        k, v = self.keys_values(x) if kv is None else kv
        y = scaled_attention(q, k, v, mask, self.drop, causal)
        return self.o(y.transpose(1, 2).reshape(x.shape[0], x.shape[1], self.h * self.dh))


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.fc, self.proj, self.drop = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model), Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(self.drop(F.relu(self.fc(x)))))


class Block(nn.Module):
    """Pre-norm Transformer block: self-attention, optional cross-attention, feed-forward."""

    def __init__(self, d_model: int, n_heads: int, d_head: int, d_ff: int, dropout: float, cross: bool = False):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(d_model), Attention(d_model, n_heads, d_head, dropout)
        self.ln_x, self.xattn = (nn.LayerNorm(d_model), Attention(d_model, n_heads, d_head, dropout)) if cross else (None, None)
        self.ln2, self.ff = nn.LayerNorm(d_model), FeedForward(d_model, d_ff, dropout)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False,
                memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None, memory_mask: torch.Tensor | None = None,
                cache: "KVCache | None" = None, layer: int = 0) -> torch.Tensor:
        """Full-sequence pass; with `cache`, the self-attention keys/values are stored for later `step`s."""
        h = self.ln1(x)
        kv = None
        if cache is not None:
            kv = cache.extend(layer, *self.attn.keys_values(h))
        x = x + self.drop(self.attn(h, kv=kv, mask=mask, causal=causal))
        if self.xattn is not None:
            x = x + self.drop(self.xattn(self.ln_x(x), kv=memory_kv, mask=memory_mask))
        return x + self.ff(self.ln2(x))

    def step(self, x: torch.Tensor, cache: "KVCache", layer: int, self_mask: torch.Tensor | None = None,
             memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
             memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """One new position per row, x (rows, 1, d), attending to the cached prefix (eval mode, no dropout).

        Cross-attention groups rows by user: memory keys/values are (users, h, S, dh) and rows are
        user-major (rows = users * beams), so each user's beams are its queries and memory is never copied.
        """
        a = self.attn
        h = self.ln1(x)
        q = a.split(a.q(h))
        k, v = cache.extend(layer, *a.keys_values(h))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=self_mask)
        x = x + a.o(y.transpose(1, 2).reshape(x.shape[0], 1, a.h * a.dh))
        if self.xattn is not None and memory_kv is not None:
            c, users = self.xattn, memory_kv[0].shape[0]
            q = c.q(self.ln_x(x)).view(users, -1, c.h, c.dh).transpose(1, 2)  # (users, h, beams, dh)
            y = F.scaled_dot_product_attention(q, *memory_kv, attn_mask=memory_mask)
            x = x + c.o(y.transpose(1, 2).reshape(x.shape[0], 1, c.h * c.dh))
        return x + self.ff(self.ln2(x))


class KVCache:
    """Per-layer self-attention keys/values of the decoded prefix, rows reordered as beams move."""

    def __init__(self, n_layers: int):
        self.k: list[torch.Tensor | None] = [None] * n_layers
        self.v: list[torch.Tensor | None] = [None] * n_layers

    def copy(self) -> "KVCache":
        """An independent cache over the same tensors (`reorder` and `extend` replace tensors, never write them)."""
        out = KVCache(0)
        out.k, out.v = list(self.k), list(self.v)
        return out

    def reorder(self, parents: torch.Tensor) -> None:
        self.k = [t.index_select(0, parents) for t in self.k]
        self.v = [t.index_select(0, parents) for t in self.v]

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k[layer] is not None:
            k, v = torch.cat([self.k[layer], k], 2), torch.cat([self.v[layer], v], 2)
        self.k[layer], self.v[layer] = k, v
        return k, v


def next_item_pairs(train: Sequences, max_history: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (history prefix -> next item) pair: (n_pairs, max_history) left-padded histories (-1 = pad) and targets."""
    lengths = train.lengths
    pos = np.arange(len(train.items)) - np.repeat(train.offsets[:-1], lengths)  # position within its sequence
    target_at = np.flatnonzero(pos >= 1)  # flat index of every target
    start = np.repeat(train.offsets[:-1], lengths)[target_at]
    idx = target_at[:, None] - max_history + np.arange(max_history)[None, :]
    hist = np.where(idx >= start[:, None], train.items[np.maximum(idx, 0)], -1)
    return hist, train.items[target_at]


def user_buckets(users: np.ndarray | None, n: int, n_buckets: int) -> np.ndarray:
    """Hashed user token (TIGER: 2,000 buckets); 0 when disabled or unknown."""
    if n_buckets <= 0 or users is None:
        return np.zeros(n, dtype=np.int64)
    return (np.asarray(users, dtype=np.int64) * 2654435761 % (2**32)) % n_buckets + 1


def bucketed_batches(n_rows: int, batch_size: int, rng: np.random.Generator, lengths: np.ndarray | None = None,
                     pool: int = 32) -> list[np.ndarray]:
    """Random batches; with `lengths`, rows of similar length share a batch (pools of `pool` batches)."""
    order = rng.permutation(n_rows)
    if lengths is not None:
        step = batch_size * pool
        order = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in np.split(order, range(step, n_rows, step))])
    batches = [order[i:i + batch_size] for i in range(0, n_rows, batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def trim_left(hist: np.ndarray) -> np.ndarray:
    """Drop leading columns that are padding (-1) in every row of a left-padded batch (keep at least one)."""
    filled = (hist >= 0).any(axis=0)
    first = int(np.argmax(filled)) if filled.any() else hist.shape[1] - 1
    return hist[:, first:]
