"""text-seq: adapter maths, the three item representations, user/item vectors equal the scores, items added after
training scored from their text and recommended, save/load, --init carries weights over (lower step-0 loss), the
in-batch loss equals the full softmax when the batch covers the catalogue, and the combined multi-catalogue table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semrec.data import Sequences
from semrec.errors import ConfigError, DataError
from semrec.models.base import Recommender, get_model_class
from semrec.models.text.adapter import MoEAdapter
from semrec.models.text.catalogues import Catalogue, combine_catalogues
from semrec.models.text.item_vectors import category_labels
from semrec.models.text.text_seq import TextSeq

SMALL = {"hidden": 16, "n_layers": 1, "n_heads": 2, "max_len": 8, "n_experts": 4, "dropout": 0.0,
         "adapter_dropout": 0.0, "train.progress": False, "train.batch_size": 32}


def clustered(n_clusters: int = 8, per: int = 12, users: int = 400, seed: int = 0, d: int = 24):
    """Items in clusters with cluster-shaped text vectors; each user's sequence stays in one cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, d))
    cluster = np.repeat(np.arange(n_clusters), per)
    vectors = (centres[cluster] + 0.3 * rng.normal(size=(len(cluster), d))).astype(np.float32)
    seqs = [rng.choice(np.flatnonzero(cluster == c), size=rng.integers(4, 9)) for c in rng.integers(0, n_clusters,
                                                                                                 size=users)]
    return Sequences.from_lists(seqs), vectors, cluster, centres


def test_adapter_is_a_gated_mixture_of_whitened_projections():
    torch.manual_seed(0)
    ad = MoEAdapter(10, 6, n_experts=3, dropout=0.0)
    with torch.no_grad():
        ad.bias.normal_()
        ad.gate.weight.normal_()
    x = torch.randn(5, 10)
    y = ad(x)
    assert y.shape == (5, 6)
    w = ad.proj.view(10, 3, 6)
    g = torch.softmax(x @ ad.gate.weight.T, -1)
    manual = sum(g[:, k:k + 1] * ((x - ad.bias[k]) @ w[:, k]) for k in range(3))
    assert torch.allclose(y, manual, atol=1e-5)


def test_adapter_dropout_is_the_mask_the_shared_dropout_draws():
    """Training: the same mask as semrec's Dropout for the same seed; its scale sits on the weights (cheaper), same
    result."""
    from semrec.models.layers import Dropout

    torch.manual_seed(0)
    ad = MoEAdapter(10, 6, n_experts=3, dropout=0.25).train()
    with torch.no_grad():
        ad.bias.normal_()
        ad.gate.weight.normal_()
    x = torch.randn(40, 10)
    torch.manual_seed(1)
    y = ad(x)
    torch.manual_seed(1)
    xd = Dropout(0.25).train()(x)
    w = ad.proj.view(10, 3, 6)
    g = torch.softmax(xd @ ad.gate.weight.T, -1)
    manual = sum(g[:, k:k + 1] * ((xd - ad.bias[k]) @ w[:, k]) for k in range(3))
    assert torch.allclose(y, manual, atol=1e-5)
    assert torch.equal(ad.eval()(x), ad(x))  # no dropout when scoring


def test_training_item_table_is_the_gathered_one(one_torch_thread):
    """The whole-catalogue item table (read straight from the ID table while training) equals the gathered one, with
    items unseen in training getting no ID vector."""
    train, vectors, _, _ = clustered()
    m = TextSeq(len(vectors), vectors=vectors, item_repr="text+id", epochs=1, **SMALL).fit(train)
    net = m.module.train()
    net.seen[:5] = 0
    everything = net.item_vectors()
    assert torch.allclose(everything, net.item_vectors(torch.arange(len(vectors))), atol=1e-6)
    assert torch.allclose(everything[:5], net.adapter(net.text[:5]), atol=1e-6)


@pytest.mark.parametrize("repr_,has_adapter,has_id", [("text", True, False), ("id", False, True),
                                                      ("text+id", True, True)])
