"""Batched constrained beam search over a `CodeTrie`: every user and every beam advance together as tensor ops.

The model is abstracted as a step function, so the encoder-decoder and decoder-only TIGER (and any later
generative model) share one search. The step function owns its key/value cache; the search tells it which
previous row each new row continues (`parents`) and which code it appended (`tokens`), so the cache is
reordered with one `index_select` per step.
"""

from __future__ import annotations

from typing import Protocol

import torch

from semrec.generation.trie import CodeTrie

NEG_INF = float("-inf")


class StepFn(Protocol):
    def __call__(self, level: int, tokens: torch.Tensor | None, parents: torch.Tensor | None) -> torch.Tensor:
        """Log-probabilities (rows, vocab of `level`) of the next code.

        At level 0 `tokens`/`parents` are None and rows = batch. At level l > 0 row r continues previous
        row `parents[r]` with code `tokens[r]` (chosen at level l-1) and rows = batch * beam.
        """


def beam_search(step: StepFn, trie: CodeTrie, batch_size: int, beam: int, k: int | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-`k` distinct catalogue items per user by total code log-probability, best first.

    Returns (items, scores), both (batch, k); items are item_idx (-1 with score -inf only when the trie
    holds fewer than k items). Only codes of active items are ever expanded, so every result is a real item;
    codes are collision-free, so the k beams are k distinct items.
    """
    k = beam if k is None else k
    if k > beam:
        raise ValueError(f"k={k} needs a beam of at least k (got beam={beam})")
    dev = trie.device
    nodes = torch.zeros(batch_size, 1, dtype=torch.int64, device=dev)  # (B, beams so far): current trie node
    scores = torch.zeros(batch_size, 1, device=dev)
    tokens = parents = None
    for level in range(trie.n_levels):
        logp = step(level, tokens, parents)  # (B * n_beams, V)
        n_beams = nodes.shape[1]
        codes, child, valid = trie.children(level, nodes)  # (B, n_beams, D)
        d = codes.shape[-1]
        cand = logp.view(batch_size, n_beams, -1).float().gather(-1, codes)
        cand = torch.where(valid, cand + scores.unsqueeze(-1), NEG_INF).view(batch_size, n_beams * d)
        width = min(beam, n_beams * d)
        scores, idx = cand.topk(width, dim=1)  # sorted, best first
        src_beam = torch.div(idx, d, rounding_mode="floor")
        tokens = codes.view(batch_size, -1).gather(1, idx)
        nodes = child.view(batch_size, -1).gather(1, idx)
        parents = (src_beam + n_beams * torch.arange(batch_size, device=dev).unsqueeze(1)).flatten()
        tokens = tokens.flatten()
    items = torch.where(torch.isfinite(scores), trie.leaf_item[nodes], -1)
    if items.shape[1] < k:  # fewer items in the catalogue than asked for
        pad = k - items.shape[1]
        items = torch.cat([items, items.new_full((batch_size, pad), -1)], 1)
        scores = torch.cat([scores, scores.new_full((batch_size, pad), NEG_INF)], 1)
    return items[:, :k], scores[:, :k]


def reference_beam_search(logprob_fn, trie_codes: list[list[int]], item_ids: list[int], beam: int, k: int
                          ) -> tuple[list[int], list[float]]:
    """Plain-Python beam search for one user (the specification the batched search is tested against).

    `logprob_fn(prefix) -> list[float]` gives log-probabilities of the next code after `prefix` (a list of codes).
    """
    n_levels = len(trie_codes[0])
    beams: list[tuple[float, list[int]]] = [(0.0, [])]
    for level in range(n_levels):
        cands = []
        for score, prefix in beams:
            allowed = sorted({tuple(c)[level] for c in trie_codes if list(c[:level]) == prefix})
            logp = logprob_fn(prefix)
            cands += [(score + logp[c], prefix + [c]) for c in allowed]
        cands.sort(key=lambda t: -t[0])
        beams = cands[:beam]
    by_code = {tuple(c): i for c, i in zip(trie_codes, item_ids)}
    return [by_code[tuple(p)] for _, p in beams[:k]], [s for s, _ in beams[:k]]
