"""The serving engine: one loaded run (model + catalogue + new-item encoder + durable state) answering batches of
recommendation queries, adding and removing items live, and finding similar items.

Every change to the catalogue is written to the state file first (`CatalogueStore.change`) and applied to memory
by the same code that replays the file at start-up and picks up other workers' changes, so memory, disk and
every worker agree.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semrec.data.sequences import Sequences
from semrec.errors import ConfigError, DataError
from semrec.serving.catalogue import Catalogue
from semrec.serving.newitems import NewItems
from semrec.serving.store import CatalogueStore, StoreState, decode_vector, encode_vector


# decoding options a server may change on a trained model (`semrec serve --set beam=30 --set reserve_new=0.1`)
SERVE_OPTIONS = {"beam", "reserve_new", "decode_batch", "unseen_last_code"}
# what a server changes unless told otherwise: items added while serving are unseen in training, and their last
# code (an arbitrary disambiguation index) would otherwise keep them out of every top-k
SERVE_DEFAULTS = {"unseen_last_code": "siblings"}


@dataclass
class Query:
    """One recommendation request in catalogue indices. `allowed` (bool over the catalogue) restricts results;
    `allowed_key` names it so queries with the same restriction share one decoding pass."""

    history: np.ndarray
    k: int = 10
    exclude_seen: bool = False
    allowed: np.ndarray | None = None
    allowed_key: str | None = None


@dataclass
class Result:
    items: np.ndarray  # catalogue indices, best first (at most k; fewer when the restriction leaves fewer)
    scores: np.ndarray
    fallback: str | None = None  # "popularity" when no history item was usable


def model_dir(run_dir: Path) -> Path:
    """RUN_DIR/model, or RUN_DIR itself when it is a model folder."""
    for p in (run_dir / "model", run_dir):
        if (p / "config.json").exists() and (p / "model.safetensors").exists():
            return p
    raise DataError("no model found (expected model/config.json + model/model.safetensors)", path=run_dir,
                    fix="pass a run folder written by `semrec train` or a folder written by Recommender.save")


def dataset_dir(run_dir: Path, data: Path | None) -> Path:
    if data is not None:
        return Path(data)
    cfg = run_dir / "config.json"
    src = json.loads(cfg.read_text()).get("data") if cfg.exists() else None
    if not src:
        raise ConfigError(f"{run_dir} does not say which dataset it was trained on (fix: pass --data DATASET_DIR)")
    for cand in (Path(src), run_dir / src, *[q / src for q in run_dir.parents]):
        if (cand / "manifest.json").exists():
            return cand
    raise DataError(f"the run's dataset {src!r} is not found", path=cfg, field="data",
                    fix="pass --data DATASET_DIR")


class Engine:
    """A served run. Thread-safe: `lock` serialises model calls and catalogue changes."""

    def __init__(self, model: Any, catalogue: Catalogue, new_items: NewItems, store: CatalogueStore | None = None,
                 run_name: str = "run"):
        self.model, self.catalogue, self.new_items, self.store = model, catalogue, new_items, store
        self.run_name = run_name
        self.lock = threading.RLock()
        self.generative = hasattr(model, "trie") and getattr(model, "codes", None) is not None
        self.n_applied, self.deleted_applied, self.version = 0, set(), 0
        self.text_vectors = new_items.base_vectors()
        if self.text_vectors is not None and len(self.text_vectors) != catalogue.n_base:
            self.text_vectors = None
        if store is not None:
            self._apply(store.read())

    @classmethod
    def from_run(cls, run_dir: str | Path, state_dir: str | Path | None = None, data: str | Path | None = None,
                 device: str = "cpu", options: list[str] | None = None) -> "Engine":
        """Load RUN_DIR's model and dataset; replay the live changes in `state_dir` (default RUN_DIR/serving).

        `options` ("key=value") change how the model decodes, not what it learned: SERVE_OPTIONS only."""
        from semrec.data import Dataset
        from semrec.models import Recommender
        from semrec.training.config import apply_overrides

        run_dir = Path(run_dir)
        model = Recommender.load(model_dir(run_dir), device=device)
        options = list(options or [])
        names = {o.split("=", 1)[0].strip().replace("-", "_") for o in options}
        fields = set(getattr(model.config, "__dataclass_fields__", {}))
        bad = sorted(n for n in names if n not in SERVE_OPTIONS or n not in fields)
        if bad:
            usable = sorted(SERVE_OPTIONS & fields) or ["none for this model"]
            raise ConfigError(f"--set {', '.join(bad)}: not a serving option of {model.name} "
                              f"(serving options: {', '.join(usable)})")
        defaults = [f"{k}={v}" for k, v in SERVE_DEFAULTS.items() if k in fields and k not in names]
        if defaults or options:
            model.config = apply_overrides(model.config, defaults + options)
        ds = Dataset.load(dataset_dir(run_dir, Path(data) if data else None))
        if ds.n_items != model.n_items:
            raise DataError(f"the model has {model.n_items} items but the dataset has {ds.n_items}", path=run_dir,
                            fix="pass --data with the dataset the run was trained on")
        new_items = NewItems(model, run_dir, device=device)
        popularity = np.bincount(ds.interactions["item_idx"].to_numpy(), minlength=ds.n_items)
        catalogue = Catalogue(ds.items, new_items.fields or ds.text_fields or [], popularity)
        store = CatalogueStore(Path(state_dir) if state_dir else run_dir / "serving", run_id=model.name)
        return cls(model, catalogue, new_items, store, run_name=run_dir.name)

    # ------------------------------------------------------------------ live state
    def sync(self) -> None:
        """Apply changes other worker processes wrote since this one last looked (one `stat` when none)."""
        if self.store is not None and self.store.changed():
            with self.lock:
                self._apply(self.store.read())

    def _apply(self, state: StoreState) -> None:
        cat = self.catalogue
        new = state.added[self.n_applied:]
        if new:
            idx = cat.append([{"item_id": e["item_id"], **e.get("attributes", {})} for e in new])
            vecs = [decode_vector(e["vector"]) if e.get("vector") else None for e in new]
            if self.text_vectors is not None:
                dim = self.text_vectors.shape[1]
                block = np.stack([v if v is not None and len(v) == dim else np.zeros(dim, np.float32) for v in vecs])
                self.text_vectors = np.concatenate([self.text_vectors, block])
            coded = [j for j, e in enumerate(new) if e.get("code") is not None]
            if coded and self.new_items.kind == "codes":
                codes = np.asarray([new[j]["code"] for j in coded], dtype=np.int64)
                self.new_items.restore(np.stack([vecs[j] for j in coded]), codes, [new[j]["item_id"] for j in coded])
                ok = [j for j in coded if new[j].get("recommendable")]
                if ok:
                    try:
                        self.model.add_items(idx[ok], np.asarray([new[j]["code"] for j in ok], dtype=np.int64))
                    except DataError as e:  # never refuse to start over a stored item: serve it unrecommended
                        import warnings

                        warnings.warn(f"items stored in {self.store.path if self.store else 'state'} could not "
                                      f"join the trie ({e}); they are listed but not recommended", stacklevel=2)
            elif self.new_items.kind == "vectors":
                ok = [j for j, e in enumerate(new) if e.get("recommendable") and vecs[j] is not None]
                if ok:
                    self._add_vectors(idx[ok], np.stack([vecs[j] for j in ok]))
            self.n_applied = len(state.added)
        gone = [i for i in state.deleted if i not in self.deleted_applied and i in cat.index]
        if gone:
            idx = np.asarray([cat.index[i] for i in gone], dtype=np.int64)
            cat.deactivate(idx)
            if hasattr(self.model, "remove_items"):
                known = idx[idx < self._model_items()]
                if len(known) and cat.n_active:
                    self.model.remove_items(known)
            self.deleted_applied.update(gone)
        self.version = state.version

    def _add_vectors(self, idx: np.ndarray, vectors: np.ndarray) -> None:
        if hasattr(self.model, "add_item_vectors"):
            self.model.add_item_vectors(idx, vectors)
            return
        if int(self.model.n_items) != int(idx[0]) or np.any(np.diff(idx) != 1):
            raise DataError(f"{self.model.name} appends items after its {self.model.n_items} items, but the catalogue "
                            f"assigns indices {idx[:3].tolist()}...", fix="serve this run from a fresh state folder")
        got = np.asarray(self.model.add_items(vectors))
        if not np.array_equal(got, idx):
            raise DataError(f"{self.model.name}.add_items returned indices {got[:3].tolist()}..., expected "
                            f"{idx[:3].tolist()}...")

    def add_items(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add items (`item_id` + attribute values); returns one status dict per row, in order. Durable on return."""
        if self.store is None:
            raise ConfigError("this engine has no state folder, so it cannot add items")
        out: list[dict[str, Any]] = [{"item_id": r["item_id"]} for r in rows]
        fresh = [j for j, r in enumerate(rows) if r["item_id"] not in {x["item_id"] for x in rows[:j]}]
        vectors = None
        if self.new_items.source is not None and fresh:
            from semrec.data.sentences import item_sentences
            import polars as pl

            fields = [f for f in self.new_items.fields if any(f in rows[j] for j in fresh)]
            if not fields:
                raise ConfigError(f"new items need at least one of the text fields {self.new_items.fields}")
            table = pl.DataFrame([{f: rows[j].get(f) for f in fields} for j in fresh], infer_schema_length=None)
            vectors = self.new_items.encode_text(item_sentences(table, fields))
        with self.lock, self.store.change() as state:
            self._apply(state)
            entries, rows_for = [], []
            for n, j in enumerate(fresh):
                item_id = rows[j]["item_id"]
                if item_id in self.catalogue.index:
                    out[j] |= {"status": "exists", "recommendable": False, "reason": "an item with this id exists"}
                    continue
                attrs = {k: v for k, v in rows[j].items() if k != "item_id"}
                entry = {"item_id": item_id, "attributes": attrs, "recommendable": False}
                if vectors is not None:
                    entry["vector"] = encode_vector(vectors[n])
                entries.append(entry)
                rows_for.append((j, n))
            if entries and self.new_items.kind == "codes":
                vec = np.stack([vectors[n] for _, n in rows_for])
                codes, ok = self.new_items.tokenizer_codes(vec)
                for e, c, good in zip(entries, codes.tolist(), ok.tolist()):
                    e["code"], e["recommendable"] = c, bool(good)
                    if not good:
                        e["reason"] = "its code lies outside the trained codebooks (retrain to recommend it)"
            elif entries and self.new_items.kind == "vectors":
                for e in entries:
                    e["recommendable"] = True
            for e in entries:
                if not e["recommendable"] and "reason" not in e:
                    e["reason"] = self.new_items.reason
            state.added.extend(entries)
        with self.lock:
            self._apply(state)
        for e, (j, _) in zip(entries, rows_for):
            out[j] |= {"status": "added", "recommendable": e["recommendable"], "reason": e.get("reason"),
                       "code": e.get("code")}
        for j, r in enumerate(rows):
            out[j].setdefault("status", "duplicate")
            out[j].setdefault("recommendable", False)
            out[j].setdefault("reason", "the same id appears earlier in this request")
        return out

    def delete_item(self, item_id: str) -> bool:
        """Stop recommending `item_id` (durable on return); False when it is unknown or already deleted."""
        if self.store is None:
            raise ConfigError("this engine has no state folder, so it cannot delete items")
        with self.lock, self.store.change() as state:
            self._apply(state)
            i = self.catalogue.index.get(item_id, -1)
            if i < 0 or not self.catalogue.active[i]:
                return False
            if self.catalogue.n_active <= 1:
                raise ConfigError("refusing to delete the last recommendable item")
            state.deleted.append(item_id)
        with self.lock:
            self._apply(state)
        return True

    # ------------------------------------------------------------------ recommending
    def _model_items(self) -> int:
        return len(self.model.codes) if self.generative else int(self.model.n_items)

    def readable(self, idx: np.ndarray) -> np.ndarray:
        """Which history items the model can read (added items only when it scores unseen items)."""
        if self.generative:
            codes = self.model.codes
            inside = idx < len(codes)
            ok = np.zeros(len(idx), bool)
            ok[inside] = codes[idx[inside]].min(axis=1) >= 0
            return ok
        return idx < self.model.n_items

    def recommend(self, queries: list[Query]) -> list[Result]:
        """Top-k for each query (one model pass per batch; generative models one pass per restriction)."""
        with self.lock:
            n = len(self.catalogue)
            for q in queries:  # an item added after the mask was built is outside the restriction
                if q.allowed is not None and len(q.allowed) != n:
                    q.allowed = np.concatenate([q.allowed, np.zeros(max(0, n - len(q.allowed)), bool)])[:n]
            hists = [q.history[self.readable(q.history)] for q in queries]
            empty = [j for j, h in enumerate(hists) if len(h) == 0]
            results: list[Result | None] = [None] * len(queries)
            for j in empty:
                results[j] = self._popular(queries[j])
            rows = [j for j in range(len(queries)) if results[j] is None]
            if rows:
                fn = self._generate if self.generative else self._score
                for j, res in zip(rows, fn([queries[j] for j in rows], [hists[j] for j in rows])):
                    results[j] = res
        return results

    def _allowed(self, q: Query) -> np.ndarray:
        return self.catalogue.active if q.allowed is None else (q.allowed & self.catalogue.active)

    def _popular(self, q: Query) -> Result:
        s = np.where(self._allowed(q), self.catalogue.popularity, -np.inf)
        if q.exclude_seen and len(q.history):
            s[q.history] = -np.inf
        top = np.argsort(-s, kind="stable")[: q.k]
        top = top[np.isfinite(s[top])]
        return Result(top, s[top].astype(np.float32), fallback="popularity")

    def _score(self, queries: list[Query], hists: list[np.ndarray], chunk: int = 512) -> list[Result]:
        if len(queries) > chunk:  # bounded memory: (chunk, n_items) scores at a time
            return [r for s in range(0, len(queries), chunk)
                    for r in self._score(queries[s:s + chunk], hists[s:s + chunk], chunk)]
        n = len(self.catalogue)
        seqs = Sequences.from_lists(hists)
        with self.model.scoring():
            scores = torch.as_tensor(self.model.score(seqs)).float()
        if scores.shape[1] < n:  # items added after training that this model cannot score
            scores = torch.cat([scores, scores.new_full((len(queries), n - scores.shape[1]), -math.inf)], 1)
        scores = scores[:, :n].masked_fill(~torch.from_numpy(self.catalogue.active), -math.inf)
        restricted = [j for j, q in enumerate(queries) if q.allowed is not None]
        if restricted:
            allow = torch.from_numpy(np.stack([queries[j].allowed for j in restricted]))
            scores[restricted] = scores[restricted].masked_fill(~allow, -math.inf)
        ex = [j for j, q in enumerate(queries) if q.exclude_seen]
        if ex:
            r = torch.from_numpy(np.concatenate([np.full(len(queries[j].history), j) for j in ex]))
            c = torch.from_numpy(np.concatenate([queries[j].history for j in ex]))
            scores.index_put_((r, c), torch.tensor(-math.inf))
        top = torch.topk(scores, min(max(q.k for q in queries), n), dim=1)
        ids, vals = top.indices.numpy(), top.values.numpy()
        return [self._cut(ids[j], vals[j], q.k) for j, q in enumerate(queries)]

    @staticmethod
    def _cut(ids: np.ndarray, vals: np.ndarray, k: int) -> Result:
        keep = (ids[:k] >= 0) & np.isfinite(vals[:k])
        return Result(ids[:k][keep], vals[:k][keep])

    def _generate(self, queries: list[Query], hists: list[np.ndarray]) -> list[Result]:
        groups: dict[str | None, list[int]] = {}
        for j, q in enumerate(queries):
            groups.setdefault(q.allowed_key if q.allowed is not None else None, []).append(j)
        out: list[Result | None] = [None] * len(queries)
        for key, rows in groups.items():
            trie = None
            if key is not None:
                mask = self._allowed(queries[rows[0]])[: len(self.model.codes)]
                if not (mask & self.model.trie.active).any():
                    for j in rows:
                        out[j] = Result(np.zeros(0, np.int64), np.zeros(0, np.float32))
                    continue
                trie = self.model.trie.subset(mask=mask)
            seqs = Sequences.from_lists([hists[j] for j in rows])
            exclude = Sequences.from_lists([queries[j].history if queries[j].exclude_seen else [] for j in rows])
            k = max(queries[j].k for j in rows)
            ids, vals = self.model.recommend(seqs, k=k, exclude=exclude if exclude.lengths.any() else None, trie=trie)
            for r, j in enumerate(rows):
                keep = (ids[r] >= 0) & np.isfinite(vals[r])
                keep[keep] &= self.catalogue.active[ids[r][keep]]
                out[j] = Result(ids[r][keep][: queries[j].k], vals[r][keep][: queries[j].k])
        return out

    # ------------------------------------------------------------------ item views
    def code(self, i: int) -> list[int] | None:
        codes = getattr(self.model, "codes", None)
        if codes is None or i >= len(codes) or codes[i].min() < 0:
            return None
        return codes[i].tolist()

    def prefix_neighbours(self, i: int, limit: int = 10) -> tuple[list[int], np.ndarray]:
        """Active items sharing item i's code without its last level (the items a decoder tells apart last)."""
        code = self.code(i)
        if code is None:
            return [], np.zeros(0, np.int64)
        codes = self.model.codes
        prefix = code[:-1]
        same = (codes[:, :-1] == np.asarray(prefix)).all(axis=1) & self.catalogue.active[: len(codes)]
        same[i] = False
        return prefix, np.flatnonzero(same)[:limit]

    def similar(self, i: int, k: int = 10) -> tuple[np.ndarray, np.ndarray, str]:
        """(items, scores, method): cosine over the model's item vectors, else over text vectors, else the model's
        next-item recommendations after this one item."""
        with self.lock:
            table, method = None, ""
            emb = getattr(self.model, "item_embeddings", None)
            if emb is not None and not self.generative:
                try:
                    table, method = np.asarray(emb(), dtype=np.float32), "item-embedding cosine"
                except (NotImplementedError, TypeError):
                    table = None
                if table is not None and i >= len(table):
                    table = None
            if table is None and self.text_vectors is not None and i < len(self.text_vectors):
                table, method = self.text_vectors, "text-vector cosine"
            if table is None:
                res = self.recommend([Query(np.asarray([i]), k, exclude_seen=True)])[0]
                if res.fallback:
                    return res.items, res.scores, "most popular items (the model cannot read this item)"
                return res.items, res.scores, "next items after this one (model)"
            t = torch.from_numpy(np.ascontiguousarray(table[:, : table.shape[1]]))
            t = torch.nn.functional.normalize(t, dim=1)
            s = (t @ t[i]).numpy().astype(np.float32)
            allowed = self.catalogue.active[: len(s)].copy()
            allowed[i] = False
            s = np.where(allowed, s, -np.inf)
            top = np.argsort(-s, kind="stable")[:k]
            top = top[np.isfinite(s[top])]
            return top, s[top], method

    def embed(self, history: np.ndarray) -> np.ndarray | None:
        """The model's user vector for a history, or None when the model has none."""
        fn = getattr(self.model, "embed_users", None)
        if fn is None:
            return None
        with self.lock:
            h = history[self.readable(history)]
            return np.asarray(fn(Sequences.from_lists([h])), dtype=np.float32)[0]