def test_item_representations_and_vectors_equal_scores(repr_, has_adapter, has_id, one_torch_thread):
    train, vectors, _, _ = clustered()
    m = TextSeq(len(vectors), vectors=vectors, item_repr=repr_, epochs=1, **SMALL).fit(train)
    assert (m.module.adapter is not None, m.module.id_emb is not None) == (has_adapter, has_id)
    h = train.select(np.arange(7))
    users, items = m.embed_users(h), m.item_embeddings()
    assert users.shape == (7, 16) and items.shape == (len(vectors), 16)
    with m.scoring():
        scores = m.score(h).numpy()
    assert np.allclose(users @ items.T, scores, atol=1e-4)
    assert np.allclose(np.linalg.norm(items, axis=1), 1.0, atol=1e-5)  # cosine / temperature


def test_new_item_is_scored_from_its_text_and_recommended(tmp_path, one_torch_thread):
    train, vectors, cluster, centres = clustered()
    m = TextSeq(len(vectors), vectors=vectors, item_repr="text+id", epochs=15, **SMALL).fit(train)
    new_vec = (centres[3] + 0.05 * np.random.default_rng(1).normal(size=centres.shape[1])).astype(np.float32)
    (new,) = m.add_items(new_vec[None])
    assert new == len(vectors) and m.n_items == len(vectors) + 1
    hist = Sequences.from_lists([np.flatnonzero(cluster == 3)[:5], np.flatnonzero(cluster == 5)[:5]])
    ids, _ = m.recommend(hist, k=15)
    assert new in ids[0]  # among the 12 items of its cluster plus a few
    assert new not in ids[1]  # another cluster's user does not get it
    with m.scoring():
        s = m.score(hist).numpy()
    assert s[0, new] > s[0, :len(vectors)][cluster != 3].max()  # above every item of the other clusters
    # saved and loaded with the grown catalogue: identical scores
    m.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    with back.scoring():
        assert np.allclose(back.score(hist).numpy(), s, atol=1e-5)
    with pytest.raises(DataError, match="same text encoder"):
        m.add_items(np.zeros((1, 5), np.float32))


def test_cold_items_never_use_their_untrained_id_rows(one_torch_thread):
    """An item never seen in training is scored from its text plus the ID vector of the seen item nearest in text
    (or text alone with unseen_id=none): its own (untrained) ID row changes nothing, and it is no negative of the
    training softmax (changing its text leaves the training loss as it is)."""
    train, vectors, _, _ = clustered()
    cold = np.arange(0, len(vectors), 10)
    keep = ~np.isin(train.items, cold)
    rows = np.repeat(np.arange(len(train)), train.lengths)
    warm = Sequences.from_lengths(np.bincount(rows[keep], minlength=len(train)), train.items[keep])
    m = TextSeq(len(vectors), vectors=vectors, item_repr="text+id", epochs=2, **SMALL).fit(warm)
    net = m.module
    assert net.seen[cold].sum() == 0 and net.seen.sum() == len(np.unique(warm.items))
    hist = warm.select(np.arange(6))
    with m.scoring():
        before = m.score(hist).clone()
        unit = torch.nn.functional.normalize(net.text, dim=-1)
        seen = torch.nonzero(net.seen > 0).squeeze(1)
        nearest = seen[(unit[cold] @ unit[seen].T).argmax(1)]
        assert torch.equal(net.id_rows()[cold], nearest) and not np.isin(nearest.numpy(), cold).any()
        expect = net.adapter(net.text[cold]) + net.id_emb.weight[nearest]
        assert torch.allclose(net.item_vectors(torch.as_tensor(cold)), expect, atol=1e-6)
    with torch.no_grad():
        net.id_emb.weight[cold] = 100 * torch.randn(len(cold), net.id_emb.weight.shape[1])
    with m.scoring():
        assert torch.equal(m.score(hist), before)  # the cold items' own ID rows play no part
    m.config.unseen_id = "none"
    with m.scoring():
        assert torch.allclose(net.item_vectors(torch.as_tensor(cold)), net.adapter(net.text[cold]), atol=1e-6)
    batch = next(m.batches(warm, 64, np.random.default_rng(0)))
    net.eval()
    with torch.no_grad():
        loss = float(m.loss(batch))
        net.text[cold] = torch.randn(len(cold), net.text.shape[1])
        assert float(m.loss(batch)) == pytest.approx(loss, abs=1e-6)
        m.config.unseen_negatives = True
        assert abs(float(m.loss(batch)) - loss) > 1e-4
        # in-batch loss: sampled negatives that are unseen items are dropped too
        m.config.loss, m.config.unseen_negatives = "in-batch", False
        with_neg = {**batch, "negatives": torch.as_tensor(cold + 1)}
        loss_ib = float(m.loss(with_neg))
        net.text[cold] = torch.randn(len(cold), net.text.shape[1])
        assert float(m.loss(with_neg)) == pytest.approx(loss_ib, abs=1e-6)
        assert float(m.loss(with_neg)) == pytest.approx(float(m.loss(batch)), abs=1e-6)


