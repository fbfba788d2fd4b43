"""Graph CF: normalised adjacency, propagation, edge pruning, kNN graphs, the MMRec split, feature loading and
the graph models (LightGCN, NGCF, FREEDOM, LIRDRec, AlphaRec) on small graphs and the synthetic catalogue."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from semrec.data.sequences import Sequences
from semrec.errors import DataError
from semrec.models.graph.adjacency import (
    interaction_edges,
    knn_graph,
    normalized_adjacency,
    propagate,
    prune_edges,
)

# 3 users, 2 items: u0-{i0, i1}, u1-{i0}, u2-{i1, i1 repeated}
TRAIN = Sequences.from_lists([[0, 1], [0], [1, 1]])


def dense_reference(n_users: int, n_items: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    a = np.zeros((n_users + n_items,) * 2)
    for u, i in pairs:
        a[u, n_users + i] = a[n_users + i, u] = 1.0
    d = a.sum(1)
    inv = np.where(d > 0, 1 / np.sqrt(np.maximum(d, 1e-12)), 0.0)
    return inv[:, None] * a * inv[None, :]


def test_edges_are_unique_pairs():
    assert interaction_edges(TRAIN, 2).tolist() == [[0, 0, 1, 2], [0, 1, 0, 1]]


def test_normalized_adjacency_matches_hand_computation():
    adj = normalized_adjacency(torch.from_numpy(interaction_edges(TRAIN, 2)), 3, 2).to_dense().numpy()
    # deg: u0=2, u1=1, u2=1, i0=2, i1=2  -> L[u0,i0] = 1/sqrt(2*2) = .5, L[u1,i0] = 1/sqrt(1*2)
    assert adj[0, 3] == pytest.approx(0.5)
    assert adj[1, 3] == pytest.approx(1 / np.sqrt(2))
    assert adj[2, 4] == pytest.approx(1 / np.sqrt(2))
    np.testing.assert_allclose(adj, dense_reference(3, 2, [(0, 0), (0, 1), (1, 0), (2, 1)]), atol=1e-7)
    np.testing.assert_allclose(adj, adj.T)


def test_lightgcn_propagation_on_five_nodes_equals_dense_reference():
    torch.manual_seed(0)
    x = torch.randn(5, 4)
    adj = normalized_adjacency(torch.from_numpy(interaction_edges(TRAIN, 2)), 3, 2)
    dense = torch.from_numpy(dense_reference(3, 2, [(0, 0), (0, 1), (1, 0), (2, 1)])).float()
    ref = (x + dense @ x + dense @ dense @ x + dense @ dense @ dense @ x) / 4
    torch.testing.assert_close(propagate(adj, x, 3), ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(propagate(adj, x, 1, reduce="sum"), x + dense @ x, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_propagation_gradient_equals_dense_reference(threads):
    """propagate's backward reuses the symmetric CSR graph (no transpose); on one thread it runs scipy's kernel."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        x = torch.randn(5, 4, requires_grad=True)
        g = torch.randn(5, 4)
        adj = normalized_adjacency(torch.from_numpy(interaction_edges(TRAIN, 2)), 3, 2)
        propagate(adj, x, 2).backward(g)
        dense = torch.from_numpy(dense_reference(3, 2, [(0, 0), (0, 1), (1, 0), (2, 1)])).float()
        xd = x.detach().clone().requires_grad_()
        ((xd + dense @ xd + dense @ dense @ xd) / 3).backward(g)
        torch.testing.assert_close(x.grad, xd.grad, atol=1e-6, rtol=1e-5)
    finally:
        torch.set_num_threads(old)


