"""The catalogue trie over semantic IDs, compiled to flat tensors for batched constrained decoding.

Every item is a path of `n_levels` codes. Level `l` holds the distinct length-`l` prefixes as nodes
(level 0 is the root, level `n_levels` the items). Children of a node are stored CSR-style, sorted by
code, so a whole batch of beams finds its allowed next codes with one gather (no Python loop over beams)
and a chosen code maps to its child node with one `searchsorted`. The code table stays in the trie, so
items can be added or removed (and the tensors recompiled in milliseconds) without retraining a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from semrec.errors import DataError


@dataclass
class TrieLevel:
    """Transitions from the nodes of one level to the next: CSR children sorted by (parent, code)."""

    ptr: torch.Tensor  # (n_parents + 1,) int64: children of parent p are rows ptr[p]:ptr[p+1]
    code: torch.Tensor  # (n_children,) int64 code of each child
    key: torch.Tensor  # (n_children,) int64 parent * vocab + code, sorted (for searchsorted)
    vocab: int  # codes at this level lie in [0, vocab)
    max_degree: int  # most children of any parent (width of the candidate gather)


def disambiguate(codes: np.ndarray) -> np.ndarray:
    """Make a code table collision-free by renumbering its last level: items sharing all other levels get
    0, 1, 2, ... in item order (the TIGER extra level). Vectorised; returns a new table."""
    codes = np.asarray(codes, dtype=np.int64).copy()
    _, group = np.unique(codes[:, :-1], axis=0, return_inverse=True)
    group = group.ravel()
    order = np.argsort(group, kind="stable")
    first = np.searchsorted(group[order], group[order])
    codes[order, -1] = np.arange(len(codes)) - first
    return codes


class CodeTrie:
    """Prefix tree of the item codes that are currently recommendable.

    `codes` is the (n_items, n_levels) int64 code table aligned with item_idx (rows of removed or not-yet-coded
    items may hold -1). `active` marks the items that may be generated. Codes must be collision-free among
    active items: two items with the same code could not be told apart by a generative model.
    """

    def __init__(self, codes: np.ndarray, vocab_sizes: list[int] | None = None, active: np.ndarray | None = None,
                 device: str | torch.device = "cpu"):
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[1] == 0:
            raise DataError(f"code table must be (n_items, n_levels), got shape {codes.shape}",
                            fix="pass the int64 code table produced by semrec.semantic_ids")
        self.codes = codes.copy()
        self.n_levels = codes.shape[1]
        if vocab_sizes is None:
            vocab_sizes = [int(codes[:, l].max(initial=0)) + 1 for l in range(self.n_levels)]
        self.vocab_sizes = [int(v) for v in vocab_sizes]
        if len(self.vocab_sizes) != self.n_levels:
            raise DataError(f"{len(self.vocab_sizes)} vocab sizes for {self.n_levels} code levels")
        self.active = (codes.min(axis=1) >= 0) if active is None else np.asarray(active, dtype=bool).copy()
        self.device = torch.device(device)
        self.compile()

    # ------------------------------------------------------------------ construction
    def compile(self) -> "CodeTrie":
        """Rebuild the tensors from the code table and the active mask (vectorised, O(n log n))."""
        items = np.flatnonzero(self.active)
        if len(items) == 0:
            raise DataError("the trie has no active items", fix="add items before decoding")
        codes = self.codes[items]
        for l, v in enumerate(self.vocab_sizes):
            bad = np.flatnonzero((codes[:, l] < 0) | (codes[:, l] >= v))
            if len(bad):
                raise DataError(f"item {items[bad[0]]} has code {codes[bad[0], l]} at level {l}, outside [0, {v})",
                                field=f"codes[:, {l}]", fix="re-encode the item with the model's tokenizer")
        order = np.lexsort(codes.T[::-1])  # sort items by their full code
        codes, items = codes[order], items[order]
        dup = np.flatnonzero((codes[1:] == codes[:-1]).all(axis=1))
        if len(dup):
            raise DataError(f"items {items[dup[0]]} and {items[dup[0] + 1]} share the code {codes[dup[0]].tolist()}",
                            fix="use a collision-free code table (add a disambiguation level)")
        # node id of every item's prefix at each level: a new node starts wherever the prefix changes
        new_prefix = np.ones((len(items), self.n_levels), dtype=bool)
        diff = codes[1:] != codes[:-1]
        new_prefix[1:] = np.logical_or.accumulate(diff, axis=1)  # prefix of length l+1 differs
        node = np.cumsum(new_prefix, axis=0) - 1  # (n, L): node id of prefix codes[:, :l+1] at level l+1
        parent = np.concatenate([np.zeros((len(items), 1), np.int64), node[:, :-1]], axis=1)
        self.levels: list[TrieLevel] = []
        for l in range(self.n_levels):
            rows = np.flatnonzero(new_prefix[:, l])  # first item of each child node, in child-id order
            par, code = parent[rows, l], codes[rows, l]
            n_parents = int(parent[-1, l]) + 1
            counts = np.bincount(par, minlength=n_parents)
            ptr = np.zeros(n_parents + 1, dtype=np.int64)
            np.cumsum(counts, out=ptr[1:])
            t = lambda a: torch.as_tensor(a, dtype=torch.int64, device=self.device)  # noqa: E731
            self.levels.append(TrieLevel(t(ptr), t(code), t(par * self.vocab_sizes[l] + code),
                                         self.vocab_sizes[l], int(counts.max())))
        self.leaf_item = torch.as_tensor(items, dtype=torch.int64, device=self.device)  # leaf node id -> item_idx
        return self

    @property
    def n_active(self) -> int:
        return int(self.active.sum())

    def to(self, device: str | torch.device) -> "CodeTrie":
        self.device = torch.device(device)
        return self.compile()

    def add(self, items: np.ndarray, codes: np.ndarray) -> "CodeTrie":
        """Make `items` (indices, possibly beyond the current table) recommendable with the given codes."""
        items = np.atleast_1d(np.asarray(items, dtype=np.int64))
        codes = np.asarray(codes, dtype=np.int64).reshape(len(items), self.n_levels)
        n = max(len(self.codes), int(items.max(initial=-1)) + 1)
        if n > len(self.codes):
            grow = n - len(self.codes)
            self.codes = np.concatenate([self.codes, np.full((grow, self.n_levels), -1, np.int64)])
            self.active = np.concatenate([self.active, np.zeros(grow, bool)])
        old_codes, old_active = self.codes[items].copy(), self.active[items].copy()
        self.codes[items], self.active[items] = codes, True
        try:
            return self.compile()
        except DataError:
            self.codes[items], self.active[items] = old_codes, old_active
            raise

    def remove(self, items: np.ndarray) -> "CodeTrie":
        """Stop recommending `items` (their codes are kept, so `activate` can bring them back)."""
        self.active[np.atleast_1d(np.asarray(items, dtype=np.int64))] = False
        return self.compile()

    def subset(self, items: np.ndarray | None = None, mask: np.ndarray | None = None) -> "CodeTrie":
        """A trie over only the given active items (e.g. the cold-start items), same vocabulary."""
        keep = np.zeros(len(self.codes), bool)
        if mask is not None:
            keep[: len(mask)] = mask
        if items is not None:
            keep[np.asarray(items, dtype=np.int64)] = True
        return CodeTrie(self.codes, self.vocab_sizes, keep & self.active, self.device)

    # ------------------------------------------------------------------ queries used by beam search
    def children(self, level: int, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Allowed next codes of `nodes` (any shape, level-`level` node ids) padded to the level's max degree.

        Returns (codes, child_nodes, valid), each of shape nodes.shape + (max_degree,). Invalid slots hold
        code 0 / child 0 and valid False.
        """
        lv = self.levels[level]
        start = lv.ptr[nodes]
        degree = lv.ptr[nodes + 1] - start
        j = torch.arange(lv.max_degree, device=nodes.device)
        valid = j < degree.unsqueeze(-1)
        idx = torch.where(valid, start.unsqueeze(-1) + j, 0)
        # child node ids are their row positions in the CSR arrays, by construction
        return lv.code[idx], idx, valid

    def child(self, level: int, nodes: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Child node id reached from `nodes` by `codes` (-1 where that prefix is not in the catalogue)."""
        lv = self.levels[level]
        key = nodes * lv.vocab + codes
        pos = torch.searchsorted(lv.key, key).clamp(max=len(lv.key) - 1)
        return torch.where(lv.key[pos] == key, pos, -1)

    def allowed_mask(self, level: int, nodes: torch.Tensor) -> torch.Tensor:
        """Dense boolean mask nodes.shape + (vocab,) of the codes allowed after each node."""
        codes, _, valid = self.children(level, nodes)
        vocab = self.levels[level].vocab
        mask = torch.zeros(*nodes.shape, vocab + 1, dtype=torch.bool, device=nodes.device)
        mask.scatter_(-1, torch.where(valid, codes, vocab), True)  # invalid slots land in the spare column
        return mask[..., :vocab]

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Item index of each full code (..., n_levels); -1 where the code is not an active item."""
        node = torch.zeros(codes.shape[:-1], dtype=torch.int64, device=codes.device)
        for l in range(self.n_levels):
            nxt = self.child(l, node.clamp(min=0), codes[..., l])
            node = torch.where(node >= 0, nxt, -1)
        return torch.where(node >= 0, self.leaf_item[node.clamp(min=0)], -1)

    def __repr__(self) -> str:
        widths = [len(lv.code) for lv in self.levels]
        return f"CodeTrie(items={self.n_active:,}, levels={self.n_levels}, nodes per level={widths})"