def test_init_from_carries_adapter_and_transformer_not_items(tmp_path, one_torch_thread):
    train, vectors, _cluster, centres = clustered(seed=0)
    pre = TextSeq(len(vectors), vectors=vectors, item_repr="text", epochs=15, **SMALL).fit(train)
    pre.save(tmp_path / "run" / "model")
    # a new catalogue with the same kind of text (same cluster centres), other items and users
    rng = np.random.default_rng(7)
    cl2 = np.repeat(np.arange(8), 9)
    vec2 = (centres[cl2] + 0.3 * rng.normal(size=(len(cl2), centres.shape[1]))).astype(np.float32)
    seq2 = Sequences.from_lists([rng.choice(np.flatnonzero(cl2 == c), size=6) for c in rng.integers(0, 8, 200)])

    def first_loss(init: bool) -> float:
        m = TextSeq(len(vec2), vectors=vec2, item_repr="text+id", **SMALL)
        if init:
            carried = m.init_from(str(tmp_path / "run"))
            assert "adapter.proj" in carried and not any(c.startswith(("id_emb", "text")) for c in carried)
            assert torch.equal(m.module.adapter.proj, pre.module.adapter.proj)
        else:
            m.build()
        batch = next(m.batches(seq2, 200, np.random.default_rng(0)))
        m.module.eval()
        with torch.no_grad():
            return float(m.loss(batch))

    assert first_loss(True) < first_loss(False) - 0.3
    wrong = TextSeq(len(vec2), vectors=vec2, item_repr="text", **{**SMALL, "hidden": 8})
    with pytest.raises(ConfigError, match="shapes differ"):
        wrong.init_from(str(tmp_path / "run"))


def test_in_batch_loss_equals_full_softmax_when_the_batch_covers_the_catalogue(one_torch_thread):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6, 8)).astype(np.float32)
    seqs = Sequences.from_lists([[0, 1, 2, 3], [4, 5, 0], [2, 5, 1]])
    full = TextSeq(6, vectors=vectors, item_repr="text+id", **SMALL).build()
    batch = next(full.batches(seqs, 3, np.random.default_rng(0)))
    inb = TextSeq(6, vectors=vectors, item_repr="text+id", loss="in-batch", **SMALL).build()
    inb.module.load_state_dict(full.module.state_dict())
    full.module.eval()
    inb.module.eval()
    with torch.no_grad():
        assert abs(float(full.loss(batch)) - float(inb.loss(batch))) < 1e-5


def test_contrastive_and_category_terms_add_to_the_loss(one_torch_thread):
    train, vectors, cluster, _ = clustered()
    base = TextSeq(len(vectors), vectors=vectors, **SMALL).build()
    aux = TextSeq(len(vectors), vectors=vectors, categories=cluster, contrastive_weight=0.5, category_weight=1.0,
                  category_field="categories", **SMALL).build()
    assert aux.module.cat_head.out_features == 8
    state = {k: v for k, v in aux.module.state_dict().items() if not k.startswith("cat_head")}
    base.module.load_state_dict(state)
    batch = next(base.batches(train, 64, np.random.default_rng(0)))
    base.module.eval()
    aux.module.eval()
    with torch.no_grad():
        assert float(aux.loss(batch)) > float(base.loss(batch)) + 0.5  # + log(8)-ish category CE at init