def test_knn_graph_links_each_item_to_its_top_k_cosine_neighbours():
    feats = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.05]])
    g = knn_graph(feats, k=2, chunk=2).to_dense()
    x = torch.nn.functional.normalize(feats, dim=1)
    expected = torch.topk(x @ x.T, 2, dim=1).indices
    for row in range(5):
        assert set(torch.nonzero(g[row]).flatten().tolist()) == set(expected[row].tolist())
        assert row in torch.nonzero(g[row]).flatten().tolist()  # itself is its nearest neighbour
    assert set(torch.nonzero(g[0]).flatten().tolist()) == {0, 1}
    assert set(torch.nonzero(g[4]).flatten().tolist()) == {4, 2}  # cos .05 with [0, 1] beats -1 with [1, 0]
    torch.testing.assert_close(g[g > 0], torch.full((10,), 0.5))  # D^-1/2 S D^-1/2 with D = k = 2


def test_prune_edges_keeps_fraction_and_prefers_edges_between_rare_nodes():
    # user 0 and item 0 are hubs; edges (u, i) for u in 1..40 to item 1..40 are degree-1 pairs
    hub = [(0, i) for i in range(41)] + [(u, 0) for u in range(1, 41)]
    rare = [(u, u) for u in range(1, 41)]
    edges = torch.tensor(hub + rare).T
    kept_rare = kept_hub = 0
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        adj = prune_edges(edges, 41, 41, drop=0.5, generator=g)
        nz = adj.indices()
        pairs = {(int(a), int(b) - 41) for a, b in zip(*nz) if a < 41}
        assert len(pairs) == int(len(hub + rare) * 0.5)
        kept_rare += sum(p in pairs for p in rare)
        kept_hub += sum(p in pairs for p in hub)
        # renormalised on the kept graph: every value is 1/sqrt(deg u * deg i) of the pruned degrees
        dense = adj.to_dense()
        deg = (dense > 0).sum(1).float()
        r, c = nz
        torch.testing.assert_close(adj.values(), (deg[r] * deg[c]).rsqrt())
    assert kept_rare / (20 * len(rare)) > 0.8 > kept_hub / (20 * len(hub))
    assert prune_edges(edges, 41, 41, drop=0.0)._nnz() == 2 * len(hub + rare)


def test_mmrec_split_cuts_each_user_8_1_1_in_time_order():
    import polars as pl

    from semrec.data.dataset import Dataset
    from semrec.data.splits import SPLITS, mmrec_split

    seq20 = list(range(20))
    inter = pl.DataFrame({"user_id": ["a"] * 20 + ["b"] * 5 + ["c"] * 2,
                          "item_id": [str(i) for i in seq20 + [0, 1, 2, 3, 4] + [5, 6]],
                          "timestamp": list(range(20)) + list(range(5)) + [0, 1]})
    ds = Dataset.build(inter)
    sp = mmrec_split(ds)
    assert SPLITS["mmrec"] is mmrec_split
    assert sp.train.to_lists() == [list(range(16)), [0, 1, 2], [5, 6]]
    assert sp.valid.users.tolist() == [0, 1]  # c has 2 interactions: training only
    assert sp.valid.targets.to_lists() == [[16, 17], [3]]
    assert sp.test.targets.to_lists() == [[18, 19], [4]]
    assert sp.test.histories.to_lists() == [list(range(16)), [0, 1, 2]]  # validation items never seen
    assert sp.options["protocol"] == "mmrec-8-1-1"


def test_feature_loader_rejects_row_count_mismatch(tmp_path):
    from semrec.features.precomputed import load_item_features

    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    x.tofile(tmp_path / "f.feat1CLS")
    np.testing.assert_array_equal(load_item_features(tmp_path / "f.feat1CLS", 4), x)
    with pytest.raises(DataError, match="not a whole number of float32 rows for 5 items"):
        load_item_features(tmp_path / "f.feat1CLS", 5)
    np.save(tmp_path / "f.npy", x)
    with pytest.raises(DataError, match="4 feature rows but the catalogue has 6 items"):
        load_item_features(tmp_path / "f.npy", 6)


