"""The service as users run it: `semrec serve` in a real uvicorn process on 127.0.0.1.

- a text-based run (text-seq) recommends an item added through POST /items (text only) for a history of similar
  items, in the very next request; a generative run (tiger-hier) encodes it to a code in its trie;
- kill -9 while a client adds items: after a restart every acknowledged item is there and recommendable;
- a bounded load test: 1,500 requests from 16 connections, no failed request.
Built on small real runs (text vectors from the bundled MiniLM), so the module is marked slow.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from semrec.serving.loadtest import run_load  # noqa: E402
from tests import serving_runs  # noqa: E402

pytestmark = pytest.mark.slow
KEY = "live-test-key"
NEW = [("shampoo", "Beauty > Hair Care > shampoo"), ("yoga mat", "Sports > Yoga > yoga mat"),
       ("tent", "Sports > Camping > tent")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("live")
    ds = serving_runs.build_dataset(root)
    ids = serving_runs.build_ids(root, ds)
    return {"root": root, "ds": ds, "sasrec": serving_runs.build_sasrec(root, ds),
            "text-seq": serving_runs.build_text_seq(root, ds), "tiger-hier": serving_runs.build_tiger_hier(root, ds, ids)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`semrec serve RUN` in a child process on 127.0.0.1 (killed at the end of the test, whatever happens)."""

    def __init__(self, run: Path, state: Path, log: Path):
        self.port = _free_port()
        env = {**os.environ, "SEMREC_API_KEY": KEY}
        self.log = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "semrec", "serve", str(run), "--state", str(state),
                                      "--port", str(self.port), "--threads", "1"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("server did not start within 180 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _new_items():
    return [{"item_id": "NEW-" + t.replace(" ", "-"), "attributes": {"title": f"Zenlu deluxe {t}, rose",
                                                                      "brand": "Zenlu", "categories": [c]}}
            for t, c in NEW]


def test_text_run_recommends_a_new_item_in_the_next_request(runs, tmp_path):
    server = Server(runs["text-seq"], tmp_path / "state", tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            added = c.post("/items", json={"items": _new_items()}, headers={"X-API-Key": KEY}).json()
            assert added["new_items"] == "vectors" and all(x["recommendable"] for x in added["items"])
            for (product, _), item in zip(NEW, _new_items()):
                history = serving_runs.similar_history(runs["ds"], product)
                recs = c.post("/recommend", json={"history": history, "k": 20, "exclude_seen": True}).json()
                ranked = [x["item_id"] for x in recs["items"]]
                assert item["item_id"] in ranked, (product, ranked)
                # text decides: the new items of another department rank below this one (or not at all)
                dept = item["attributes"]["categories"][0].split(" > ")[0]
                others = [o["item_id"] for o in _new_items() if not o["attributes"]["categories"][0].startswith(dept)]
                assert all(o not in ranked or ranked.index(o) > ranked.index(item["item_id"]) for o in others)
    finally:
        server.stop()


def test_generative_run_codes_a_new_item_into_its_trie(runs, tmp_path):
    server = Server(runs["tiger-hier"], tmp_path / "state", tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            added = c.post("/items", json={"items": _new_items()}, headers={"X-API-Key": KEY}).json()
            assert added["new_items"] == "codes"
            for res in added["items"]:
                assert res["status"] == "added" and res["recommendable"] and len(res["code"]) == 3
                page = c.get(f"/items/{res['item_id']}").json()
                assert page["code"] == res["code"] and page["prefix"] == res["code"][:2]
                # decodable: restricted to itself, the trie-constrained beam search returns exactly this item
                only = c.post("/recommend", json={"history": serving_runs.similar_history(runs["ds"], "tent"), "k": 5,
                                                  "filter": {"item_id": res["item_id"]}}).json()
                assert [x["item_id"] for x in only["items"]] == [res["item_id"]]
            codes = {tuple(r["code"]) for r in added["items"]}
            assert len(codes) == 3  # distinct codes, so the trie tells them apart
            # recommendable in the next request, unrestricted: the server scores an item unseen in training by its
            # trained siblings (unseen_last_code=siblings), so it competes with its semantic group
            ranked = {item["item_id"]: [x["item_id"] for x in c.post("/recommend", json={
                "history": serving_runs.similar_history(runs["ds"], product), "k": 20, "exclude_seen": True}
            ).json()["items"]] for (product, _), item in zip(NEW, _new_items())}
            hits = [i for i, r in ranked.items() if i in r]
            assert len(hits) >= 2, ranked  # measured: shampoo 14th, yoga mat 9th; the tent 21st, beside its sibling
    finally:
        server.stop()


def test_generative_new_item_scores_as_the_mean_of_its_trained_siblings(runs, tmp_path):
    """In-process: with unseen_last_code=model (the trained model's own last-code probability) no added item
    reaches a top-20; with siblings (the server's default) an added item's score is exactly log(mean p) of the
    trained items under its prefix, and added items reach the top-20 of histories of their product type."""
    import numpy as np
    from scipy.special import logsumexp

    from semrec.serving import Engine, Query

    rows = [{"item_id": it["item_id"], **it["attributes"]} for it in _new_items()]
    hits = {}
    for mode in ("model", "siblings"):
        engine = Engine.from_run(runs["tiger-hier"], state_dir=tmp_path / mode, options=[f"unseen_last_code={mode}"])
        assert engine.model.config.unseen_last_code == mode
        assert all(o["recommendable"] for o in engine.add_items(rows))
        cat, model = engine.catalogue, engine.model
        hits[mode] = 0
        for (product, _), item in zip(NEW, _new_items()):
            hist, _ = cat.lookup(serving_runs.similar_history(runs["ds"], product))
            new = cat.index[item["item_id"]]
            hits[mode] += int(new in engine.recommend([Query(hist, 20, True)])[0].items)
            if mode == "siblings":
                trained = model.active & np.asarray(model.seen, bool)
                sib = np.flatnonzero((model.codes[:, :-1] == model.codes[new, :-1]).all(1) & trained)
                assert len(sib) >= 1 and not trained[new]
                group = np.zeros(len(cat), bool)
                group[np.append(sib, new)] = True
                res = engine.recommend([Query(hist, len(sib) + 1, False, group, f"group-{new}")])[0]
                score = dict(zip(res.items.tolist(), res.scores.tolist()))
                assert set(score) == set(sib.tolist()) | {new}
                want = logsumexp([score[j] for j in sib]) - np.log(len(sib))
                assert abs(score[new] - want) < 1e-4, (score, want)
    assert hits == {"model": 0, "siblings": 2}, hits


def test_kill_9_while_adding_loses_no_acknowledged_item(runs, tmp_path):
    state = tmp_path / "state"
    server = Server(runs["tiger-hier"], state, tmp_path / "server.log")
    acked: list[str] = []
    coded: list[str] = []  # acknowledged as recommendable (a code inside the trained codebooks)
    from semrec.data.synthetic import TAXONOMY

    kinds = [(d, line, t) for d, lines in TAXONOMY.items() for line, types in lines.items() for t in types]

    def add_forever() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            for j in range(1000):
                d, line, t = kinds[(7 * j) % len(kinds)]
                try:
                    r = c.post("/items", headers={"X-API-Key": KEY}, json={"items": [
                        {"item_id": f"K9-{j}", "attributes": {"title": f"Zenlu model {j} {t}", "brand": "Zenlu",
                                                              "categories": [f"{d} > {line} > {t}"]}}]})
                except httpx.TransportError:
                    return
                res = r.json()["items"][0] if r.status_code == 200 else {}
                if res.get("status") == "added":
                    acked.append(f"K9-{j}")
                    if res["recommendable"]:
                        coded.append(f"K9-{j}")

    writer = threading.Thread(target=add_forever, daemon=True)
    writer.start()
    deadline = time.time() + 240
    while len(acked) < 12 and time.time() < deadline and writer.is_alive():
        time.sleep(0.05)
    server.proc.send_signal(signal.SIGKILL)  # mid-stream: the writer is sending its next item
    server.proc.wait()
    server.log.close()
    writer.join(timeout=60)
    assert len(acked) >= 12, "the server acknowledged too few items before the deadline"
    saved = json.loads((state / "catalogue.json").read_text())  # complete JSON, never half a file
    stored = [e["item_id"] for e in saved["added"]]
    assert stored[: len(acked)] == acked and len(stored) <= len(acked) + 1
    server = Server(runs["tiger-hier"], state, tmp_path / "server2.log")
    try:
        assert not list(state.glob(".catalogue.json.tmp-*"))
        with httpx.Client(base_url=server.url, timeout=60) as c:
            assert c.get("/health").json()["added_items"] == len(stored)
            for item_id in acked:
                page = c.get(f"/items/{item_id}").json()
                assert page["active"] and page["added"] and page["attributes"]["brand"] == "Zenlu"
            assert len(coded) >= len(acked) // 2
            history = serving_runs.similar_history(runs["ds"], "tent")
            for item_id in coded:  # decodable again after the restart: the trie was rebuilt from the state file
                assert c.get(f"/items/{item_id}").json()["code"] is not None
                only = c.post("/recommend", json={"history": history, "k": 3, "filter": {"item_id": item_id}}).json()
                assert [x["item_id"] for x in only["items"]] == [item_id] and only["fallback"] is None
    finally:
        server.stop()


def test_bounded_load_on_loopback_has_no_failed_request(runs, tmp_path):
    server = Server(runs["sasrec"], tmp_path / "state", tmp_path / "server.log")
    try:
        ids = runs["ds"].item_ids()
        payloads = [{"history": ids[i:i + 1 + i % 10].tolist(), "k": 20} for i in range(200)]
        res = run_load("127.0.0.1", server.port, "/recommend", payloads, requests=1500, concurrency=16,
                       max_seconds=120).summary()
        assert res["errors"] == 0 and res["completed"] == 1500 and res["statuses"] == {"200": 1500}
        assert res["p99_ms"] < 2000  # the throughput target is measured by benchmarks/serving.py, not asserted here
        metrics = httpx.get(server.url + "/metrics").text
        assert 'semrec_requests_total{method="POST",route="/recommend",status="200"} 1500' in metrics
        batches = float(next(l.split()[1] for l in metrics.splitlines() if l.startswith("semrec_batches_total")))
        assert batches < 1500  # concurrent requests shared model calls
    finally:
        server.stop()
