"""Shared checks for the generative models' tests: collision-free random codes, and the batched cached
`recommend` compared with the plain-Python reference beam search over the model's uncached path."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from semrec.data import Sequences
from semrec.generation import reference_beam_search


def random_codes(n_items: int, vocab: list[int], seed: int = 0) -> np.ndarray:
    flat = np.random.default_rng(seed).choice(int(np.prod(vocab)), size=n_items, replace=False)
    return np.stack(np.unravel_index(flat, vocab), 1).astype(np.int64)


def assert_recommend_matches_reference(model, hist: Sequences, max_history: int, beam: int, k: int,
                                       next_code_logp: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
                                       ) -> tuple[np.ndarray, np.ndarray]:
    """`next_code_logp(hist_codes (1, H, L), hist_items (1, H), prefix (1, t))` is the model's uncached path;
    returns what `recommend` gave, for further checks."""
    items, scores = model.recommend(hist, k=k, beam=beam)
    hp = torch.as_tensor(hist.to_padded(max_history, pad=-1))
    hc = torch.where(hp[..., None] >= 0, torch.as_tensor(model.codes)[hp.clamp(min=0)], -1)
    for u in range(len(hist)):
        def fn(prefix, u=u):
            p = torch.tensor(prefix, dtype=torch.int64).view(1, -1)
            return next_code_logp(hc[u:u + 1], hp[u:u + 1], p)[0].tolist()

        ref_items, ref_scores = reference_beam_search(fn, model.codes.tolist(), list(range(len(model.codes))),
                                                      beam=beam, k=k)
        assert items[u].tolist() == ref_items
        np.testing.assert_allclose(scores[u], ref_scores, atol=1e-4)
    return items, scores