# ---------------------------------------------------------------------- models on the synthetic catalogue
@pytest.fixture(scope="module")
def synth_split():
    from semrec.data import leave_one_out, synthetic_dataset
    from semrec.data.synthetic import SyntheticConfig

    ds = synthetic_dataset(SyntheticConfig(n_users=800, n_items=300, seed=1))
    return ds, leave_one_out(ds)


def _fit(name: str, n_items: int, split, **overrides):
    from semrec.models import get_model_class

    torch.set_num_threads(1)
    opts = {"train.progress": False, "train.patience": 0} | overrides
    return get_model_class(name)(n_items, **opts).fit(split.train, split.valid)


def test_lightgcn_bpr_loss_decreases_and_beats_popularity(synth_split):
    from semrec.evaluation import evaluate
    from semrec.models import MostPop

    ds, sp = synth_split
    m = _fit("lightgcn", ds.n_items, sp, epochs=8, **{"train.lr": 5e-3})
    losses = [r["loss"] for r in m.history.records]
    assert losses[-1] < losses[0] - 0.1 and all(b < a for a, b in itertools.pairwise(losses))
    ours = evaluate(m, sp.test).metrics["recall@20"]
    pop = evaluate(MostPop(ds.n_items).fit(sp.train), sp.test).metrics["recall@20"]
    assert ours > pop


def test_lightgcn_init_option():
    from semrec.errors import ConfigError
    from semrec.models import get_model_class

    cls = get_model_class("lightgcn")
    m = cls(2000, init="xavier")
    m.n_users, m._edges = 30, np.array([[0, 1], [2, 3]])
    w = m.build("cpu").module.item_emb.weight.detach()
    bound = (6 / (2000 + 64)) ** 0.5  # xavier-uniform: U(-b, b), std b / sqrt(3) = .031, not normal(0, 0.1)
    assert w.abs().max() <= bound * 1.0001 and abs(float(w.std()) - bound / 3 ** 0.5) < 0.002
    with pytest.raises(ConfigError, match="init"):
        cls(50, init="kaiming")


def test_sampled_softmax_and_ngcf_train(synth_split):
    ds, sp = synth_split
    for name, extra in (("lightgcn", {"loss": "sampled-softmax"}), ("ngcf", {})):
        m = _fit(name, ds.n_items, sp, epochs=3, **extra)
        losses = [r["loss"] for r in m.history.records]
        assert losses[-1] < losses[0], (name, losses)


def test_graph_model_scores_by_user_index_and_round_trips(synth_split, tmp_path):
    from semrec.evaluation import evaluate
    from semrec.models import Recommender

    ds, sp = synth_split
    m = _fit("lightgcn", ds.n_items, sp, epochs=2)
    users = sp.test.users[:7]
    u, items = m.final_vectors()
    expected = torch.topk(u[torch.from_numpy(users)] @ items.T, 10).indices.numpy()
    ids, _ = m.recommend(sp.test.histories.select(np.arange(7)), k=10, users=users)
    np.testing.assert_array_equal(ids, expected)
    m.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    ids2, _ = back.recommend(sp.test.histories.select(np.arange(7)), k=10, users=users)
    np.testing.assert_array_equal(ids2, expected)
    assert evaluate(back, sp.test).metrics == evaluate(m, sp.test).metrics
    # a history without a user index is folded in (mean of its items' vectors)
    ids3, _ = m.recommend(sp.test.histories.select(np.arange(2)), k=5)
    fold = torch.stack([items[torch.from_numpy(sp.test.histories[i])].mean(0) for i in range(2)])
    np.testing.assert_array_equal(ids3, torch.topk(fold @ items.T, 5).indices.numpy())


# ---------------------------------------------------------------------- multimodal models
def _synthetic_features(ds) -> dict[str, np.ndarray]:
    """Two 'modalities' of the synthetic catalogue: product type (category path) and brand, one-hot plus noise."""
    rng = np.random.default_rng(0)
    cats = ds.items["categories"].list.first().to_numpy()
    brands = ds.items["brand"].to_numpy()

    def onehot(values: np.ndarray) -> np.ndarray:
        _, inv = np.unique(values, return_inverse=True)
        x = np.eye(inv.max() + 1, dtype=np.float32)[inv]
        return x + 0.05 * rng.standard_normal(x.shape).astype(np.float32)

    return {"text": onehot(cats), "image": onehot(brands)}


