from collections import defaultdict

import numpy as np
import pytest

from semrec.data import SyntheticConfig, leave_one_out, synthetic_dataset
from semrec.data.sequences import Sequences
from semrec.errors import ConfigError
from semrec.evaluation import evaluate
from semrec.models import ItemKNN, MostPop, Recommender, get_model_class
from semrec.models.itemknn import top_n_per_row, transition_counts


def test_mostpop_ranks_by_training_count_with_index_tie_break():
    m = MostPop(4).fit(Sequences.from_lists([[0, 1], [1, 2], [1]]))  # counts 1, 3, 1, 0
    ids, scores = m.recommend(Sequences.from_lists([[3], [0, 1]]), k=3)
    assert ids.tolist() == [[1, 0, 2], [1, 0, 2]]
    assert scores[0].round().tolist() == [3, 1, 1]
    ids, _ = m.recommend(Sequences.from_lists([[3], [0, 1]]), k=3, exclude=Sequences.from_lists([[3], [0, 1]]))
    assert ids[0].tolist() == [1, 0, 2] and ids[1, :2].tolist() == [2, 3]  # only 2 unmasked items in row 1


def test_mostpop_exclusion_puts_masked_items_last():
    m = MostPop(4).fit(Sequences.from_lists([[0, 1], [1, 2], [1]]))
    ids, scores = m.recommend(Sequences.from_lists([[0, 1]]), k=4, exclude=Sequences.from_lists([[0, 1]]))
    assert ids[0, :2].tolist() == [2, 3] and np.isinf(scores[0, 2:]).all()


def test_itemknn_hand_example():
    train = Sequences.from_lists([[0, 1, 2]])
    m = ItemKNN(4, window=2, distance_decay=0.5, backward_weight=0.0, alpha=0.5, history_items=5, history_decay=0.7,
                popularity_prior=0.0).fit(train)
    # transitions 0->1 (1), 1->2 (1), 0->2 (0.5); every frequency is 1 so cosine leaves them as they are
    assert m.sim.toarray()[[0, 0, 1], [1, 2, 2]].tolist() == [1.0, 0.5, 1.0]
    s = m.score(Sequences.from_lists([[0], [0, 1]])).numpy()
    assert s[0].tolist() == pytest.approx([0, 1.0, 0.5, 0])
    assert s[1].tolist() == pytest.approx([0, 0.7, 1.0 + 0.7 * 0.5, 0])  # latest item 1 weighs 1, item 0 weighs 0.7


def test_itemknn_counts_match_brute_force_and_pruning_keeps_top_n():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 12, size=rng.integers(1, 9)).tolist() for _ in range(40)]
    c = transition_counts(Sequences.from_lists(seqs), 12, window=3, distance_decay=0.5, backward_weight=0.25)
    ref = defaultdict(float)
    for s in seqs:
        for i in range(len(s)):
            for g in range(1, 4):
                if i + g < len(s):
                    ref[s[i], s[i + g]] += 0.5 ** (g - 1)
                    ref[s[i + g], s[i]] += 0.25 * 0.5 ** (g - 1)
    dense = np.zeros((12, 12))
    for (a, b), v in ref.items():
        dense[a, b] = v
    assert np.allclose(c.toarray(), dense)
    pruned = top_n_per_row(c, 2).toarray()
    assert ((pruned > 0).sum(axis=1) <= 2).all()
    assert np.allclose(np.sort(pruned, axis=1)[:, -2:], np.sort(dense, axis=1)[:, -2:])


def test_simple_models_save_load_and_registry(tmp_path):
    sp = leave_one_out(synthetic_dataset(SyntheticConfig(n_users=300, n_items=150, seed=2)))
    for name in ("mostpop", "itemknn"):
        m = get_model_class(name)(sp.n_items).fit(sp.train)
        m.save(tmp_path / name)
        back = Recommender.load(tmp_path / name)
        a, b = m.recommend(sp.test.histories, k=10), back.recommend(sp.test.histories, k=10)
        assert type(back) is type(m) and np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1])
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        get_model_class("nope")


def test_itemknn_beats_mostpop_on_synthetic(synthetic):
    sp = leave_one_out(synthetic)
    pop = evaluate(MostPop(sp.n_items).fit(sp.train), sp.test).metrics["ndcg@10"]
    knn = evaluate(ItemKNN(sp.n_items).fit(sp.train), sp.test).metrics["ndcg@10"]
    assert knn > pop * 1.3


def test_top_k_orders_ties_by_item_index():
    import torch

    from semrec.models.base import top_k

    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0, 2.0],    # tie inside the top 2 and across the boundary
                           [5.0, 1.0, 1.0, 1.0, 1.0, 1.0],    # four-way tie across the boundary
                           [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])   # all equal
    vals, idx = top_k(scores, 3)
    assert idx.tolist() == [[1, 2, 4], [0, 1, 2], [0, 1, 2]]
    assert vals.tolist() == [[3.0, 3.0, 3.0], [5.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    big = torch.randn(64, 500).round(decimals=1)  # many ties, random positions
    v, i = top_k(big, 20)
    ref = torch.sort(big, dim=1, descending=True, stable=True)
    assert torch.equal(i, ref.indices[:, :20]) and torch.equal(v, ref.values[:, :20])
