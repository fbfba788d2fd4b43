"""semrec.users: exported vectors reproduce model scores, indexes reproduce recommend, safe vector files,
look-alikes, user semantic IDs, and the CLI end to end."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from semrec.data import SyntheticConfig, leave_one_out, synthetic_dataset
from semrec.errors import DataError, OutputError
from semrec.models import UserVectors, get_model_class
from semrec.data import Sequences
from semrec.errors import ConfigError
from semrec.users import (ITEM_KIND, USER_KIND, IndexConfig, VectorIndex, VectorTable, expand_segment,
                          export_items, export_users, fit_user_ids, item_idf, pool_items, recall_overlap, segments,
                          similar_users, user_vectors)


@pytest.fixture(scope="module")
def split():
    return leave_one_out(synthetic_dataset(SyntheticConfig(n_users=300, n_items=120, seed=5)))


@pytest.fixture(scope="module")
def fitted(split):
    torch.set_num_threads(1)
    models = {}
    for name, opts in (("sasrec", {"loss": "ce"}), ("gru4rec", {}), ("bert4rec", {})):
        models[name] = get_model_class(name)(split.n_items, epochs=2, progress=False, **opts).fit(split.train)
    return models


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bert4rec"])
def test_user_vectors_times_item_vectors_equal_model_scores(fitted, split, name):
    model = fitted[name]
    assert isinstance(model, UserVectors) and model.dot_product
    hist = split.test.histories
    users, items = model.embed_users(hist), model.item_embeddings()
    assert users.dtype == np.float32 and items.dtype == np.float32
    assert users.shape[0] == len(hist) and items.shape == (split.n_items, users.shape[1])
    with model.scoring():
        scores = model.score(hist).numpy()
    np.testing.assert_allclose(users @ items.T, scores, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_exact_index_top10_equals_recommend_with_and_without_exclusion(fitted, split, name, tmp_path):
    model, es = fitted[name], split.test
    users = export_users(model, es.histories, es.users, es.users.astype(str))
    items = export_items(model, np.arange(split.n_items).astype(str))
    VectorIndex.build(items.vectors, ids=items.ids).save(tmp_path / "idx")
    index = VectorIndex.load(tmp_path / "idx")
    for exclude in (None, es.histories):
        own, own_s = model.recommend(es.histories, k=10, exclude=exclude)
        found, found_s = index.search(users.vectors, 10, exclude=exclude)
        assert (found == own).all(1).mean() == 1.0
        np.testing.assert_allclose(found_s, own_s, rtol=1e-4, atol=1e-4)


def test_vector_files_round_trip_and_are_written_safely(fitted, split, tmp_path):
    model, es = fitted["sasrec"], split.test
    path = tmp_path / "users.parquet"
    table = export_users(model, es.histories, es.users, np.array([f"u{u}" for u in es.users]), path)
    df = pl.read_parquet(path)
    assert df.columns == ["user_idx", "user_id", "vector"]
    assert df.schema["user_idx"] == pl.Int64 and df.schema["user_id"] == pl.Utf8
    assert df.schema["vector"] == pl.Array(pl.Float32, 64) and df.height == len(es)
    back = VectorTable.load(path, USER_KIND)
    np.testing.assert_array_equal(back.vectors, table.vectors)
    assert back.meta["model"] == "sasrec" and back.meta["dot_product"] is True
    assert back.row_of([f"u{es.users[3]}"]).tolist() == [3]
    with pytest.raises(DataError, match="unknown user id"):
        back.row_of(["nobody"])
    with pytest.raises(OutputError, match="--overwrite"):
        export_users(model, es.histories, es.users, es.users.astype(str), path)
    export_users(model, es.histories, es.users, es.users.astype(str), path, overwrite=True)
    foreign = tmp_path / "notes.parquet"
    foreign.write_text("mine")
    with pytest.raises(OutputError, match="not a semrec"):
        export_items(model, np.arange(split.n_items).astype(str), foreign, overwrite=True)
    assert foreign.read_text() == "mine"
    with pytest.raises(DataError, match="not a semrec item-vectors"):
        VectorTable.load(path, ITEM_KIND)


def test_mean_pool_is_the_hand_computed_history_average_and_idf_weights_rare_items():
    class Tiny:  # a model of 4 items in 2-d: all pooling needs is item_embeddings()
        name, n_items = "tiny", 4

        def embed_users(self, histories):
            return np.zeros((len(histories), 2), np.float32)

        def item_embeddings(self):
            return np.array([[1, 0], [0, 1], [2, 2], [-1, 3]], np.float32)

    hist = Sequences.from_lists([[0, 1], [0, 0, 2], [3], [], [0, 1, 3]])
    mean = user_vectors(Tiny(), hist, pool="mean")
    assert mean.dtype == np.float32 and mean.shape == (5, 2)
    np.testing.assert_allclose(mean, [[.5, .5], [4 / 3, 2 / 3], [-1, 3], [0, 0], [0, 4 / 3]], atol=1e-6)
    idf = item_idf(hist, 4)  # users with the item: 0 -> 3, 1 -> 2, 2 -> 1, 3 -> 2 (of 5); repeats count once
    np.testing.assert_allclose(idf, np.log(5 / np.array([3, 2, 1, 2])), rtol=1e-6)
    weighted = user_vectors(Tiny(), hist, pool="idf-mean")
    w = idf[[0, 1, 3]]
    np.testing.assert_allclose(weighted[4], (w[:, None] * Tiny().item_embeddings()[[0, 1, 3]]).sum(0) / w.sum(),
                               rtol=1e-5)
    assert not np.allclose(weighted, mean) and np.allclose(weighted[2], mean[2])  # one item: weights cancel
    np.testing.assert_allclose(pool_items(Tiny().item_embeddings(), hist, np.zeros(4)), 0)  # no weight: zeros
    with pytest.raises(ConfigError, match="pool 'max'"):
        user_vectors(Tiny(), hist, pool="max")
    with pytest.raises(ConfigError, match="no item text vectors"):
        user_vectors(Tiny(), hist, pool="mean", source="text")
    with pytest.raises(ConfigError, match="needs a pooled vector"):
        user_vectors(Tiny(), hist, source="text")


def test_pooled_vectors_of_a_trained_model_are_exported_and_not_marked_as_scores(fitted, split, tmp_path):
    model, es = fitted["sasrec"], split.test
    table = export_users(model, es.histories, es.users, es.users.astype(str), tmp_path / "u.parquet",
                         pool="idf-mean", reference=split.train)
    assert table.vectors.shape == (len(es), 64) and table.vectors.dtype == np.float32
    back = VectorTable.load(tmp_path / "u.parquet", USER_KIND)
    assert back.meta["dot_product"] is False and back.meta["pool"] == "idf-mean"
    items = model.item_embeddings()
    first = es.histories[0]
    np.testing.assert_allclose(user_vectors(model, es.histories, pool="mean")[0], items[first].mean(0), rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(back.vectors, user_vectors(model, es.histories, pool="mean"))


def _clustered(n: int, d: int = 16, centres: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)).astype(np.float32) * 3
    label = rng.integers(0, centres, n)
    return (c[label] + rng.standard_normal((n, d)).astype(np.float32) * 0.5), label


@pytest.mark.parametrize("kind,opts", [("ivf", {"nlist": 20, "nprobe": 5}), ("hnsw", {"ef_search": 200})])
def test_faiss_indexes_agree_with_exact_and_survive_save_load(kind, opts, tmp_path):
    items, _ = _clustered(3000)
    queries, _ = _clustered(200, seed=1)
    truth, _ = VectorIndex.build(items).search(queries, 10)
    index = VectorIndex.build(items, IndexConfig(kind=kind, threads=1, **opts))
    found, scores = index.search(queries, 10)
    assert recall_overlap(found, truth) >= 0.9
    assert (np.diff(scores, axis=1) <= 1e-5).all()  # best first
    index.save(tmp_path / kind)
    again, _ = VectorIndex.load(tmp_path / kind).search(queries, 10)
    np.testing.assert_array_equal(again, found)
    assert recall_overlap(truth, truth) == 1.0


def test_lookalikes_find_the_seed_cluster():
    vecs, label = _clustered(600, centres=6, seed=2)
    seeds = np.flatnonzero(label == 3)[:20]
    for method in ("centroid", "max", "mean"):
        rows, _ = expand_segment(vecs, seeds, k=50, method=method)
        assert not np.isin(rows, seeds).any()
        assert (label[rows] == 3).mean() >= 0.9
    near, sims = similar_users(vecs, np.array([0, 1]), k=5)
    assert near.shape == (2, 5) and 0 not in near[0] and (label[near[0]] == label[0]).all()
    assert (np.diff(sims, axis=1) <= 1e-6).all()


def test_user_semantic_ids_group_similar_users():
    vecs, label = _clustered(500, centres=4, seed=3)
    tok = fit_user_ids(vecs, [f"u{i}" for i in range(500)], n_levels=2, codebook_size=4)
    assert tok.codes.shape[0] == 500 and len(np.unique(tok.codes, axis=0)) == 500  # collision-free
    groups = segments(tok.codes, depth=1)
    purity = sum(np.bincount(label[g]).max() for g in groups.values()) / 500
    assert purity >= 0.9
    assert (tok.encode(vecs[:5]) == tok.codes[:5]).all()


def test_tiger_hier_exposes_state_but_is_not_dot_product(split):
    from semrec.models.tiger_hier import TigerHier

    codes = np.stack([np.arange(split.n_items) % 8, np.arange(split.n_items) // 8], 1)
    model = TigerHier(split.n_items, codes=codes, epochs=1, progress=False, d_model=32, d_ff=64, n_heads=2,
                      d_head=16).fit(split.train)
    assert model.dot_product is False
    assert model.embed_users(split.test.histories).shape == (len(split.test), 32)
    assert model.item_embeddings().shape == (split.n_items, 32)


# ---------------------------------------------------------------------------------------------- CLI
def _app():
    from semrec.cli import _register, app
    from semrec.cli import users as users_cli

    _register()
    if not any(g.name == "users" for g in app.registered_groups):
        users_cli.register(app)
    return app


def _ok(result):
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_cli_embed_index_search_similar_lookalike_ids(tmp_path):
    app, runner = _app(), CliRunner()
    data, run = tmp_path / "syn", tmp_path / "run"
    synthetic_dataset(SyntheticConfig(n_users=200, n_items=80, seed=7)).save(data)
    _ok(runner.invoke(app, ["train", "sasrec", "--data", str(data), "--out", str(run), "--set", "epochs=1",
                            "--set", "loss=ce"]))
    users, items = tmp_path / "users.parquet", tmp_path / "items.parquet"
    _ok(runner.invoke(app, ["users", "embed", str(run), "--out", str(users)]))
    _ok(runner.invoke(app, ["items", "embed", str(run), "--out", str(items)]))
    assert pl.read_parquet(users).height == 200 and pl.read_parquet(items).height == 80
    bad = runner.invoke(app, ["users", "embed", str(run), "--out", str(users)])
    assert bad.exit_code != 0 and "--overwrite" in str(bad.exception) + bad.output
    _ok(runner.invoke(app, ["users", "embed", str(run), "--split", "all", "--out", str(users), "--overwrite"]))
    pooled = tmp_path / "pooled.parquet"
    _ok(runner.invoke(app, ["users", "embed", str(run), "--pool", "idf-mean", "--out", str(pooled)]))
    assert VectorTable.load(pooled, USER_KIND).meta["pool"] == "idf-mean"
    bad = runner.invoke(app, ["users", "embed", str(run), "--pool-source", "text", "--pool", "mean",
                              "--out", str(tmp_path / "t.parquet")])
    assert bad.exit_code != 0 and "no item text vectors" in str(bad.exception) + bad.output
    for kind in ("exact", "hnsw"):
        _ok(runner.invoke(app, ["index", "build", str(items), "--kind", kind, "--out", str(tmp_path / kind)]))
    recs = tmp_path / "recs.parquet"
    _ok(runner.invoke(app, ["index", "search", str(tmp_path / "exact"), "--users", str(users), "-k", "5",
                            "--out", str(recs)]))
    frame = pl.read_parquet(recs)
    assert frame.height == 200 * 5 and frame["rank"].max() == 5
    uid = frame["user_id"][0]
    out = _ok(runner.invoke(app, ["users", "similar", str(users), uid, "-k", "3", "--json"]))
    assert out.count("user_id") == 3 and f'"{uid}"' not in out
    seg = tmp_path / "seg.parquet"
    seeds = ",".join(frame["user_id"].unique(maintain_order=True).head(5).to_list())
    _ok(runner.invoke(app, ["users", "lookalike", str(users), "--seeds", seeds, "-k", "10", "--out", str(seg)]))
    assert pl.read_parquet(seg).height == 10
    _ok(runner.invoke(app, ["users", "ids", "fit", str(users), "--levels", "2", "--codebook-size", "8",
                            "--out", str(tmp_path / "uids")]))
    codes = pl.read_parquet(tmp_path / "uids" / "user_codes.parquet")
    assert codes.height == 200 and codes["codes"].list.len().min() >= 2


# ---------------------------------------------------------------------------------------------- user-text
@pytest.fixture(scope="module")
def user_text(tmp_path_factory):
    torch.set_num_threads(1)
    ds = synthetic_dataset(SyntheticConfig(n_users=300, n_items=120, seed=5))
    folder = tmp_path_factory.mktemp("ut") / "syn"
    ds.save(folder)
    sp = leave_one_out(ds)
    cache = str(folder.parent / "cache")
    model = get_model_class("user-text")(sp.n_items, dataset=str(folder), instructions=True, cache_dir=cache,
                                         epochs=4, progress=False, hidden=32, n_layers=1).fit(sp.train)
    return model, ds, sp, folder


def test_user_text_vectors_live_in_text_space_and_reproduce_scores(user_text, tmp_path):
    model, _, sp, _ = user_text
    users, items = model.embed_users(sp.test.histories), model.item_embeddings()
    assert users.shape == (len(sp.test), 384) and items.shape == (sp.n_items, 384)
    np.testing.assert_allclose(np.linalg.norm(users, axis=1), 1.0, atol=1e-5)
    with model.scoring():
        np.testing.assert_allclose(users @ items.T, model.score(sp.test.histories).numpy(), atol=1e-5)
    model.save(tmp_path / "m")
    from semrec.models import Recommender

    back = Recommender.load(tmp_path / "m")
    np.testing.assert_array_equal(back.embed_users(sp.test.histories), users)
    assert [t.name for t in back.tasks] == [t.name for t in model.tasks]

    text = model.text_embeddings()  # text-pooled users: the mean of the frozen text vectors over the history
    pooled = user_vectors(model, sp.test.histories, pool="mean", source="text")
    assert pooled.shape == (len(sp.test), 384) and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled[5], text[sp.test.histories[5]].mean(0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="instruction conditions the model's own state"):
        user_vectors(model, sp.test.histories, instruction=model.tasks[0].instruction, pool="mean")


def test_query_blending_moves_the_ranking_toward_the_query_topic(user_text):
    model, ds, sp, _ = user_text
    top = np.asarray(ds.items["categories"].list.first().str.split(" > ").list.get(0).to_list())
    hist = sp.test.histories
    for topic, query in (("Toys", "toys and puzzles for kids"), ("Kitchen", "kitchen baking and coffee")):
        share = {}
        for w in (0.0, 0.5, 1.0):
            ids, scores = model.recommend(hist, k=10, query=query, query_weight=w)
            share[w] = float((top[ids] == topic).mean())
            assert (np.diff(scores, axis=1) <= 1e-6).all()
        assert share[0.0] < share[0.5] <= share[1.0] and share[1.0] >= 0.8, (topic, share)
    own, _ = model.recommend(hist, k=10)
    assert (model.recommend(hist, k=10, query="anything", query_weight=0.0)[0] == own).all()
    excl, _ = model.recommend(hist, k=10, exclude=hist, query="toys", query_weight=0.5)
    assert not any(np.isin(excl[i], hist[i]).any() for i in range(len(hist)))


def test_an_instruction_changes_the_embedding_and_answers_its_task(user_text):
    model, _, sp, _ = user_text
    assert model.instruction_aware and {t.name for t in model.tasks} >= {"next-category", "top-category"}
    hist = sp.test.histories
    plain = model.embed_users(hist)
    task = next(t for t in model.tasks if t.name == "top-category")
    cond = model.embed_users(hist, instruction=task.instruction)
    assert np.abs(cond - plain).max() > 1e-3
    np.testing.assert_array_equal(model.embed_users(hist, instruction=task.instruction), cond)
    probs = model.answer(hist, "top-category")
    assert probs.shape == (len(hist), len(task.answers))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    from semrec.users import user_vectors

    with pytest.raises(Exception, match="does not take an instruction"):
        user_vectors(get_model_class("sasrec")(sp.n_items), hist, instruction="x")


def test_cli_recommend_query_steers_toward_the_topic_and_is_refused_where_it_cannot_work(user_text, fitted,
                                                                                         tmp_path):
    import json

    model, ds, sp, folder = user_text
    model.save(tmp_path / "ut")
    fitted["sasrec"].save(tmp_path / "sas")
    app, runner = _app(), CliRunner()
    ids = ds.items["item_id"].to_numpy().astype(str)
    top = dict(zip(ids, ds.items["categories"].list.first().str.split(" > ").list.get(0).to_list()))
    hist = sp.test.histories[0]
    base = ["recommend", str(tmp_path / "ut"), "--data", str(folder), "--history", ",".join(ids[hist]), "-k", "10",
            "--json"]

    def items(*extra):
        result = runner.invoke(app, [*base, *extra])
        _ok(result)
        return [r["item_id"] for r in json.loads(result.stdout)]  # stderr holds the encoder's progress lines

    steered = items("--query", "toys and puzzles for kids", "--query-weight", "1")
    assert sum(top[i] == "Toys" for i in steered) >= 8
    plain = items()
    assert items("--query", "toys and puzzles for kids", "--query-weight", "0") == plain
    assert plain == ids[model.recommend(sp.test.histories.select(np.array([0])), k=10)[0][0]].tolist()
    half = items("--query", "toys and puzzles for kids")  # the model's own query_weight (0.5)
    want = model.recommend(sp.test.histories.select(np.array([0])), k=10, query="toys and puzzles for kids")[0][0]
    assert half == ids[want].tolist()
    for extra, message in ((["--query-weight", "0.5"], "needs --query"),
                           (["--query", "toys", "--query-weight", "2"], "outside"),
                           (["--query", "  "], "empty")):
        bad = runner.invoke(app, [*base, *extra])
        assert bad.exit_code != 0 and message in str(bad.exception), (extra, bad.output)
    bad = runner.invoke(app, ["recommend", str(tmp_path / "sas"), "--data", str(folder), "--history", ids[0],
                              "--query", "toys"])
    assert bad.exit_code != 0 and "does not take a text query" in str(bad.exception)
