"""User-vector task benchmarks (issue 9), written to benchmarks/results/users/:

- `probe` (MovieLens-100K, users' gender / age band / occupation): a logistic-regression probe (standardised
  inputs, C = 1, user-level 5-fold CV) on frozen user vectors, against the majority class and a
  bag-of-items baseline (TF-IDF of the history + the same logistic regression), same 5 folds for every
  attribute. Vectors: SASRec (ce), user-text
  (no instructions), and the instruction-aware user-text given the matching instruction, trained per fold with
  only the training fold's attributes (held-out users' attributes never reach training), beside that same
  model's unconditioned vectors.
- `lookalike` (MovieLens-100K): seed segments of 20 users sharing an occupation (10 random draws per occupation
  with >= 40 users), expanded to 50 users by centroid cosine similarity; precision@50 = share of the expanded
  users with that occupation, against random (the occupation's share among the non-seed users).
- `query` (Beauty, Scientific; user-text): the held-out item's category path is the query. History only (w = 0),
  query only (w = 1) and history + query (w chosen on validation) on test, R@10 / N@10 with paired t-tests.
  The query is derived from the target's category, so this measures steering, not unaided prediction.

    python benchmarks/users_tasks.py --task probe --budget 100 --instruct-budget 240 --threads 1
    python benchmarks/users_tasks.py --task query --dataset beauty --threads 1 --budget 600
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SHARED_DATA, record, write_results_md  # noqa: E402

from semrec.data import Sequences, leave_one_out  # noqa: E402
from semrec.evaluation.significance import paired_tests  # noqa: E402
from semrec.models import get_model_class  # noqa: E402
from semrec.models.user.instruct import age_band, category_paths, dataset_tasks  # noqa: E402
from semrec.users import expand_segment  # noqa: E402

BENCH = "users"
ATTRS = {"gender": "gender", "age": "age", "occupation": "occupation"}
PROBE_CS = [0.01, 0.1, 1.0]  # probe regularisation, chosen by inner 3-fold CV on training users


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def movielens():
    from semrec.data.readers import read_recbole

    ds = read_recbole(SHARED_DATA / "movielens-100k")
    return ds, leave_one_out(ds)


def labels_of(ds, attr: str) -> np.ndarray:
    col = age_band(ds.users["age"]) if attr == "age" else ds.users[attr]
    # the reader gives MovieLens' occupation "none" (9 users) as null: it is a class of its own here
    _, inv = np.unique(np.asarray(col.cast(str).fill_null("none").to_list()), return_inverse=True)
    return inv.astype(np.int64)


def bag_of_items(hist: Sequences, n_items: int) -> Any:
    from scipy.sparse import csr_matrix
    from sklearn.feature_extraction.text import TfidfTransformer

    counts = csr_matrix((np.ones(len(hist.items)), hist.items, hist.offsets), shape=(len(hist), n_items))
    return TfidfTransformer().fit_transform(counts)


def probe_scores(x: Any, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], fold_x: list | None = None
                 ) -> dict[str, float]:
    """Mean macro-F1 and (one-vs-rest macro) AUC of a logistic-regression probe over the CV folds.
    `fold_x[f]` replaces `x` for fold f (vectors from a model trained on that fold). C is chosen once, by inner
    3-fold CV (log-loss) on the first fold's training users only (one choice per representation keeps it cheap)."""
    from scipy.sparse import issparse
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score, roc_auc_score
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def probe(xf: Any, c: float) -> Any:
        lr = LogisticRegression(C=c, max_iter=3000)
        return lr if issparse(xf) else make_pipeline(StandardScaler(), lr)

    x0, tr0 = (fold_x[0] if fold_x is not None else x), folds[0][0]
    c = max(PROBE_CS, key=lambda c: cross_val_score(probe(x0, c), x0[tr0], y[tr0], cv=3, scoring="neg_log_loss").mean())
    f1s, aucs = [], []
    for f, (tr, te) in enumerate(folds):
        xf = fold_x[f] if fold_x is not None else x
        clf = probe(xf, c).fit(xf[tr], y[tr])
        classes = clf.classes_
        proba = clf.predict_proba(xf[te])
        f1s.append(f1_score(y[te], classes[proba.argmax(1)], average="macro"))
        if len(classes) == 2:
            aucs.append(roc_auc_score(y[te], proba[:, 1]))
        else:  # classes absent from the test fold (or the training fold) have no AUC: skip them
            present = np.isin(classes, np.unique(y[te]))
            keep = np.isin(y[te], classes[present])
            p = proba[keep][:, present]
            aucs.append(roc_auc_score(y[te][keep], p / p.sum(1, keepdims=True), multi_class="ovr",
                                      average="macro", labels=classes[present]))
    return {"macro_f1": float(np.mean(f1s)), "auc": float(np.mean(aucs)), "C": c,
            "macro_f1_folds": [round(v, 4) for v in f1s]}