def test_freedom_builds_knn_graph_from_features_and_prunes_each_epoch(synth_split):
    from semrec.models.graph.freedom import FREEDOM

    ds, sp = synth_split
    feats = _synthetic_features(ds)
    m = FREEDOM(ds.n_items, epochs=2, knn_k=5, edge_drop=0.5, **{"train.progress": False}).with_features(feats)
    m.fit(sp.train, sp.valid)
    graph = m.module.item_graph(5, 0.1).to_dense()
    # 0.1 x image kNN + 0.9 x text kNN, each row-normalised with k = 5 -> each row sums to 1 (0.1 + 0.9)
    torch.testing.assert_close(graph.sum(1), torch.ones(ds.n_items), atol=1e-5, rtol=0)
    ref = knn_graph(torch.from_numpy(feats["text"]), 5).to_dense() * 0.9 + \
        knn_graph(torch.from_numpy(feats["image"]), 5).to_dense() * 0.1
    torch.testing.assert_close(graph, ref)
    # text neighbours share the product type
    cats = ds.items["categories"].list.first().to_numpy()
    text_nbrs = knn_graph(torch.from_numpy(feats["text"]), 5).indices()
    _, inv, counts = np.unique(cats, return_inverse=True, return_counts=True)
    best = np.minimum(counts[inv], 5).mean() / 5  # every same-type item first, as far as the type has items
    assert (cats[text_nbrs[0].numpy()] == cats[text_nbrs[1].numpy()]).mean() == pytest.approx(best)
    pruned = m.module.pruned
    assert pruned is not None and pruned._nnz() == 2 * int(m.n_edges * 0.5)
    assert m.module.adjacency()._nnz() == 2 * m.n_edges  # scoring uses the full graph


def test_lirdrec_scores_an_item_with_features_and_no_interactions(synth_split):
    from semrec.data.splits import cold_start_split
    from semrec.models.graph.lirdrec import LIRDRec, dct_matrix

    c = dct_matrix(8)
    torch.testing.assert_close(c @ c.T, torch.eye(8), atol=1e-5, rtol=0)  # orthonormal DCT-II
    ds, _ = synth_split
    sp = cold_start_split(ds, fraction=0.1, seed=0)
    assert not np.isin(sp.train.items, sp.cold_items).any()
    torch.set_num_threads(1)
    m = LIRDRec(ds.n_items, epochs=6, **{"train.lr": 3e-3, "train.progress": False, "train.patience": 0})
    m.with_features(_synthetic_features(ds)).fit(sp.train, sp.valid)
    _, items = m.final_vectors()
    cold = torch.from_numpy(sp.cold_items)
    assert torch.isfinite(items[cold]).all() and items[cold].norm(dim=1).min() > 0
    # the features rank a cold target among the cold items far above chance (mean percentile .5)
    from semrec.data.splits import targets_are_cold

    es = sp.test.subset(targets_are_cold(sp.test, sp.cold_items, ds.n_items))
    with torch.inference_mode():
        scores = m.score_users(es.histories, es.users)[:, cold]
    target = torch.from_numpy(np.searchsorted(sp.cold_items, es.targets.items))
    pct = (scores > scores[torch.arange(len(es)), target][:, None]).float().mean(1)
    assert len(es) > 50 and pct.mean() < 0.35


