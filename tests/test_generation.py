"""Catalogue trie and batched constrained beam search: structure, updates, and equivalence with a naive search."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semrec.errors import DataError
from semrec.generation import CodeTrie, beam_search, reference_beam_search

CODES = np.array([[0, 1, 0], [0, 1, 1], [0, 2, 0], [1, 0, 0], [2, 2, 0]])  # item i has row i


def test_trie_structure_children_and_lookup():
    trie = CodeTrie(CODES, vocab_sizes=[3, 3, 2])
    assert [len(lv.code) for lv in trie.levels] == [3, 4, 5]  # distinct prefixes of length 1, 2, 3
    codes, child, valid = trie.children(0, torch.tensor([0]))
    assert codes[valid].tolist() == [0, 1, 2]
    # node for prefix (0,) is child 0 of the root; its children are codes 1 and 2
    codes, child, valid = trie.children(1, torch.tensor([0]))
    assert codes[valid].tolist() == [1, 2]
    assert trie.allowed_mask(1, torch.tensor([0, 1, 2])).tolist() == [[False, True, True], [True, False, False],
                                                                      [False, False, True]]
    assert trie.lookup(torch.as_tensor(CODES)).tolist() == [0, 1, 2, 3, 4]
    assert trie.lookup(torch.tensor([[0, 0, 0], [2, 2, 1], [1, 0, 0]])).tolist() == [-1, -1, 3]


def test_trie_add_remove_and_errors():
    trie = CodeTrie(CODES, vocab_sizes=[3, 3, 2])
    trie.add(np.array([7]), np.array([[1, 1, 1]]))
    assert trie.n_active == 6 and trie.lookup(torch.tensor([[1, 1, 1]])).tolist() == [7]
    trie.remove(np.array([0, 3]))
    assert trie.lookup(torch.as_tensor(CODES)).tolist() == [-1, 1, 2, -1, 4]
    assert trie.subset(items=np.array([1, 2])).n_active == 2
    with pytest.raises(DataError, match="share the code"):
        trie.add(np.array([8]), np.array([[0, 1, 1]]))  # collides with item 1
    assert trie.n_active == 4  # the failed add left the trie unchanged
    with pytest.raises(DataError, match="outside"):
        trie.add(np.array([9]), np.array([[0, 1, 5]]))


def random_codes(n_items: int, vocab: list[int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    flat = rng.choice(int(np.prod(vocab)), size=n_items, replace=False)  # distinct codes
    return np.stack(np.unravel_index(flat, vocab), 1).astype(np.int64)


class TinyAutoregressive(torch.nn.Module):
    """A small random model of p(code_l | user, prefix) used to compare the two searches."""

    def __init__(self, vocab: list[int], n_users: int, d: int = 16):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.vocab = vocab
        self.user = torch.randn(n_users, d, generator=g)
        self.emb = [torch.randn(v, d, generator=g) for v in vocab]
        self.out = [torch.randn(d, v, generator=g) for v in vocab]

    def logp(self, users: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        h = self.user[users].clone()
        for l in range(prefix.shape[1]):
            h = torch.tanh(h + self.emb[l][prefix[:, l]])
        return torch.log_softmax(h @ self.out[prefix.shape[1]], -1)

    def step_fn(self, users: torch.Tensor):
        state = {"rows": users, "prefix": torch.zeros(len(users), 0, dtype=torch.int64)}

        def step(level, tokens, parents):
            if level > 0:  # reorder like a key/value cache, then append
                state["rows"] = state["rows"][parents]
                state["prefix"] = torch.cat([state["prefix"][parents], tokens[:, None]], 1)
            return self.logp(state["rows"], state["prefix"])

        return step


@pytest.mark.parametrize("beam,k", [(5, 5), (8, 3), (40, 10)])
def test_batched_search_equals_naive_reference(beam, k):
    vocab = [6, 5, 4]
    codes = random_codes(60, vocab, seed=beam)
    items = np.random.default_rng(1).permutation(100)[:60]  # item ids need not be 0..n-1
    table = np.full((100, 3), -1)
    table[items] = codes
    trie = CodeTrie(table, vocab)
    model = TinyAutoregressive(vocab, n_users=7)
    users = torch.arange(7)
    got_items, got_scores = beam_search(model.step_fn(users), trie, len(users), beam, k)
    for u in range(7):
        fn = lambda prefix: model.logp(torch.tensor([u]), torch.tensor([prefix], dtype=torch.int64).view(1, -1))[0].tolist()  # noqa: E731
        ref_items, ref_scores = reference_beam_search(fn, codes.tolist(), items.tolist(), beam, k)
        assert got_items[u].tolist() == ref_items
        np.testing.assert_allclose(got_scores[u].numpy(), ref_scores, rtol=1e-5, atol=1e-5)
    assert len(set(got_items[0].tolist())) == k  # distinct items


def test_search_never_returns_invalid_items_and_pads_small_catalogues():
    vocab = [4, 4]
    codes = np.array([[0, 1], [3, 2], [3, 0]])
    trie = CodeTrie(codes, vocab)
    model = TinyAutoregressive(vocab, n_users=3)
    items, scores = beam_search(model.step_fn(torch.arange(3)), trie, 3, beam=5, k=5)
    assert sorted(items[0, :3].tolist()) == [0, 1, 2]
    assert items[:, 3:].eq(-1).all() and torch.isinf(scores[:, 3:]).all()
    # the score of each item is its exact sequence log-probability
    u, it = 1, int(items[1, 0])
    c = torch.as_tensor(codes[it])
    lp = model.logp(torch.tensor([u]), c[:0].view(1, 0))[0, c[0]] + model.logp(torch.tensor([u]), c[:1].view(1, 1))[0, c[1]]
    assert float(scores[1, 0]) == pytest.approx(float(lp), abs=1e-5)


def test_disambiguate_renumbers_last_level():
    from semrec.generation import disambiguate

    codes = np.array([[1, 2, 0], [0, 0, 0], [1, 2, 0], [1, 2, 5], [0, 1, 0]])
    assert disambiguate(codes).tolist() == [[1, 2, 0], [0, 0, 0], [1, 2, 1], [1, 2, 2], [0, 1, 0]]


@pytest.mark.parametrize("arch,unseen_last_code", [(arch, mode) for arch in ("tiger", "tiger-decoder", "tiger-hier")
                                                    for mode in ("model", "siblings")])
def test_reserved_search_shares_the_users_encoding_and_returns_what_re_encoding_returns(arch, unseen_last_code):
    """reserve_new runs a second search over the unseen items' trie from the same encoding of the users
    (`step_factory`); the lists equal those of encoding the users again for that search (the old path)."""
    from semrec.data import Sequences
    from semrec.models import get_model_class
    from tests.generative_checks import random_codes

    torch.manual_seed(0)
    codes = random_codes(60, [4, 4, 4], seed=1)
    model = get_model_class(arch)(60, codes=codes, unseen_last_code=unseen_last_code).build()
    model.module.eval()
    model.seen = np.arange(60) % 5 != 0  # 12 items never trained
    model.config.reserve_new = 0.4
    rng = np.random.default_rng(2)
    hist = Sequences.from_lists([rng.integers(0, 60, int(n)).tolist() for n in rng.integers(1, 9, 7)])
    items, scores = model.recommend(hist, k=5, beam=6)
    assert np.isin(items[:, [2, 4]], np.flatnonzero(~model.seen)).all()
    shared = model.step_factory
    model.step_factory = lambda *a: (lambda: shared(*a)())  # every search encodes the users anew
    again_items, again_scores = model.recommend(hist, k=5, beam=6)
    assert items.tolist() == again_items.tolist()
    np.testing.assert_allclose(scores, again_scores, atol=1e-5)


@pytest.mark.parametrize("arch", ["tiger", "tiger-decoder", "tiger-hier"])
def test_unseen_item_scores_as_the_mean_probability_of_its_trained_siblings(arch):
    """unseen_last_code=siblings: an item never trained scores log(mean p) of the trained items under its prefix,
    i.e. logsumexp of their full scores minus log(count); read off an exhaustive search (beam >= every level)."""
    from semrec.data import Sequences
    from semrec.models import get_model_class
    from tests.generative_checks import random_codes

    torch.manual_seed(0)
    codes = random_codes(60, [4, 4, 4], seed=1)
    model = get_model_class(arch)(60, codes=codes, unseen_last_code="siblings").build()
    model.module.eval()
    model.seen = np.arange(60) % 5 != 0
    hist = Sequences.from_lists([[1, 2, 3], [7, 8], [11]])
    items, scores = model.recommend(hist, k=60, beam=60)
    checked = 0
    for row_items, row_scores in zip(items, scores):
        score = dict(zip(row_items.tolist(), row_scores.tolist()))
        for item in np.flatnonzero(~model.seen):
            sib = [j for j in np.flatnonzero(model.seen) if (model.codes[j, :-1] == model.codes[item, :-1]).all()]
            if sib:
                expected = float(torch.logsumexp(torch.tensor([score[j] for j in sib]), 0)) - np.log(len(sib))
                assert score[int(item)] == pytest.approx(expected, abs=1e-4)
                checked += 1
    assert checked >= 3