def train_model(name: str, split: Any, budget: float, **opts: Any) -> Any:
    model = get_model_class(name)(split.n_items, max_train_seconds=budget, progress=False, **opts)
    return model.fit(split.train, split.valid)


def ml_vectors(args: argparse.Namespace, ds: Any, split: Any, folds: list) -> dict[str, Any]:
    """SASRec, user-text and per-fold instruction-aware vectors of every ML-100K user (histories before the test
    item), cached in `--cache` so the probe and the look-alike task use the very same models."""
    cache = args.cache / f"ml-100k-vectors-b{int(args.budget)}-ib{int(args.instruct_budget)}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    hist = split.test.histories
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ds.save(Path(tmp) / "ml")
        t0 = time.perf_counter()
        out["sasrec"] = train_model("sasrec", split, args.budget, loss="ce", dropout=0.3).embed_users(hist)
        out["user-text"] = train_model("user-text", split, args.budget, dataset=str(Path(tmp) / "ml")).embed_users(hist)
        for f, (tr, _) in enumerate(folds):  # one instruction-aware model per fold, shared by the attributes
            model = get_model_class("user-text")(split.n_items, dataset=str(Path(tmp) / "ml"),
                                                 max_train_seconds=args.instruct_budget, progress=False,
                                                 batch_size=64, tasks_per_batch=4, tasks=dataset_tasks(ds, users=tr))
            model.fit(split.train, split.valid)
            out[f"instruct-unconditioned-{f}"] = model.embed_users(hist)
            for task in model.tasks:
                if task.name in ATTRS:
                    out[f"instruct-{task.name}-{f}"] = model.embed_users(hist, task.instruction)
            print(f"fold {f} trained", flush=True)
        out["train_s"] = np.array(time.perf_counter() - t0)
    args.cache.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def run_probe(args: argparse.Namespace) -> None:
    from sklearn.metrics import f1_score
    from sklearn.model_selection import KFold

    ds, split = movielens()
    hist = split.test.histories  # everything before each user's test item; row = user (all 943 users)
    assert np.array_equal(split.test.users, np.arange(ds.n_users))
    folds = list(KFold(5, shuffle=True, random_state=0).split(np.zeros(ds.n_users)))  # same folds for every attribute
    vec = ml_vectors(args, ds, split, folds)
    base_s = float(vec["train_s"])
    for attr in ATTRS:
        y = labels_of(ds, attr)
        maj_f1 = float(np.mean([f1_score(y[te], np.full(len(te), np.bincount(y[tr]).argmax()), average="macro")
                                for tr, te in folds]))
        rows = {"majority": {"macro_f1": maj_f1, "auc": 0.5},
                "bag-of-items": probe_scores(bag_of_items(hist, ds.n_items), y, folds),
                "sasrec": probe_scores(vec["sasrec"], y, folds),
                "user-text": probe_scores(vec["user-text"], y, folds)}
        rows["user-text-instruct/unconditioned"] = probe_scores(
            None, y, folds, [vec[f"instruct-unconditioned-{f}"] for f in range(len(folds))])
        rows["user-text-instruct/instruction"] = probe_scores(
            None, y, folds, [vec[f"instruct-{attr}-{f}"] for f in range(len(folds))])
        for variant, m in rows.items():
            extra = {"task": f"probe-{attr}", "loadavg": loadavg(), **{k: v for k, v in m.items()
                                                                       if k.endswith("folds") or k == "C"}}
            if variant not in ("majority", "bag-of-items"):
                extra |= {"beats_majority": bool(m["macro_f1"] > maj_f1 and m["auc"] > 0.5),
                          "beats_bag_of_items": bool(m["macro_f1"] > rows["bag-of-items"]["macro_f1"]
                                                     and m["auc"] > rows["bag-of-items"]["auc"]),
                          "majority_macro_f1": round(maj_f1, 4),
                          "bag_of_items_macro_f1": round(rows["bag-of-items"]["macro_f1"], 4),
                          "bag_of_items_auc": round(rows["bag-of-items"]["auc"], 4)}
            if variant == "user-text-instruct/instruction":
                un = rows["user-text-instruct/unconditioned"]
                extra["beats_unconditioned"] = bool(m["macro_f1"] > un["macro_f1"] and m["auc"] > un["auc"])
            record(BENCH, dataset="ml-100k", model=variant.split("/")[0], variant=variant.split("/")[-1],
                   split="cv5", metrics={"macro_f1": round(m["macro_f1"], 4), "auc": round(m["auc"], 4)},
                   timing={"train_all_models_s": round(base_s, 1)},
                   settings={"probe": "logistic regression, standardised, C in PROBE_CS chosen by inner 3-fold CV "
                                      "(log-loss) on fold 0's training users; 5-fold user CV (KFold, shuffled, seed 0)",
                             "probe_cs": PROBE_CS,
                             "history": "all items before each user's test item", "budget_s": args.budget,
                             "instruct_budget_s": args.instruct_budget,
                             "instruct_model": "user-text, batch 64, all 4 tasks per batch (top-genre, gender, "
                                               "age, occupation; attributes of the training fold only)",
                             "labels": "age in ML-1M bands" if attr == "age" else attr},
                   extra=extra, name=f"probe-{attr}_ml-100k_{variant.replace('/', '-')}")
            print(attr, variant, {k: round(v, 4) for k, v in m.items() if isinstance(v, float)}, flush=True)