def test_missing_vectors_name_the_option_to_set():
    with pytest.raises(ConfigError, match="--set vectors_path=.*--set dataset="):
        TextSeq(10, item_repr="text").build()
    with pytest.raises(ConfigError, match="item_repr"):
        get_model_class("text-seq")(10, item_repr="words")
    assert TextSeq(10, item_repr="id", **SMALL).build().module.adapter is None  # id-only needs no text


def test_category_labels_from_paths():
    import polars as pl

    items = pl.DataFrame({"c": [[["Beauty", "Makeup", "Nails"]], [["Beauty", "Skin"]], [["Beauty"]], None]})
    assert category_labels(items, "c").tolist() == [0, 1, 2, -1]
    lc = pl.DataFrame({"c": ["Ind,Tools,Saws", "Ind,Tools", "Ind,Lab"]})
    assert category_labels(lc, "c").tolist() == [0, 0, 1]  # numbered by first appearance


def test_combined_catalogue_keeps_items_distinct():
    a_vec = np.arange(12, dtype=np.float32).reshape(4, 3)
    b_vec = a_vec[:3].copy()  # same text in both catalogues: still three other items
    a = Catalogue("a", Sequences.from_lists([[0, 1, 3], [2, 3]]), a_vec)
    b = Catalogue("b", Sequences.from_lists([[0, 2], [1, 0, 2]]), b_vec)
    comb = combine_catalogues([a, b])
    assert comb.n_items == 7 and comb.offsets == {"a": 0, "b": 4}
    assert comb.train.to_lists() == [[0, 1, 3], [2, 3], [4, 6], [5, 4, 6]]
    assert np.array_equal(comb.vectors[4:], b_vec) and np.array_equal(comb.vectors[:4], a_vec)
    assert comb.catalogue_of(np.array([0, 3, 4, 6])).tolist() == [0, 0, 1, 1]
    assert comb.local_items("b", np.array([4, 6])).tolist() == [0, 2]
    with pytest.raises(DataError, match="outside catalogue"):
        comb.local_items("b", np.array([3]))
    with pytest.raises(DataError, match="different sizes"):
        combine_catalogues([a, Catalogue("c", b.train, np.zeros((3, 5), np.float32))])


def test_cli_train_and_init_from_a_run(tmp_path, one_torch_thread):
    import json

    import polars as pl
    from typer.testing import CliRunner

    from semrec.cli import _register, app
    from semrec.data import Dataset
    from semrec.features import save_vectors

    _register()
    train, vectors, _, _ = clustered(users=150)
    users = np.repeat(np.arange(len(train)), train.lengths)
    Dataset.build(pl.DataFrame({"user_id": users.astype(str), "item_id": train.items.astype(str)}),
                  pl.DataFrame({"item_id": np.arange(len(vectors)).astype(str)})).save(tmp_path / "data")
    save_vectors(tmp_path / "v.safetensors", vectors)  # rows follow item_idx: items table order 0..n-1
    common = ["--data", str(tmp_path / "data"), "--set", f"vectors_path={tmp_path / 'v.safetensors'}",
              "--set", "epochs=2", "--set", "hidden=16", "--set", "n_experts=2", "--threads", "1"]
    runner = CliRunner()
    r = runner.invoke(app, ["train", "text-seq", "--out", str(tmp_path / "pre"), *common])
    assert r.exit_code == 0, r.output + repr(r.exception)
    r = runner.invoke(app, ["train", "text-seq", "--out", str(tmp_path / "ft"), "--init", str(tmp_path / "pre"),
                            *common])
    assert r.exit_code == 0, r.output + repr(r.exception)
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["init"] == str(tmp_path / "pre") and config["init_carried"] > 10
    r = runner.invoke(app, ["train", "sasrec", "--out", str(tmp_path / "bad"), "--init", str(tmp_path / "pre"),
                            "--data", str(tmp_path / "data")])
    assert r.exit_code != 0 and "cannot start from a pretrained run" in r.output + repr(r.exception)


