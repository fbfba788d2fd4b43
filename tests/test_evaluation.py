import dataclasses
import math

import numpy as np
import pytest

from semrec.data import EvalSet, Sequences
from semrec.errors import ConfigError, DataError
from semrec.evaluation import EvalResult, bucket_labels, compare, evaluate, paired_tests
from semrec.models import MostPop
from tests.conftest import shared_path

N_ITEMS = 10
# row key (first history item) -> the model's full ranked list
LISTS = {0: [3, 1, 4, 9, 8, 6, 0, 2, 5, 7],
         1: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
         2: [0, 9, 8, 6, 5, 1, 2, 3, 4, 7],
         3: [2, 0, 1, 3, 4, 5, 6, 7, 8, 9]}


class Listed:
    """A stand-in model returning fixed rankings, keyed by the first history item."""

    name = "listed"
    n_items = N_ITEMS

    def recommend(self, histories, k=10, exclude=None):
        ranked = np.array([LISTS[int(histories[i][0])] for i in range(len(histories))])
        if exclude is not None:
            ranked = np.array([([x for x in r if x not in set(exclude[i].tolist())] + [-1] * 10)[:10]
                               for i, r in enumerate(ranked)])
        return ranked[:, :k], np.zeros((len(histories), k), dtype=np.float32)


def _evalset() -> EvalSet:
    hist = Sequences.from_lists([[0], [1, 4, 4], [2, 3], [3, 2, 2, 1, 0, 5]])
    targets = Sequences.from_lists([[4], [7], [0, 5, 5], [2]])  # duplicate 5 counts once
    return EvalSet(np.arange(4), hist, targets)


def test_metrics_match_hand_computed_values():
    r = evaluate(Listed(), _evalset(), ks=(2, 5), batch_size=3)  # batches of 3 + 1 rows
    # ranks: row0 target 4 at 2; row1 7 missing; row2 0 at 0 and 5 at 4; row3 2 at 0
    assert r.ranks.tolist() == [2, -1, 0, 4, 0]
    assert r.target_offsets.tolist() == [0, 1, 2, 4, 5]
    ndcg2_row2 = 1 / (1 + 1 / math.log2(3))
    ndcg5_row2 = (1 + 1 / math.log2(6)) / (1 + 1 / math.log2(3))
    expected = {"recall@2": (0 + 0 + 0.5 + 1) / 4, "recall@5": 3 / 4,
                "ndcg@2": (ndcg2_row2 + 1) / 4, "ndcg@5": (0.5 + ndcg5_row2 + 1) / 4,
                "mrr@2": (1 + 1) / 4, "mrr@5": (1 / 3 + 1 + 1) / 4, "mrr": (1 / 3 + 1 + 1) / 4}
    for k, v in expected.items():
        assert r.metrics[k] == pytest.approx(v, abs=1e-12), k
    assert r.row_metric("ndcg@5").tolist() == pytest.approx([0.5, 0.0, ndcg5_row2, 1.0])
    # top-2 lists: {3,1}, {0,1}, {0,9}, {2,0} -> 5 distinct of 10 items
    assert r.metrics["coverage@2"] == 0.5
    assert r.settings["exclude_history"] is False and r.settings["ks"] == [2, 5]


def test_exclude_history_masks_history_items_and_is_recorded():
    r = evaluate(Listed(), _evalset(), ks=(2, 5), exclude_history=True)
    # row1 history {1,4}: [0,2,3,5,6,7,...] puts 7 at 5, outside the top 5; row2 history {2,3} leaves the top 5
    # unchanged; row3 history holds its target 2, which is therefore never ranked
    assert r.ranks.tolist() == [2, -1, 0, 4, -1]
    assert r.settings["exclude_history"] is True
    with pytest.raises(ConfigError, match="excludes history"):
        compare(evaluate(Listed(), _evalset(), ks=(2, 5)), r)


def test_breakdowns_by_history_length_and_popularity():
    train = Sequences.from_lists([[4, 4, 4, 0], [2, 7]])  # counts: 4 -> 3, 0 -> 1, 2 -> 1, 7 -> 1
    r = evaluate(Listed(), _evalset(), ks=(2, 5), train=train)
    assert r.target_popularity.tolist() == [3, 1, 1, 1]  # row 2's first target (sorted) is item 0
    by_len = r.breakdown("history_length", edges=(2, 4))
    assert [(b["bucket"], b["rows"]) for b in by_len] == [("0-1", 1), ("2-3", 2), ("4+", 1)]
    assert by_len[1]["recall@5"] == 0.5  # rows 1 (miss) and 2 (both hits)
    by_pop = r.breakdown("popularity", edges=(2,), metrics=["recall@5"])
    assert by_pop == [{"bucket": "0-1", "rows": 3, "recall@5": pytest.approx(2 / 3)},
                      {"bucket": "2+", "rows": 1, "recall@5": 1.0}]
    assert bucket_labels((1, 5, 20)) == ["0", "1-4", "5-19", "20+"]


