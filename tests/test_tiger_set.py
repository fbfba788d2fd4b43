"""Parallel set identifiers: exact catalogue scoring equals a brute-force sum of digit log-probabilities, the
one-pass loss equals per-pair losses, save/load (also after adding items), catalogue updates, history
exclusion, and the model learns a sequential pattern through its codes; PQ-KMeans codes are collision-free."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semrec.data import Sequences
from semrec.models.base import Recommender, get_model_class
from semrec.models.tiger_set import TigerSet, item_scores
from semrec.semantic_ids.pq_kmeans import PQKMeans, eigen_allocation
from tests.generative_checks import random_codes

TINY = {"n_layers": 1, "d_model": 16, "n_heads": 2, "d_head": 8, "d_ff": 32, "max_history": 4, "dropout": 0.0,
        "train.epochs": 2, "train.batch_size": 16, "train.warmup_steps": 5, "train.progress": False}


def set_codes(n_items: int, n_digits: int, k: int, seed: int = 0) -> np.ndarray:
    return random_codes(n_items, [k] * n_digits, seed)  # distinct rows


def test_item_scores_equal_brute_force_sum():
    logp = F.log_softmax(torch.randn(3, 4, 5), -1)
    codes = torch.as_tensor(set_codes(20, 4, 5))
    got = item_scores(logp, codes + torch.arange(4) * 5)
    for b in range(3):
        for i in range(20):
            want = sum(float(logp[b, j, codes[i, j]]) for j in range(4))
            assert abs(float(got[b, i]) - want) < 1e-5


def test_one_pass_loss_equals_per_pair_loss():
    codes = torch.as_tensor(set_codes(30, 3, 4))
    model = TigerSet(30, codes=codes.numpy(), **TINY).build()
    net = model.module.eval()
    win = torch.tensor([[3, 7, 1, 9, 2], [5, 6, 8, -1, -1]])
    one_pass = float(net(torch.where(win[..., None] >= 0, codes[win.clamp(min=0)], -1), win))
    losses = []
    for r in range(2):
        for t in range(1, int((win[r] >= 0).sum())):
            hist = torch.full((1, 4), -1)
            hist[0, 4 - t:] = win[r, :t]
            h = net.last_state(model.history_codes(hist), hist)
            logp = F.log_softmax(net.digit_logits(h), -1)[0]
            losses += [-float(logp[j, codes[win[r, t], j]]) for j in range(3)]
    assert abs(one_pass - np.mean(losses)) < 1e-4


@pytest.mark.parametrize("id_input", [False, True])
def test_recommend_roundtrip_and_catalogue(tmp_path, id_input, one_torch_thread):
    rng = np.random.default_rng(0)
    train = Sequences.from_lists([rng.integers(0, 40, rng.integers(3, 9)).tolist() for _ in range(50)])
    model = TigerSet(40, codes=set_codes(40, 6, 8), **TINY, id_input=id_input).fit(train)
    assert get_model_class("tiger-set") is TigerSet and len(model.history.records) == 2
    hist = train.select(np.arange(4))
    items, scores = model.recommend(hist, k=5)
    full = model.score(hist).numpy()  # recommend = top-k of the exact scores
    assert np.allclose(np.sort(full, 1)[:, ::-1][:, :5], scores, atol=1e-5)
    assert np.allclose(np.take_along_axis(full, items, 1), scores, atol=1e-5)
    ex_items, _ = model.recommend(hist, k=5, exclude=hist)
    assert not any(set(ex_items[u]) & set(hist[u].tolist()) for u in range(4))
    model.remove_items(np.array([items[0, 0]]))
    assert items[0, 0] not in model.recommend(hist, k=5)[0]
    new_code = np.array([[7, 0, 3, 1, 6, 2]])
    model.add_items(np.array([40]), new_code)  # a new item, scored from its codes alone
    assert model.n_items == 41 and model.score(hist).shape == (4, 41)
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert loaded.n_items == 41 and np.array_equal(loaded.codes[40], new_code[0])
    i2, s2 = loaded.recommend(hist, k=41)
    i1, s1 = model.recommend(hist, k=41)
    assert np.array_equal(i1, i2) and np.allclose(s1, s2, atol=1e-6)
    assert s2[0, -1] == -np.inf and i2[0, -1] == items[0, 0]  # removed stays removed (ranked last, -inf)


@pytest.mark.parametrize("item_loss", [0.0, 1.0])
def test_learns_sequential_pattern(one_torch_thread, item_loss):
    """Each item is followed by item + 1: after training, the true next item ranks first for most histories
    (digit cross-entropy alone, and with the item-level sampled softmax added)."""
    rng = np.random.default_rng(1)
    n = 30
    starts = rng.integers(0, n - 6, 300)
    train = Sequences.from_lists([list(range(s, s + 6)) for s in starts])
    model = TigerSet(n, codes=set_codes(n, 4, 6), **(TINY | {"d_model": 32, "train.epochs": 30,
                                                             "train.lr": 5e-3, "train.batch_size": 32,
                                                             "item_loss": item_loss, "item_negatives": 8}))
    model.fit(train)
    hist = Sequences.from_lists([[i, i + 1] for i in range(20)])
    top = model.recommend(hist, k=1)[0][:, 0]
    assert (top == np.arange(20) + 2).mean() >= 0.9


def test_pq_kmeans_codes():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 24)).astype(np.float32) * np.linspace(3, 0.2, 24).astype(np.float32)
    x[1] = x[0]  # identical vectors collide in every digit: reassigned in the last one
    tok = PQKMeans(n_levels=6, codebook_size=16).fit(x)
    assert tok.codes.shape == (600, 6) and len(np.unique(tok.codes, axis=0)) == 600
    assert tok.fit_stats["collision_rate_before"] > 0 and np.array_equal(tok.codes[0, :5], tok.codes[1, :5])
    assert tok.fit_stats["quantization_error"] < 0.5 * tok.fit_stats["variance"]
    assert np.array_equal(tok.encode(x[2:50]), tok.codes[2:50])  # fitted items keep their table codes
    part = eigen_allocation(np.linspace(3, 0.2, 24) ** 2, 6)
    assert np.bincount(part).tolist() == [4] * 6  # equal sub-space sizes


def soft_model(tau: float, **kw):
    from semrec.models.tiger_soft import TigerSoft

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((40, 12)).astype(np.float32)
    opts = {"tau_end": kw.pop("tau_end", tau), "tau_start": tau} | TINY | kw  # tau_end first: it is checked <= tau_start
    return TigerSoft(40, vectors=vectors, n_digits=4, codebook_size=6, **opts).build()


def test_soft_ids_at_zero_temperature_equal_the_hard_code_model():
    """UniGRec-style soft identifiers: at tau -> 0 the soft loss equals tiger-set's loss on the hard codes."""
    soft = soft_model(1e-6, uniformity=0.0)
    net = soft.module.eval()
    net.tau = 1e-6
    soft.refresh_codes()
    hard = TigerSet(40, codes=soft.codes, **TINY).build()
    hard.module.load_state_dict({k: v for k, v in net.state_dict().items() if k in hard.module.state_dict()})
    win = torch.tensor([[3, 7, 1, 9, 2], [5, 6, 8, -1, -1]])
    want = float(hard.module.eval()(hard.history_codes(win), win))
    got = float(net(soft.history_codes(win), win))
    assert abs(got - want) < 1e-5
    net.tau = 1.0  # a warm temperature gives a different (soft) loss, and gradients reach the codebooks
    loss = net.train()(soft.history_codes(win), win)
    loss.backward()
    assert abs(float(loss) - want) > 1e-5 and net.delta.grad.abs().sum() > 0