def run_lookalike(args: argparse.Namespace) -> None:
    from sklearn.model_selection import KFold

    ds, split = movielens()
    hist = split.test.histories
    folds = list(KFold(5, shuffle=True, random_state=0).split(np.zeros(ds.n_users)))
    cached = ml_vectors(args, ds, split, folds)  # the probe's models (no attribute supervision in these two)
    vecs = {"sasrec": cached["sasrec"], "user-text": cached["user-text"]}
    vecs["bag-of-items"] = bag_of_items(hist, ds.n_items).toarray().astype(np.float32)
    occ = np.asarray(ds.users["occupation"].fill_null("none").to_list())
    names, counts = np.unique(occ, return_counts=True)
    rng = np.random.default_rng(0)
    draws = {n: [rng.choice(np.flatnonzero(occ == n), 20, replace=False) for _ in range(10)]
             for n, c in zip(names, counts) if c >= 40}
    for model, v in vecs.items():
        per = {}
        for n, seeds_list in draws.items():
            prec = [float((occ[expand_segment(v, s, 50)[0]] == n).mean()) for s in seeds_list]
            per[n] = {"precision@50": round(float(np.mean(prec)), 4),
                      "random_precision@50": round(float(((occ == n).sum() - 20) / (len(occ) - 20)), 4)}
        p = np.mean([x["precision@50"] for x in per.values()])
        r = np.mean([x["random_precision@50"] for x in per.values()])
        record(BENCH, dataset="ml-100k", model=model, variant="centroid", split=None,
               metrics={"precision@50": round(float(p), 4)},
               settings={"seed_size": 20, "k": 50, "draws_per_occupation": 10, "min_occupation_users": 40,
                         "expansion": "cosine to the seed centroid", "budget_s": args.budget},
               extra={"task": "lookalike", "precision@50": round(float(p), 4),
                      "random_precision@50": round(float(r), 4),
                      "lift": round(float(p / r), 2), "per_occupation": per, "loadavg": loadavg()},
               name=f"lookalike_ml-100k_{model}")
        print(model, round(float(p), 4), "random", round(float(r), 4), flush=True)


