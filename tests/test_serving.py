"""The HTTP API on a small real SASRec run, through FastAPI's TestClient: answers equal the model's own, limits
and bad input give 4xx with a reason, writes need the key, live changes persist and reach other workers."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import polars as pl
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from semrec.models import Recommender  # noqa: E402
from semrec.serving import Engine, Query, create_app, recommend_file  # noqa: E402
from semrec.serving.batcher import MicroBatcher  # noqa: E402
from tests import serving_runs  # noqa: E402

KEY = "test-key"


@pytest.fixture(scope="module")
def runs(serving_sasrec):
    return serving_sasrec


@pytest.fixture
def client(runs, tmp_path):
    root, ds, run = runs
    engine = Engine.from_run(run, state_dir=tmp_path / "state")
    with TestClient(create_app(engine, api_key=KEY)) as c:
        yield c, engine, ds


def test_recommend_equals_the_models_own_ranking(client, runs):
    c, engine, ds = client
    ids = ds.item_ids()
    hist = [ids[5], ids[17], ids[40]]
    r = c.post("/recommend", json={"history": hist + ["NOT-AN-ITEM"], "k": 10})
    assert r.status_code == 200
    body = r.json()
    assert body["unknown"] == ["NOT-AN-ITEM"] and body["model"] == "sasrec" and body["fallback"] is None
    from semrec.data import Sequences

    model = Recommender.load(runs[2] / "model")
    want_ids, want_scores = model.recommend(Sequences.from_lists([[5, 17, 40]]), k=10)
    assert [x["item_id"] for x in body["items"]] == ids[want_ids[0]].tolist()
    assert np.allclose([x["score"] for x in body["items"]], want_scores[0], atol=1e-5)
    assert [x["rank"] for x in body["items"]] == list(range(1, 11))
    titles = dict(zip(ds.items["item_id"].to_list(), ds.items["title"].to_list()))
    assert all(x["title"] == titles[x["item_id"]] for x in body["items"])


def test_exclude_seen_filter_and_query(client):
    c, _, ds = client
    ids = ds.item_ids()
    hist = ids[:8].tolist()
    top = [x["item_id"] for x in c.post("/recommend", json={"history": hist, "k": 50, "exclude_seen": True}).json()["items"]]
    assert len(top) == 50 and not set(top) & set(hist)
    brand = ds.items["brand"][3]
    r = c.post("/recommend", json={"history": hist, "k": 20, "filter": {"brand": brand}}).json()
    want = set(ds.items.filter(pl.col("brand") == brand)["item_id"].to_list())
    assert r["items"] and {x["item_id"] for x in r["items"]} <= want
    assert len(r["items"]) == min(20, len(want))
    r = c.post("/recommend", json={"history": hist, "k": 20, "query": "shampoo"}).json()
    assert r["items"] and all("shampoo" in x["title"].lower() for x in r["items"])
    r = c.post("/recommend", json={"history": hist, "k": 5, "filter": {"categories": "Sports > Yoga"}}).json()
    assert r["items"] and all(x["item_id"] in set(ds.items.filter(pl.col("categories").list.join("|").str.contains(
        "Sports > Yoga", literal=True))["item_id"]) for x in r["items"])
    empty = c.post("/recommend", json={"history": hist, "k": 5, "filter": {"brand": "no such brand"}}).json()
    assert empty["items"] == []


def test_empty_or_unknown_history_falls_back_to_popularity(client):
    c, _, ds = client
    body = c.post("/recommend", json={"history": ["nope"], "k": 3}).json()
    counts = np.bincount(ds.interactions["item_idx"].to_numpy(), minlength=ds.n_items)
    assert body["fallback"] == "popularity" and body["unknown"] == ["nope"]
    assert [x["score"] for x in body["items"]] == sorted(counts, reverse=True)[:3]


def test_batch_endpoint_equals_single_requests(client):
    c, _, ds = client
    ids = ds.item_ids()
    reqs = [{"history": ids[i:i + 4].tolist(), "k": 5 + i % 3, "exclude_seen": bool(i % 2)} for i in range(0, 40, 4)]
    batch = c.post("/recommend/batch", json={"requests": reqs}).json()["results"]
    single = [c.post("/recommend", json=r).json() for r in reqs]
    assert [[x["item_id"] for x in b["items"]] for b in batch] == [[x["item_id"] for x in s["items"]] for s in single]


@pytest.mark.parametrize("body, status", [
    (b"{not json", 422), (b"[]", 422), (b'{"history": "abc"}', 422), (b'{"history": [], "k": 0}', 422),
    (b'{"history": [], "k": 100000}', 422), (b'{"history": [], "typo": 1}', 422),
    (json.dumps({"history": ["x"] * 201}).encode(), 422), (json.dumps({"history": ["x" * 500]}).encode(), 422),
    (b'{"history": [], "filter": {"nope": 1}}', 400), (b'{"history": [], "filter": {"title": {"min": 1}}}', 400),
    (b'{"history": [], "filter": {"brand": {"a": [1]}}}', 422), (b'{"history": [null]}', 422),
    (b'{"history": [], "k": 1e400}', 422), (b"", 422),
])
def test_bad_requests_get_4xx_with_a_reason(client, body, status):
    c, _, _ = client
    r = c.post("/recommend", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_limits_and_unknown_ids(client):
    c, _, _ = client
    huge = b'{"history": [' + b'"a",' * 400_000 + b'"a"]}'
    assert c.post("/recommend", content=huge, headers={"content-type": "application/json"}).status_code == 413
    assert c.get("/items/NOPE").status_code == 404
    assert c.get("/items/NOPE/similar").status_code == 404
    assert c.delete("/items/NOPE", headers={"X-API-Key": KEY}).status_code == 404
    assert c.get("/items", params={"limit": 0}).status_code == 422
    assert c.get("/items/x/similar", params={"k": 10**6}).status_code == 422
    assert c.post("/items", json={"items": []}, headers={"X-API-Key": KEY}).status_code == 422


def test_writes_need_the_api_key(client):
    c, _, _ = client
    new = {"items": [{"item_id": "K-1", "attributes": {"title": "x"}}]}
    assert c.post("/items", json=new).status_code == 401
    assert c.post("/items", json=new, headers={"X-API-Key": "wrong"}).status_code == 401
    assert c.delete("/items/K-1").status_code == 401
    assert c.post("/items", json=new, headers={"X-API-Key": KEY}).status_code == 200


def test_add_delete_persist_and_reach_other_workers(client, runs):
    c, engine, ds = client
    h = {"X-API-Key": KEY}
    r = c.post("/items", headers=h, json={"items": [
        {"item_id": "NEW-1", "attributes": {"title": "Zenlu lavender shampoo", "brand": "Zenlu"}},
        {"item_id": "NEW-1", "attributes": {"title": "again"}},
        {"item_id": ds.item_ids()[0], "attributes": {"title": "clash"}}]}).json()
    assert [x["status"] for x in r["items"]] == ["added", "duplicate", "exists"]
    assert r["items"][0]["recommendable"] is False and "sasrec" in r["items"][0]["reason"]  # an ID model says so
    assert r["new_items"] == "none" and r["catalogue_size"] == ds.n_items + 1
    item = c.get("/items/NEW-1").json()
    assert item["added"] and item["attributes"]["brand"] == "Zenlu" and item["interactions"] == 0
    assert c.get("/items", params={"q": "zenlu lavender"}).json()["items"][0]["item_id"] == "NEW-1"
    # history holding the new item: the ID model cannot read it, says so, and still answers
    body = c.post("/recommend", json={"history": ["NEW-1", ds.item_ids()[1]], "k": 5}).json()
    assert body["ignored"] == ["NEW-1"] and len(body["items"]) == 5
    victim = c.post("/recommend", json={"history": [ds.item_ids()[1]], "k": 1}).json()["items"][0]["item_id"]
    assert c.delete(f"/items/{victim}", headers=h).json()["deleted"] is True
    assert c.delete(f"/items/{victim}", headers=h).status_code == 404  # already deleted
    after = c.post("/recommend", json={"history": [ds.item_ids()[1]], "k": 50}).json()["items"]
    assert victim not in {x["item_id"] for x in after}
    # a second worker (same state folder) and a restarted server see both changes
    other = Engine.from_run(runs[2], state_dir=engine.store.dir)
    assert other.catalogue.index["NEW-1"] == ds.n_items and not other.catalogue.active[ds.item_ids().tolist().index(victim)]
    c.post("/items", headers=h, json={"items": [{"item_id": "NEW-2", "attributes": {"title": "later"}}]})
    assert "NEW-2" not in other.catalogue.index
    other.sync()
    assert other.catalogue.index["NEW-2"] == ds.n_items + 1
    state = json.loads((engine.store.dir / "catalogue.json").read_text())
    assert [e["item_id"] for e in state["added"]] == ["NEW-1", "NEW-2"] and state["deleted"] == [victim]


def test_similar_embed_health_metrics_docs_and_page(client):
    c, engine, ds = client
    sid = ds.item_ids()[7]
    sim = c.get(f"/items/{sid}/similar", params={"k": 5}).json()
    emb = engine.model.item_embeddings()
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    cos = emb @ emb[7]
    cos[7] = -np.inf
    assert sim["method"] == "item-embedding cosine"
    assert [x["item_id"] for x in sim["items"]] == ds.item_ids()[np.argsort(-cos, kind="stable")[:5]].tolist()
    e = c.post("/users/embed", json={"history": ds.item_ids()[:3].tolist()})
    if hasattr(engine.model, "embed_users"):
        assert e.status_code == 200 and e.json()["dim"] == engine.model.config.hidden
    else:
        assert e.status_code == 400
    health = c.get("/health").json()
    assert health["status"] == "ok" and health["items"] == ds.n_items and health["new_items"] == "none"
    text = c.get("/metrics").text
    assert 'semrec_requests_total{method="GET",route="/items/{item_id}/similar",status="200"} 1' in text
    assert f"semrec_catalogue_active_items {ds.n_items}" in text
    assert 'semrec_request_seconds_bucket{route="/health",le="+Inf"} 1' in text
    paths = set(c.get("/openapi.json").json()["paths"])
    assert {"/recommend", "/recommend/batch", "/items", "/items/{item_id}", "/items/{item_id}/similar",
            "/users/embed", "/health", "/metrics"} <= paths
    page = c.get("/")
    assert page.status_code == 200 and "semrec explorer" in page.text and "/recommend" in page.text


def test_api_docs_pages_load_every_asset_from_this_server(client):
    """/docs and /redoc work offline: every script, style and icon they reference is a local URL served here."""
    import re

    c, _, _ = client
    for page, needed in (("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")), ("/redoc", ("redoc.standalone.js",))):
        r = c.get(page)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        urls = re.findall(r'(?:src|href)="([^"]+)"', r.text) + re.findall(r"url: '([^']+)'", r.text)
        assert all(n in " ".join(urls) for n in needed), urls
        assert "http" not in r.text.lower().replace("http-equiv", ""), "an absolute URL would need the network"
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), url
            got = c.get(url)
            assert got.status_code == 200 and len(got.content) > 100, url
        assert '"validatorUrl": null' in r.text or page == "/redoc"  # no badge fetched from an online validator
    assert c.get("/docs-assets/swagger-ui-bundle.js").headers["content-type"].startswith("text/javascript")
    assert b"SwaggerUIBundle" in c.get("/docs-assets/swagger-ui-bundle.js").content
    assert c.get("/docs-assets/../app.py").status_code == 404 and c.get("/docs-assets/index.html").status_code == 404
    paths = set(c.get("/openapi.json").json()["paths"])
    assert not any(p.startswith(("/docs", "/redoc")) for p in paths)  # pages, not API endpoints


def test_batch_file_matches_the_engine(runs, tmp_path):
    root, ds, run = runs
    engine = Engine.from_run(run, state_dir=tmp_path / "state")
    ids = ds.item_ids()
    hist = [ids[i:i + 1 + i % 5].tolist() + (["ghost"] if i % 7 == 0 else []) for i in range(50)]
    pl.DataFrame({"user_id": [f"u{i}" for i in range(50)], "history": hist}).write_parquet(tmp_path / "in.parquet")
    info = recommend_file(engine, tmp_path / "in.parquet", tmp_path / "out.parquet", k=7, exclude_seen=True,
                          batch_size=16, progress=False)
    out = pl.read_parquet(tmp_path / "out.parquet")
    assert info["rows"] == 50 and info["unknown_ids"] == 8 and out["user_id"].to_list() == [f"u{i}" for i in range(50)]
    for i in (0, 13, 49):
        want = engine.recommend([Query(np.asarray([j for j in range(i, i + 1 + i % 5)]), 7, True)])[0]
        assert out["item_ids"][i].to_list() == ids[want.items].tolist()
        assert np.allclose(out["scores"][i].to_numpy(), want.scores)
        assert out["unknown"][i].to_list() == (["ghost"] if i % 7 == 0 else [])
    # CSV input with comma-joined ids gives the same file content
    pl.DataFrame({"user_id": [f"u{i}" for i in range(50)], "history": [",".join(h) for h in hist]}).write_csv(
        tmp_path / "in.csv")
    recommend_file(engine, tmp_path / "in.csv", tmp_path / "out2.parquet", k=7, exclude_seen=True, progress=False)
    out2 = pl.read_parquet(tmp_path / "out2.parquet")
    assert out2.schema == out.schema, (out2.schema, out.schema)
    for col in ("user_id", "item_ids", "unknown"):
        assert out2[col].to_list() == out[col].to_list(), col
    assert np.allclose(out2["scores"].explode().to_numpy(), out["scores"].explode().to_numpy(), atol=1e-5)
    from semrec.errors import OutputError

    (tmp_path / "mine.parquet").write_text("not semrec's")
    with pytest.raises(OutputError):
        recommend_file(engine, tmp_path / "in.csv", tmp_path / "mine.parquet", overwrite=True, progress=False)
    assert (tmp_path / "mine.parquet").read_text() == "not semrec's"


def test_micro_batcher_answers_concurrent_callers_in_few_calls():
    calls = []

    def fn(items):
        calls.append(len(items))
        import time

        time.sleep(0.01)
        return [x * 2 for x in items]

    b = MicroBatcher(fn, max_batch=16)

    async def main():
        return await asyncio.gather(*[b.submit(i) for i in range(64)])

    assert asyncio.run(main()) == [i * 2 for i in range(64)]
    assert calls == [16, 16, 16, 16] and (b.batches, b.items) == (4, 64)
    b.close()


def test_micro_batcher_hands_errors_to_every_caller_and_recovers():
    def fn(items):
        if any(x < 0 for x in items):
            raise ValueError("negative")
        return [x + 1 for x in items]

    b = MicroBatcher(fn, max_batch=8)

    async def main():
        bad = await asyncio.gather(*[b.submit(x) for x in (1, -1, 2)], return_exceptions=True)
        good = await asyncio.gather(*[b.submit(x) for x in (5, 6)])
        lone = await b.submit(9)  # an idle batcher answers a single caller at once
        return bad, good, lone

    bad, good, lone = asyncio.run(main())
    assert all(isinstance(e, ValueError) for e in bad) and good == [6, 7] and lone == 10
    assert (b.batches, b.items) == (3, 6)


def test_serving_options_are_decoding_options_only(runs, tmp_path):
    from semrec.errors import ConfigError

    with pytest.raises(ConfigError, match="not a serving option of sasrec"):
        Engine.from_run(runs[2], state_dir=tmp_path / "s", options=["beam=30"])


def test_fast_path_answers_as_the_fastapi_route(client):
    """POST /recommend with a JSON body skips FastAPI's routing (semrec.serving.asgi.FastPath); a `+json` media
    type still goes through the FastAPI route. Both give the same answers and the same 422 details."""
    c, _, ds = client
    ids = ds.item_ids()
    good = json.dumps({"history": [ids[3], ids[9], "ghost"], "k": 7, "exclude_seen": True}).encode()
    bad = b'{"history": [], "k": 0, "typo": 1}'
    fast = [c.post("/recommend", content=b, headers={"content-type": "application/json; charset=utf-8"}) for b in (good, bad)]
    slow = [c.post("/recommend", content=b, headers={"content-type": "application/merge-patch+json"}) for b in (good, bad)]
    assert [r.status_code for r in fast] == [r.status_code for r in slow] == [200, 422]
    assert fast[0].json() == slow[0].json() and fast[0].json()["unknown"] == ["ghost"]
    assert fast[1].json() == slow[1].json()
    assert {tuple(e["loc"]) for e in fast[1].json()["detail"]} == {("body", "k"), ("body", "typo")}
    text = c.get("/metrics").text
    assert 'semrec_requests_total{method="POST",route="/recommend",status="200"} 2' in text
    assert 'semrec_requests_total{method="POST",route="/recommend",status="422"} 2' in text