def test_soft_ids_anneal_to_hard_collision_free_codes(tmp_path, one_torch_thread):
    rng = np.random.default_rng(0)
    train = Sequences.from_lists([rng.integers(0, 40, rng.integers(3, 9)).tolist() for _ in range(60)])
    model = soft_model(1.0, tau_end=0.01, anneal_fraction=0.5, **{"train.epochs": 4})
    model.fit(train)
    assert bool(model.module.hard) and not model.module.delta.requires_grad
    assert len(np.unique(model.codes, axis=0)) == 40  # hard, collision-free: every item its own identifier
    raw, _ = model.module.hard_codes()  # the frozen codes are the trained codebooks' nearest codewords
    assert (raw == model.codes).mean() > 0.9
    items, scores = model.recommend(train.select(np.arange(3)), k=5)
    model.save(tmp_path / "soft")
    i2, s2 = Recommender.load(tmp_path / "soft").recommend(train.select(np.arange(3)), k=5)
    assert np.array_equal(items, i2) and np.allclose(scores, s2, atol=1e-6)


def test_semrec_ids_fit_pq_kmeans_feeds_tiger_set(tmp_path, one_torch_thread):
    """`semrec ids fit --method pq-kmeans` writes a code table that `tiger-set` reads through codes_path."""
    from typer.testing import CliRunner

    from semrec.cli import _register, app

    if not app.registered_groups:
        _register()
    np.save(tmp_path / "v.npy", np.random.default_rng(0).standard_normal((60, 16)).astype(np.float32))
    res = CliRunner().invoke(app, ["ids", "fit", str(tmp_path / "v.npy"), "--out", str(tmp_path / "ids"),
                                   "--method", "pq-kmeans", "--levels", "4", "--codebook-size", "8",
                                   "--collisions", "reassign"])
    assert res.exit_code == 0, res.output
    model = TigerSet(60, codes_path=str(tmp_path / "ids"), **TINY)
    assert model.codes.shape == (60, 4) and model.codebook == 8 and len(np.unique(model.codes, axis=0)) == 60