def test_id_dropout_hides_id_vectors_in_training_only(one_torch_thread):
    _, vectors, _, _ = clustered()
    m = TextSeq(len(vectors), vectors=vectors, item_repr="text+id", id_dropout=0.5, **SMALL).build()
    net = m.module
    with torch.no_grad():
        text_only = net.adapter(net.text)
        net.train()
        torch.manual_seed(0)
        hidden = (net.item_vectors() - text_only).abs().sum(1) < 1e-6  # ID part dropped for these items
        assert 0.3 < hidden.float().mean() < 0.7
        net.eval()
        assert not ((net.item_vectors() - text_only).abs().sum(1) < 1e-6).any()


WORDS = ["red running shoe", "blue running shoe", "green trail shoe", "steel claw hammer", "rubber mallet",
         "paper notebook", "spiral notebook", "ballpoint pen", "fountain pen", "glass lab beaker", "glass flask"]


def test_tune_encoder_fine_tunes_the_last_layer_at_its_own_rate(tmp_path, one_torch_thread):
    """tune_encoder=1 with the bundled MiniLM: the item table starts as the encoder's own vectors, only the
    re-encoded items carry a gradient into the last layer, whose weights move by about encoder_lr per step
    (frozen W0 + scale * delta), and the saved item table matches the tuned encoder."""
    from semrec.features import TextEncoder

    rng = np.random.default_rng(0)
    groups = [[0, 1, 2], [3, 4], [5, 6, 7, 8], [9, 10]]
    train = Sequences.from_lists([rng.choice(groups[g], size=5) for g in rng.integers(0, 4, 48)])
    opts = {**SMALL, "batch_size": 16, "epochs": 1, "encoder_max_tokens": 12, "tune_items": 4, "lr": 1e-2}
    m = TextSeq(len(WORDS), texts=WORDS, item_repr="text", tune_encoder=1, encoder_lr=1e-4, **opts).build()
    net = m.module
    frozen = TextEncoder(cache_dir=None, max_seq_length=12, progress=False).encode(WORDS)
    assert np.allclose(net.text.numpy(), frozen, atol=1e-5)
    w0 = {n: p.clone() for n, p in net.encoder.layers.named_parameters()}
    assert not any(p.requires_grad for p in net.encoder.layers.parameters())

    batch = next(m.batches(train, 16, np.random.default_rng(0)))
    assert len(batch["tune_items"]) == 4
    m.loss(batch).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.encoder.delta.values())
    net.zero_grad()
    m.loss({**batch, "tune_items": batch["tune_items"][:0]}).backward()  # nothing re-encoded: no encoder gradient
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in net.encoder.delta.values())

    m.fit(train)
    steps = m.history.epochs * m.num_batches(train, 16)
    moved = max(float((net.encoder.scale * d).detach().abs().max()) for d in net.encoder.delta.values())
    assert 1e-5 < moved <= 1.5 * steps * 1e-4  # Adam moves W by ~encoder_lr per step, not by train.lr
    assert all(torch.equal(w0[n], p) for n, p in net.encoder.layers.named_parameters())
    tuned = net.text.clone()
    assert not torch.allclose(tuned, torch.from_numpy(frozen), atol=1e-6)
    m._refresh()
    assert torch.allclose(net.text, tuned, atol=1e-6)  # fit ended with the cache matching the encoder
    m.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    hist = train.select(np.arange(4))
    with m.scoring(), back.scoring():
        assert torch.allclose(back.score(hist), m.score(hist), atol=1e-5)
    with pytest.raises(ConfigError, match="tune_encoder needs the item text"):
        TextSeq(len(WORDS), item_repr="text", tune_encoder=1, **SMALL).build()
