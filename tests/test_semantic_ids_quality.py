"""Identifier-quality numbers (uniformity, next-item prefix transitions), codebook sizing and its warnings, and
item-level honesty: a code shared by several items never counts as a hit for all of them."""

from __future__ import annotations

import numpy as np
import pytest

from semrec.data.sequences import Sequences


def test_transition_metrics_by_hand():
    from semrec.semantic_ids.quality import level_uniformity, transition_metrics

    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    train = Sequences.from_lists([[0, 1, 2], [3, 2], [1]])  # pairs 0->1, 1->2, 3->2
    m = transition_metrics(codes, train)
    assert m["transition_pairs"] == 3
    # level 1: groups {0,1} {2,3}; sources g0 g0 g1, targets g0 g1 g1
    assert m["transition_same_prefix"][0] == pytest.approx(2 / 3)
    assert m["transition_same_prefix_chance"][0] == pytest.approx(2 / 3 * 1 / 3 + 1 / 3 * 2 / 3)
    assert m["transition_lift"][0] == pytest.approx(1.5)
    assert m["transition_purity"][0] == pytest.approx(2 / 3)  # g0 -> {g0, g1} once each; g1 -> g1
    # full codes: no pair repeats an item; each source item has a single next item
    assert m["transition_same_prefix"][1] == 0 and m["transition_purity"][1] == pytest.approx(1.0)
    assert level_uniformity(np.array([[0], [0], [0], [1]]), [2]) == pytest.approx(
        [-(0.75 * np.log(0.75) + 0.25 * np.log(0.25)) / np.log(2)])
    assert level_uniformity(codes, [2, 4]) == pytest.approx([1.0, 0.5])  # 2 of 4 codes used, evenly


def test_default_codebook_size_and_warnings():
    from semrec.semantic_ids import diagnostics
    from semrec.semantic_ids.sizing import codebook_warnings, default_codebook_size

    assert [default_codebook_size(n) for n in (20, 40, 1_585, 4_344, 12_101, 1_000_000)] == [2, 2, 64, 256, 256, 256]
    rng = np.random.default_rng(0)
    i = np.arange(512)
    good = np.stack([i % 8, (i // 8) % 8, i // 64], 1)  # distinct, uniform, 64 items per level-1 code
    assert codebook_warnings(diagnostics(good, good, [8, 8, 8])) == []
    # 300 items on 3 x 256 codes, the last level collapsed on 4 codes: every warning, naming its fix
    raw = np.stack([np.arange(300) % 256, rng.integers(0, 256, 300), rng.integers(0, 4, 300)], 1)
    raw[:60] = raw[0]
    w = codebook_warnings(diagnostics(raw, raw, [256, 256, 256]))
    assert len(w) == 3
    assert w[0].startswith("codebook size 256 is larger than 300 items can fill") and "--codebook-size 16" in w[0]
    assert "level 3 4 of 256" in w[1] and "balanced=true" in w[1]
    assert w[2].startswith("19.7% raw collisions (60 items share") and "balanced=true" in w[2]
    assert "balanced=true" not in codebook_warnings(diagnostics(raw, raw, [256, 256, 256]), balanced=True)[2]


def test_ids_fit_default_codebook_from_catalogue(tmp_path, one_torch_thread):
    from typer.testing import CliRunner

    from semrec.cli import _register, app

    if not app.registered_groups:
        _register()
    np.save(tmp_path / "v.npy", np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32))
    r = CliRunner().invoke(app, ["ids", "fit", str(tmp_path / "v.npy"), "--out", str(tmp_path / "ids"),
                                 "--levels", "2"], catch_exceptions=False)
    assert r.exit_code == 0 and "codebook size 8 for 200 items" in r.stderr
    import json

    diag = json.loads((tmp_path / "ids" / "diagnostics.json").read_text())
    assert diag["codebook_sizes"] == [8, 8] and isinstance(diag["warnings"], list)


def test_colliding_codes_count_once_per_item(one_torch_thread):
    """Two items with the same identifier get the same score, but each is one entry of the ranked list: with
    identical histories and the twins as targets, Recall@1 is 1/2, never 1 (a code-level hit would count both)."""
    import torch

    from semrec.data.splits import EvalSet
    from semrec.evaluation import evaluate
    from semrec.models.tiger_set import TigerSet

    n = 12
    torch.manual_seed(0)
    codes = np.stack([np.arange(n) % 4, np.arange(n) // 4], 1)
    model = TigerSet(n, codes=codes, n_layers=1, d_model=16, n_heads=2, d_head=8, d_ff=32, max_history=4, dropout=0.0).build()
    hist = Sequences.from_lists([[0, 1], [0, 1]])
    top = int(model.score(hist)[0].argmax())
    twin = next(i for i in range(2, n) if i != top)
    model.add_items(np.array([twin]), codes[[top]])  # the twin now shares the top item's identifier
    scores = model.score(hist)
    assert float(scores[0, twin]) == float(scores[0, top]) == float(scores[0].max())
    res = evaluate(model, EvalSet(np.arange(2), hist, Sequences.from_lists([[top], [twin]])), ks=(1, 2))
    assert res.metrics["recall@1"] == 0.5 and res.metrics["recall@2"] == 1.0  # one list slot, one item
    items, _ = model.recommend(hist, k=n)
    assert sorted(items[0].tolist()) == list(range(n))  # every item listed exactly once, twins included