def test_alpharec_ranks_cold_items_and_transfers_zero_shot(synth_split, tmp_path):
    from semrec.models import Recommender
    from semrec.models.graph.alpharec import AlphaRec

    ds, sp = synth_split
    feats = {"text": _synthetic_features(ds)["text"]}
    torch.set_num_threads(1)
    m = AlphaRec(ds.n_items, epochs=3, hidden=64, **{"train.progress": False, "train.patience": 0})
    m.with_features(feats).fit(sp.train, sp.valid)
    losses = [r["loss"] for r in m.history.records]
    assert losses[-1] < losses[0]
    # zero-shot: the first 150 items as a new catalogue, histories folded in, scores = cosine of MLP outputs
    sub = {"text": feats["text"][:150]}
    z = m.zero_shot(sub)
    assert z.n_items == 150 and z.n_users == 0
    h = Sequences.from_lists([[0, 3], [7]])
    ids, _scores = z.recommend(h, k=5)
    with torch.inference_mode():
        items = torch.nn.functional.normalize(m.module.mlp(torch.from_numpy(sub["text"])), dim=1)
        users = torch.nn.functional.normalize(m.module.mlp(torch.from_numpy(
            np.stack([sub["text"][[0, 3]].mean(0), sub["text"][7]]))), dim=1)
    np.testing.assert_array_equal(ids, torch.topk(users @ items.T, 5).indices.numpy())
    m.save(tmp_path / "a")
    back = Recommender.load(tmp_path / "a")  # features travel in model.safetensors
    np.testing.assert_allclose(back.recommend(h, k=5)[1], m.recommend(h, k=5)[1], rtol=1e-5)


def test_features_option_reads_files_and_rejects_wrong_row_counts(synth_split, tmp_path):
    from semrec.errors import ConfigError
    from semrec.training.run import build_model

    ds, sp = synth_split
    feats = _synthetic_features(ds)
    np.save(tmp_path / "text.npy", feats["text"])
    feats["image"].tofile(tmp_path / "image.feat")
    m = build_model("freedom", ds.n_items, overrides=[(f"features=image={tmp_path / 'image.feat'},"
                                                       f"text={tmp_path / 'text.npy'}"), "epochs=1",
                                                       "train.progress=false"])
    m.fit(sp.train, None)
    assert m.module.modalities == ["image", "text"]
    torch.testing.assert_close(m.module.feature("text"), torch.from_numpy(feats["text"]))
    np.save(tmp_path / "short.npy", feats["text"][:-1])
    bad = build_model("lirdrec", ds.n_items, overrides=[f"features=text={tmp_path / 'short.npy'}"])
    with pytest.raises(DataError, match=f"{ds.n_items - 1} feature rows but the catalogue has {ds.n_items}"):
        bad.fit(sp.train, None)
    with pytest.raises(ConfigError, match="needs item features"):
        build_model("alpharec", ds.n_items).fit(sp.train, None)
    with pytest.raises(ConfigError, match="NAME=PATH"):
        build_model("alpharec", ds.n_items, overrides=["features=text"]).fit(sp.train, None)


def test_registry_finds_graph_models_in_their_sub_package():
    import subprocess
    import sys

    code = ("from semrec.models import REGISTRY, available_models, get_model_class\n"
            "assert 'lightgcn' not in REGISTRY\n"
            "names = available_models()\n"
            "assert {'lightgcn', 'ngcf', 'freedom', 'lirdrec', 'alpharec', 'sasrec'} <= set(names), names\n"
            "print(get_model_class('lirdrec').__module__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "semrec.models.graph.lirdrec"


def test_evaluator_scores_graph_models_by_user_index(synth_split):
    from semrec.evaluation import evaluate
    from semrec.evaluation.evaluator import target_ranks

    ds, sp = synth_split
    m = _fit("lightgcn", ds.n_items, sp, epochs=2)
    u, items = m.final_vectors()
    top = torch.topk(u[torch.from_numpy(sp.test.users)] @ items.T, 10).indices.numpy()
    ranks = target_ranks(top, sp.test.targets)
    assert evaluate(m, sp.test, ks=(10,)).metrics["recall@10"] == pytest.approx(float((ranks >= 0).mean()))