def run_query(args: argparse.Namespace) -> None:
    from reproduce import DATASETS

    from semrec.data.readers import read_lcrec, read_s3rec

    folder, fname = DATASETS[args.dataset]
    path = SHARED_DATA / folder / fname
    if args.dataset == "scientific":
        ds = read_lcrec(path)
    else:
        ds = read_s3rec(path, name=args.dataset, item_text=SHARED_DATA / folder / "text" / f"{fname[:-4]}.item.json")
    split = leave_one_out(ds)
    paths = np.asarray(category_paths(ds.items).to_list(), dtype=object)
    with tempfile.TemporaryDirectory() as tmp:
        ds.save(Path(tmp) / "ds")
        t0 = time.perf_counter()
        saved = args.cache / f"{args.dataset}-user-text-b{int(args.budget)}"
        if (saved / "model.safetensors").exists():
            from semrec.models import Recommender

            model = Recommender.load(saved)
        else:
            model = train_model("user-text", split, args.budget, dataset=str(Path(tmp) / "ds"), eval_every=2)
            model.save(saved)
        fit_s = time.perf_counter() - t0

    def scorer(es: Any, rows: np.ndarray) -> Any:
        """Per-user (hit@10, ndcg@10) for any weight: user and query vectors are computed once, then blended
        exactly as `UserText.recommend(query=...)` does (checked against it on 200 users below)."""
        sub = es.subset(rows)
        u = torch.from_numpy(model.embed_users(sub.histories))
        q = torch.nn.functional.normalize(torch.from_numpy(model.encode_text(list(paths[sub.targets.items]))), dim=1)
        table = torch.from_numpy(model.item_embeddings())
        target = torch.from_numpy(sub.targets.items)

        def at(w: float) -> tuple[np.ndarray, np.ndarray]:
            hit, ndcg = np.zeros(len(rows)), np.zeros(len(rows))
            for s in range(0, len(rows), 2048):
                v = torch.nn.functional.normalize((1 - w) * u[s:s + 2048] + w * q[s:s + 2048], dim=1)
                top = torch.topk(v @ table.T, 10, dim=1).indices
                found = top == target[s:s + 2048, None]
                rank = found.float().argmax(1).numpy()
                ok = found.any(1).numpy()
                hit[s:s + 2048] = ok
                ndcg[s:s + 2048] = np.where(ok, 1 / np.log2(np.maximum(rank, 0) + 2), 0.0)
            return hit, ndcg
        return at, sub

    rng = np.random.default_rng(0)
    valid_rows = np.sort(rng.choice(len(split.valid), min(len(split.valid), args.valid_users), replace=False))
    at_valid, _ = scorer(split.valid, valid_rows)
    grid = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0]
    valid = {w: at_valid(w)[1].mean() for w in grid}
    best = max((w for w in grid if 0 < w < 1), key=lambda w: valid[w])
    at_test, test_sub = scorer(split.test, np.arange(len(split.test)))
    check = np.arange(min(200, len(split.test)))
    via_model, _ = model.recommend(test_sub.histories.select(check), k=10,
                                   query=list(paths[test_sub.targets.items[check]]), query_weight=best)
    test = {name: at_test(w) for name, w in (("history", 0.0), ("query", 1.0), ("history+query", best))}
    hit_model = (via_model == test_sub.targets.items[check, None]).any(1)
    assert np.array_equal(hit_model, test["history+query"][0][check].astype(bool)), "blend differs from recommend()"
    for name, (rec, ndcg) in test.items():
        weight = {"history": 0.0, "query": 1.0}.get(name, best)
        extra: dict[str, Any] = {"task": "query", "query_weight": weight,
                                 "valid_ndcg@10_by_weight": {str(k): round(float(v), 4) for k, v in valid.items()},
                                 "query_source": "the held-out (target) item's category path: measures steering "
                                                 "toward a stated intent, not unaided prediction",
                                 "loadavg": loadavg()}
        if name == "history+query":
            for other, key in (("history", "p_value_vs_history"), ("query", "p_value_vs_query_only")):
                extra[key] = {"recall@10": paired_tests(test[other][0], rec)["p_ttest"],
                              "ndcg@10": paired_tests(test[other][1], ndcg)["p_ttest"]}
            extra["beats_both"] = bool(all(rec.mean() > test[o][0].mean() and ndcg.mean() > test[o][1].mean()
                                           for o in ("history", "query"))
                                       and max(max(extra[k].values()) for k in ("p_value_vs_history",
                                                                                 "p_value_vs_query_only")) < 0.05)
        record(BENCH, dataset=args.dataset, model="user-text", variant=name, split="test",
               metrics={"recall@10": round(float(rec.mean()), 4), "ndcg@10": round(float(ndcg.mean()), 4)},
               timing={"fit_s": round(fit_s, 1)},
               settings={"budget_s": args.budget, "exclude_history": False, "full_ranking": True,
                         "weight_grid": grid, "valid_users_for_weight": int(len(valid_rows)),
                         "weight_chosen_on": "validation ndcg@10 (query = validation target's path)"},
               extra=extra, name=f"query_{args.dataset}_user-text_{name.replace('+', '-')}")
        print(args.dataset, name, round(float(rec.mean()), 4), round(float(ndcg.mean()), 4), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=("probe", "lookalike", "query"), required=True)
    p.add_argument("--dataset", choices=("beauty", "scientific"), default="beauty")
    p.add_argument("--budget", type=float, default=120.0, help="training seconds per model")
    p.add_argument("--valid-users", type=int, default=4000, help="query: validation users used to pick the weight")
    p.add_argument("--instruct-budget", type=float, default=240.0, help="probe: seconds per instruction-aware model")
    p.add_argument("--cache", type=Path, default=Path("/tmp/semrec-users-bench"), help="cached ML-100K vectors")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    {"probe": run_probe, "lookalike": run_lookalike, "query": run_query}[args.task](args)
    write_results_md()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