def test_save_load_round_trip(tmp_path):
    r = evaluate(Listed(), _evalset(), ks=(2, 5), train=Sequences.from_lists([[1, 2]]))
    r.save(tmp_path / "res")
    back = EvalResult.load(tmp_path / "res")
    assert back.metrics == r.metrics and back.ks == (2, 5) and np.array_equal(back.ranks, r.ranks)
    assert np.array_equal(back.target_popularity, r.target_popularity)
    assert back.settings == r.settings


def test_errors_name_the_problem():
    es = _evalset()
    with pytest.raises(ConfigError, match="exceeds the catalogue"):
        evaluate(Listed(), es, ks=(20,))
    bad = EvalSet(np.arange(1), Sequences.from_lists([[0]]), Sequences.from_lists([[]]))
    with pytest.raises(DataError, match="no target"):
        evaluate(Listed(), bad, ks=(2,))


def _result(ranks: np.ndarray) -> EvalResult:
    n = len(ranks)
    return EvalResult(metrics={}, ks=(10,), users=np.arange(n), target_offsets=np.arange(n + 1),
                      ranks=ranks.astype(np.int32), history_lengths=np.ones(n, dtype=np.int64),
                      settings={"exclude_history": False})


def test_compare_paired_significance_and_bootstrap():
    rng = np.random.default_rng(0)
    a = np.where(rng.random(4000) < 0.10, rng.integers(0, 10, 4000), -1)
    b = np.where(rng.random(4000) < 0.15, rng.integers(0, 10, 4000), -1)
    rows = {r["metric"]: r for r in compare(_result(a), _result(b), n_boot=500)}
    rec = rows["recall@10"]
    assert rec["delta"] == pytest.approx((b >= 0).mean() - (a >= 0).mean())
    assert rec["ci_low"] < rec["delta"] < rec["ci_high"] and rec["ci_low"] > 0
    assert rec["p_ttest"] < 1e-6 and rec["p_wilcoxon"] < 1e-6
    same = {r["metric"]: r for r in compare(_result(a), _result(a), n_boot=200)}["ndcg@10"]
    assert (same["delta"], same["ci_low"], same["ci_high"], same["p_ttest"]) == (0.0, 0.0, 0.0, 1.0)
    # paired t-test against scipy on a hand example: differences [1, 0, 1, 1] -> t = 3 with 3 dof
    assert paired_tests(np.zeros(4), np.array([1.0, 0, 1, 1]))["p_ttest"] == pytest.approx(0.0577, abs=1e-4)
    with pytest.raises(ConfigError, match="different rows"):
        compare(_result(a), _result(a[:-1]))
    ci = _result(a).confidence_interval("recall@10", n_boot=500)
    assert ci[0] < (a >= 0).mean() < ci[1]


def test_mostpop_on_beauty_matches_brute_force_and_is_fast():
    from semrec.data import leave_one_out
    from semrec.data.readers import read_s3rec

    sp = leave_one_out(read_s3rec(shared_path("amazon-beauty-s3rec", "Beauty.txt")))
    model = MostPop(sp.n_items).fit(sp.train)
    r = evaluate(model, sp.test, ks=(5, 10, 20), train=sp.train)
    counts = np.bincount(sp.train.items, minlength=sp.n_items)
    top = np.lexsort((np.arange(sp.n_items), -counts))[:20]  # most popular, ties by index
    pos = {int(item): p for p, item in enumerate(top)}
    ranks = np.array([pos.get(int(t), -1) for t in sp.test.targets.items])
    assert r.metrics["recall@10"] == pytest.approx(((ranks >= 0) & (ranks < 10)).mean(), abs=1e-12)
    ndcg = np.where((ranks >= 0) & (ranks < 10), 1 / np.log2(np.maximum(ranks, 0) + 2), 0).mean()
    assert r.metrics["ndcg@10"] == pytest.approx(ndcg, abs=1e-12)
    assert r.metrics["coverage@10"] == pytest.approx(10 / sp.n_items)
    assert len(r) == 22_363 and r.settings["eval_s"] < 10


def test_compare_uses_a_common_cutoff_for_mrr():
    a = _result(np.array([0, 3, 15, -1]))  # ks (10,): mrr = mrr@10
    b = dataclasses.replace(_result(np.array([0, 3, 15, -1])), ks=(10, 20))  # mrr = mrr@20 would count rank 15
    names = [r["metric"] for r in compare(a, b, n_boot=50)]
    assert "mrr" not in names and names.count("mrr@10") == 1
    assert all(r["delta"] == 0 for r in compare(a, b, n_boot=50))


def test_batching_and_row_order_do_not_change_results(synthetic):
    from semrec.data import leave_one_out
    from semrec.models import ItemKNN

    sp = leave_one_out(synthetic)
    es = sp.test.subset(np.arange(500))
    m = ItemKNN(sp.n_items).fit(sp.train)
    a, b = evaluate(m, es, batch_size=1024), evaluate(m, es, batch_size=7)
    assert np.array_equal(a.ranks, b.ranks) and a.metrics == b.metrics
    ids, _ = m.recommend(es.histories, k=20)  # direct, unsorted: same ranks row by row
    assert np.array_equal(a.ranks, np.array([list(ids[i]).index(t) if t in ids[i] else -1
                                             for i, t in enumerate(es.targets.items)]))
