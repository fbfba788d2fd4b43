"""TIGER encoder-decoder: cached decoding equals the uncached model, trie-constrained recommend, save/load,
catalogue updates without retraining, and cold-start reservation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semrec.data import Sequences
from semrec.generation import reference_beam_search
from semrec.models.base import Recommender, get_model_class
from semrec.models.tiger import Tiger
from semrec.models.tiger_layers import next_item_pairs
from tests.generative_checks import random_codes

TINY = dict(encoder_layers=1, decoder_layers=2, d_model=16, n_heads=2, d_head=8, d_ff=32, max_history=5,
            epochs=2, batch_size=32, warmup_steps=5, beam=6, dropout=0.0)


@pytest.fixture(scope="module")
def trained():
    n_items, vocab = 40, [4, 4, 3]
    rng = np.random.default_rng(0)
    train = Sequences.from_lists([rng.integers(0, 30, rng.integers(3, 9)).tolist() for _ in range(60)])
    model = Tiger(n_items, codes=random_codes(n_items, vocab), **TINY).fit(train)
    return model, train


def test_next_item_pairs_every_prefix():
    hist, target = next_item_pairs(Sequences.from_lists([[5, 6, 7], [8, 9]]), max_history=2)
    assert target.tolist() == [6, 7, 9]
    assert hist.tolist() == [[-1, 5], [5, 6], [-1, 8]]


def test_registered_and_item_input_on_cpu(trained):
    model, _ = trained
    assert get_model_class("tiger") is Tiger
    losses = [r["loss"] for r in model.history.records]
    assert model.item_input and len(losses) == 2 and losses[-1] < losses[0]


def test_recommend_equals_naive_search_on_uncached_model(trained):
    model, train = trained
    histories = train.select(np.arange(4))
    items, scores = model.recommend(histories, k=4, beam=6)
    net, codes = model.module, model.codes
    hist = torch.as_tensor(histories.to_padded(5, pad=-1))
    hc = torch.where(hist[..., None] >= 0, torch.as_tensor(codes)[hist.clamp(min=0)], -1)
    for u in range(4):
        def fn(prefix, u=u):
            p = torch.tensor(prefix, dtype=torch.int64).view(1, -1)
            return net.next_code_logp(hc[u:u + 1], torch.zeros(1, dtype=torch.int64), p)[0].tolist()

        ref_items, ref_scores = reference_beam_search(fn, codes.tolist(), list(range(40)), beam=6, k=4)
        assert items[u].tolist() == ref_items
        np.testing.assert_allclose(scores[u], ref_scores, atol=1e-4)


def test_save_load_roundtrip_and_catalogue_updates(trained, tmp_path):
    model, train = trained
    hist = train.select(np.arange(3))
    items, scores = model.recommend(hist, k=5)
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    items2, scores2 = loaded.recommend(hist, k=5)
    assert np.array_equal(items, items2) and np.allclose(scores, scores2)
    # removing the top item takes it out of every list; adding a new item (index 40) makes it decodable
    top = items2[0, 0]
    loaded.remove_items(np.array([top]))
    assert top not in loaded.recommend(hist, k=5)[0]
    free = sorted(set(np.ndindex(4, 4, 3)) - set(map(tuple, loaded.codes.tolist())))[0]
    loaded.add_items(np.array([40]), np.array([free]))
    assert loaded.n_items == 41
    assert 40 in loaded.recommend(hist, k=40, beam=40)[0][0]


def test_exclude_and_reserve_new(trained):
    model, train = trained
    hist = train.select(np.arange(5))
    items, _ = model.recommend(hist, k=5, exclude=hist)
    for row, h in zip(items, hist.to_lists()):
        assert not set(row.tolist()) & set(h)
    unseen = np.flatnonzero(~model.seen)
    assert len(unseen) == 10  # items 30..39 never occur in training
    model.config.reserve_new = 0.4
    try:
        items, scores = model.recommend(hist, k=5)
    finally:
        model.config.reserve_new = 0.0
    # 2 of 5 slots, spread over the list: ranks ceil(1/0.4)-1 = 2 and min(ceil(2/0.4)-1, 4) = 4
    assert np.isin(items[:, [2, 4]], unseen).all() and not np.isin(items[:, [0, 1, 3]], unseen).any()
    assert all(len(set(r)) == 5 for r in items.tolist())


def test_load_codes_formats(tmp_path):
    from semrec.errors import DataError
    from semrec.models.tiger_layers import load_codes
    from semrec.semantic_ids.table import CodeTable

    codes = random_codes(6, [3, 3, 2])
    np.save(tmp_path / "c.npy", codes)
    CodeTable(codes, [3, 3, 2]).save(tmp_path / "ids" / "codes.safetensors")
    assert np.array_equal(load_codes(tmp_path / "c.npy", 6)[0], codes)
    got, sizes = load_codes(tmp_path / "ids")  # a `semrec ids fit` folder
    assert np.array_equal(got, codes) and sizes == [3, 3, 2]
    with pytest.raises(DataError, match="6 rows for 7 items"):
        load_codes(tmp_path / "c.npy", 7)
    model = Tiger(6, codes_path=str(tmp_path / "ids"), **TINY)
    assert model.vocab_sizes == [3, 3, 2]  # from the file's metadata, even where a code is unused
