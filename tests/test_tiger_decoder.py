"""Decoder-only TIGER: the one-pass all-prefix training layout equals per-pair training, and cached
trie-constrained decoding equals a naive search over the uncached model."""

from __future__ import annotations

import numpy as np
import torch

from semrec.data import Sequences
from semrec.models.base import Recommender, get_model_class
from semrec.models.tiger_decoder import TigerDecoder, training_windows, window_mask
from tests.generative_checks import assert_recommend_matches_reference, random_codes

TINY = dict(n_layers=2, d_model=16, n_heads=2, d_head=8, d_ff=32, max_history=4, epochs=2, batch_size=16,
            warmup_steps=5, beam=6, dropout=0.0)


def test_training_windows_cover_every_target_once():
    w = training_windows(Sequences.from_lists([[1, 2, 3, 4, 5, 6, 7], [8, 9], [10]]), max_history=3)
    assert w.tolist() == [[4, 5, 6, 7], [1, 2, 3, 4], [8, 9, -1, -1]]  # windows overlap by one item


def test_window_mask_small_case():
    m = window_mask(3, 3).int().tolist()  # items a b c, then codes of target b (2 slots) and target c (2 slots)
    assert m == [[1, 0, 0, 0, 0, 0, 0],
                 [1, 1, 0, 0, 0, 0, 0],
                 [1, 1, 1, 0, 0, 0, 0],
                 [1, 0, 0, 1, 0, 0, 0],  # first code of b sees a and itself
                 [1, 0, 0, 1, 1, 0, 0],
                 [1, 1, 0, 0, 0, 1, 0],  # first code of c sees a, b
                 [1, 1, 0, 0, 0, 1, 1]]


def test_one_pass_loss_equals_per_pair_loss():
    vocab = [4, 3, 3]
    codes = torch.as_tensor(random_codes(30, vocab))
    model = TigerDecoder(30, codes=codes.numpy(), **TINY).build()
    net = model.module.eval()
    win = torch.tensor([[3, 7, 1, 9, 2], [5, 6, 8, -1, -1]])
    wc = torch.where(win[..., None] >= 0, codes[win.clamp(min=0)], -1)
    one_pass = net(wc).item()
    losses = []
    for r in range(2):
        n = int((win[r] >= 0).sum())
        for t in range(1, n):
            hist = torch.full((1, 4, 3), -1)
            hist[0, 4 - t:] = codes[win[r, :t]]
            tgt = codes[win[r, t]]
            nll = -sum(net.next_code_logp(hist, None, tgt[:l].view(1, l))[0, tgt[l]] for l in range(3)) / 3
            losses.append(float(nll))
    assert abs(one_pass - np.mean(losses)) < 1e-4


def test_recommend_equals_naive_search_and_roundtrip(tmp_path):
    vocab = [4, 4, 3]
    rng = np.random.default_rng(0)
    train = Sequences.from_lists([rng.integers(0, 40, rng.integers(3, 9)).tolist() for _ in range(50)])
    model = TigerDecoder(40, codes=random_codes(40, vocab), **TINY).fit(train)
    assert get_model_class("tiger-decoder") is TigerDecoder
    hist = train.select(np.arange(4))
    items, scores = assert_recommend_matches_reference(
        model, hist, 4, beam=6, k=4, next_code_logp=lambda hc, hp, p: model.module.next_code_logp(hc, None, p))
    model.save(tmp_path / "m")
    items2, scores2 = Recommender.load(tmp_path / "m").recommend(hist, k=4, beam=6)
    assert np.array_equal(items, items2) and np.allclose(scores, scores2)
