"""User-vector task benchmarks (issue 9), written to benchmarks/results/users/:

- `probe` (MovieLens-100K, users' gender / age band / occupation): a logistic-regression probe (standardised
  inputs, C chosen per fold by inner 3-fold CV on that fold's training users, user-level 5-fold CV) on frozen
  user vectors, against the majority class and a bag-of-items baseline (TF-IDF of the history + the same
  logistic regression, C tuned the same way), same 5 folds for every attribute. Vectors: SASRec (ce) and
  user-text (no instructions), each as its own last state (`last`) and pooled over the whole history
  (`mean` / `idf-mean` of SASRec's item vectors, of the frozen text vectors for user-text; semrec.users.pooling),
  the concatenation of the two idf-mean vectors, and the instruction-aware user-text given the matching
  instruction, trained per fold with only the training fold's attributes (held-out users' attributes never
  reach training), beside that same model's unconditioned vectors.
- `lookalike` (MovieLens-100K): seed segments of 20 users sharing an occupation (10 random draws per occupation
  with >= 40 users), expanded to 50 users by centroid cosine similarity; precision@50 = share of the expanded
  users with that occupation, against random (the occupation's share among the non-seed users).
- `query` (Beauty, Scientific; user-text): the held-out item's category path is the query. History only (w = 0),
  query only (w = 1) and history + query (w chosen on validation) on test, R@10 / N@10 with paired t-tests.
  The query is derived from the target's category, so this measures steering, not unaided prediction.

    python benchmarks/users_tasks.py --task probe --epochs 200 --text-epochs 12 --instruct-epochs 8 --max-len 100 \
        --threads 1 --instruct-folds-cached-only
    python benchmarks/users_tasks.py --task query --dataset beauty --threads 1 --budget 600
"""

from __future__ import annotations

import argparse
import json
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

from common import SHARED_DATA, record, selection_of, write_results_md  # noqa: E402

from semrec.data import Sequences, leave_one_out  # noqa: E402
from semrec.evaluation.significance import paired_tests  # noqa: E402
from semrec.models import get_model_class  # noqa: E402
from semrec.models.user.instruct import age_band, category_paths, dataset_tasks  # noqa: E402
from semrec.users import expand_segment, user_vectors  # noqa: E402

BENCH = "users"
RESULTS = Path(__file__).resolve().parent / "results" / BENCH
ATTRS = {"gender": "gender", "age": "age", "occupation": "occupation"}
PROBE_CS = [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]  # probe regularisation, chosen by inner 3-fold CV on training users
POOLED = ("mean", "idf-mean")  # pooled user vectors (semrec.users.pooling) beside each model's last state
PROBE_SETTING = ("logistic regression (standardised dense inputs; TF-IDF rows as they are), C in PROBE_CS chosen "
                 "for each outer fold by inner 3-fold CV (log-loss) on that fold's training users only; 5-fold "
                 "user CV (KFold, shuffled, seed 0)")


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
    `fold_x[f]` replaces `x` for fold f (vectors from a model trained on that fold). C is chosen for every fold by
    inner 3-fold CV (log-loss) on that fold's training users only, the same way for every representation."""
    from scipy.sparse import issparse
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score, roc_auc_score
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def probe(xf: Any, c: float) -> Any:
        lr = LogisticRegression(C=c, max_iter=3000)
        return lr if issparse(xf) else make_pipeline(StandardScaler(), lr)

    f1s, aucs, cs = [], [], []
    for f, (tr, te) in enumerate(folds):
        xf = fold_x[f] if fold_x is not None else x
        c = max(PROBE_CS, key=lambda c: cross_val_score(probe(xf, c), xf[tr], y[tr], cv=3,
                                                        scoring="neg_log_loss").mean())
        cs.append(c)
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
    return {"macro_f1": float(np.mean(f1s)), "auc": float(np.mean(aucs)), "C_folds": cs,
            "macro_f1_folds": [round(v, 4) for v in f1s], "auc_folds": [round(v, 4) for v in aucs]}


def train_model(name: str, split: Any, budget: float | None, **opts: Any) -> Any:
    """`budget` seconds of training (None: the epochs in `opts` / the model's default, early stopping on
    validation NDCG@10 either way)."""
    model = get_model_class(name)(split.n_items, max_train_seconds=budget, progress=False, **opts)
    return model.fit(split.train, split.valid)


def ml_training(args: argparse.Namespace, instruct: bool, part: str = "sasrec"
                ) -> tuple[float | None, dict[str, Any], str]:
    """(time budget, epoch options, cache tag) of an ML-100K model: `--epochs` (sasrec), `--text-epochs`
    (user-text), `--instruct-epochs` (> 0) train for at most that many epochs with early stopping, so the result
    does not depend on the machine's load; 0 falls back to `--budget` / `--instruct-budget` seconds."""
    epochs = args.instruct_epochs if instruct else (args.text_epochs if part == "user-text" else args.epochs)
    if epochs > 0:
        return None, {"epochs": epochs}, f"e{epochs}"
    budget = args.instruct_budget if instruct else args.budget
    return budget, {}, f"b{int(budget)}"


def model_dir(args: argparse.Namespace, part: str) -> Path:
    """Where the trained ML-100K model of `part` (sasrec, user-text) is kept beside its cached vectors."""
    return args.cache / f"ml-100k-{part}-{ml_training(args, False, part)[2]}-L{args.max_len}-model"


def _part(args: argparse.Namespace, ds: Any, split: Any, folds: list, part: str, data_dir: Path) -> dict[str, Any]:
    """Train one model of the ML-100K vector set and return its vectors (+ what chose it)."""
    hist = split.test.histories
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    if part in ("sasrec", "user-text"):
        opts = {"loss": "ce", "dropout": 0.3} if part == "sasrec" else {"dataset": str(data_dir)}
        budget, epochs, _ = ml_training(args, False, part)
        model = train_model(part, split, budget, max_len=args.max_len, **opts, **epochs)
        model.save(model_dir(args, part))  # kept, so pooled vectors can be read from the very same model
        out[part] = model.embed_users(hist)
    else:  # instruct-F: the instruction-aware model of CV fold F (attributes of the training users only)
        f = int(part.rsplit("-", 1)[1])
        budget, epochs, _ = ml_training(args, instruct=True)
        model = get_model_class("user-text")(split.n_items, dataset=str(data_dir), max_len=args.max_len,
                                             max_train_seconds=budget, progress=False, batch_size=64,
                                             tasks_per_batch=4, tasks=dataset_tasks(ds, users=folds[f][0]),
                                             **epochs)
        model.fit(split.train, split.valid)
        out["unconditioned"] = model.embed_users(hist)
        for task in model.tasks:
            if task.name in ATTRS:
                out[task.name] = model.embed_users(hist, task.instruction)
                out[f"answer-{task.name}"] = model.answer(hist, task.name)  # the model's own read-out
                out[f"answers-{task.name}"] = np.asarray(task.answers)
    sel = selection_of(getattr(model, "history", None), "ndcg@10")
    out["meta"] = np.asarray(json.dumps({"train_s": round(time.perf_counter() - t0, 1), "selection": sel}))
    return out


def ml_vectors(args: argparse.Namespace, ds: Any, split: Any, folds: list, parts: list[str] | None = None
               ) -> dict[str, Any]:
    """SASRec, user-text and per-fold instruction-aware vectors of every ML-100K user (histories before the test
    item). Each model is cached in `--cache` on its own, so training can be split over several runs and the probe
    and the look-alike task use the very same models; pooled vectors are read from the kept sasrec / user-text
    model with `user_vectors(model, hist, pool=...)` (user-text: its text vectors), idf popularity over the same
    histories. Keys: `sasrec`, `user-text`, `<model>-mean`, `<model>-idf-mean`,
    `instruct-unconditioned-F`, `instruct-<attr>-F`, `instruct-answer-<attr>-F`; `meta-<part>` (JSON)."""
    parts = parts or ["sasrec", "user-text"] + [f"instruct-{f}" for f in range(len(folds))]
    out: dict[str, Any] = {}
    if args.instruct_folds_cached_only:  # train none of the per-fold instruction-aware models; use those cached
        parts = [p for p in parts if not p.startswith("instruct") or (args.cache / (
            f"ml-100k-{p}-{ml_training(args, True, p)[2]}-L{args.max_len}.npz")).exists()]
    with tempfile.TemporaryDirectory() as tmp:
        ds.save(Path(tmp) / "ml")
        for part in parts:
            tag = ml_training(args, part.startswith("instruct"), part)[2]
            cache = args.cache / f"ml-100k-{part}-{tag}-L{args.max_len}.npz"
            kept = part.startswith("instruct") or (model_dir(args, part) / "model.safetensors").exists()
            if not (cache.exists() and kept):  # sasrec / user-text: the model itself is needed for pooled vectors
                vecs = _part(args, ds, split, folds, part, Path(tmp) / "ml")
                args.cache.mkdir(parents=True, exist_ok=True)
                np.savez(cache, **vecs)
                print(f"{part} trained: {json.loads(str(vecs['meta']))}", flush=True)
            with np.load(cache) as z:
                for k in z.files:
                    if part.startswith("instruct"):
                        key = k if k == "meta" else f"instruct-{k}"
                        out[f"{key}-{part.rsplit('-', 1)[1]}" if k != "meta" else f"meta-{part}"] = z[k]
                    elif not k.endswith("-item-mean"):  # older caches' diagnostic = `mean` below
                        out[f"meta-{part}" if k == "meta" else k] = z[k]
            if not part.startswith("instruct"):
                from semrec.models import Recommender

                model = Recommender.load(model_dir(args, part))
                source = "text" if part == "user-text" else "model"
                for pool in POOLED:
                    out[f"{part}-{pool}"] = user_vectors(model, split.test.histories, pool=pool, source=source)
    return out


def user_vector_sets(vec: dict[str, Any]) -> dict[str, np.ndarray]:
    """Every exported user-vector representation, by `model/variant`: each model's last state, its pooled vectors
    (user-text: of the frozen text vectors) and the concatenation of the two idf-mean vectors (each row unit
    length first, so neither block dominates cosine similarity; fixed before any result was seen)."""
    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    out = {"sasrec": vec["sasrec"], "user-text": vec["user-text"]}
    for pool in POOLED:
        out[f"sasrec/{pool}"] = vec[f"sasrec-{pool}"]
        out[f"user-text/text-{pool}"] = vec[f"user-text-{pool}"]
    out["sasrec+user-text/idf-mean"] = np.hstack([unit(vec["sasrec-idf-mean"]), unit(vec["user-text-idf-mean"])])
    return out


def pooled_note(variant: str) -> dict[str, Any]:
    """What a pooled row is, for its `extra` (empty for a model's own last state)."""
    if "/" not in variant or variant.startswith("user-text-instruct"):
        return {}
    pool = variant.split("/")[1].removeprefix("text-")
    source = "model item vectors" if variant.startswith("sasrec/") else (
        "frozen text vectors (no training involved)" if variant.startswith("user-text/") else
        "sasrec idf-mean (model item vectors) and user-text idf-mean (text vectors), each unit length, concatenated")
    return {"pool": pool, "pool_source": source,
            "note": "exported pooled user vector (semrec.users.user_vectors(pool=...)): the (idf-weighted) mean over "
                    "the whole history; idf = log(n_users / users with the item) over the same 943 histories; for "
                    "probing/segments/look-alikes, not retrieval"}


def ml_settings(args: argparse.Namespace) -> dict[str, Any]:
    """How the ML-100K models were trained, for the results files."""
    out: dict[str, Any] = {"max_len": args.max_len}
    for key, inst in (("sasrec", False), ("user-text", False), ("instruct", True)):
        budget, epochs, _ = ml_training(args, inst, key)
        out[f"{key}_training"] = ({"max_epochs": epochs["epochs"], "early_stopping": "validation ndcg@10, patience 5"}
                                  if epochs else {"budget_s": budget})
    return out


def meta_of(vec: dict[str, Any], part: str) -> dict[str, Any]:
    return json.loads(str(vec[f"meta-{part}"]))


def readout_scores(ds: Any, attr: str, vec: dict[str, Any], folds: list, have: list[int]
                   ) -> dict[str, Any] | None:
    """Macro-F1 / AUC of the instruction-aware model's own answer (probabilities over the task's answer sentences)
    on each fold's held-out users: whether the instruction task was learned at all, before any probe."""
    from sklearn.metrics import f1_score, roc_auc_score

    have = [f for f in have if f"instruct-answer-{attr}-{f}" in vec]
    if not have:
        return None
    col = age_band(ds.users["age"]) if attr == "age" else ds.users[attr]
    names = np.asarray(col.cast(str).fill_null("none").to_list())
    task_names = np.asarray(sorted(n for n in set(names.tolist()) if n != "none"))  # dataset_tasks' answer order
    f1s, aucs = [], []
    for f in have:
        te = folds[f][1]
        proba = vec[f"instruct-answer-{attr}-{f}"][te]
        known = np.isin(names[te], task_names)
        y = np.searchsorted(task_names, names[te][known])
        p = proba[known]
        f1s.append(f1_score(y, p.argmax(1), average="macro"))
        present = np.unique(y)
        if len(task_names) == 2:
            aucs.append(roc_auc_score(y, p[:, 1]))
        else:
            q = p[:, present] / p[:, present].sum(1, keepdims=True)
            aucs.append(roc_auc_score(y, q, multi_class="ovr", average="macro", labels=present))
    return {"macro_f1": round(float(np.mean(f1s)), 4), "auc": round(float(np.mean(aucs)), 4), "folds": have}


def run_vectors(args: argparse.Namespace) -> None:
    """Train and cache some of the ML-100K models (`--parts`), nothing else."""
    from sklearn.model_selection import KFold

    ds, split = movielens()
    folds = list(KFold(5, shuffle=True, random_state=0).split(np.zeros(ds.n_users)))
    ml_vectors(args, ds, split, folds, args.parts)


def run_probe(args: argparse.Namespace) -> None:
    from sklearn.metrics import f1_score
    from sklearn.model_selection import KFold

    ds, split = movielens()
    hist = split.test.histories  # everything before each user's test item; row = user (all 943 users)
    assert np.array_equal(split.test.users, np.arange(ds.n_users))
    folds = list(KFold(5, shuffle=True, random_state=0).split(np.zeros(ds.n_users)))  # same folds for every attribute
    vec = ml_vectors(args, ds, split, folds)
    metas = {k[5:]: json.loads(str(v)) for k, v in vec.items() if k.startswith("meta-")}
    base_s = sum(m["train_s"] for m in metas.values())
    for attr in ATTRS:
        y = labels_of(ds, attr)
        maj_f1 = float(np.mean([f1_score(y[te], np.full(len(te), np.bincount(y[tr]).argmax()), average="macro")
                                for tr, te in folds]))
        rows = {"majority": {"macro_f1": maj_f1, "auc": 0.5},
                "bag-of-items": probe_scores(bag_of_items(hist, ds.n_items), y, folds),
                **{name: probe_scores(x, y, folds) for name, x in user_vector_sets(vec).items()}}
        have = [f for f in range(len(folds)) if f"instruct-unconditioned-{f}" in vec]
        if len(have) == len(folds):  # the probe needs the instruction-aware model of every fold
            rows["user-text-instruct/unconditioned"] = probe_scores(
                None, y, folds, [vec[f"instruct-unconditioned-{f}"] for f in range(len(folds))])
            rows["user-text-instruct/instruction"] = probe_scores(
                None, y, folds, [vec[f"instruct-{attr}-{f}"] for f in range(len(folds))])
        readout = readout_scores(ds, attr, vec, folds, have)
        if readout is not None:  # the instruction-aware model's own answer, no probe
            rows["user-text-instruct/answer-readout"] = readout
        for variant, m in rows.items():
            extra = {"task": f"probe-{attr}", "loadavg": loadavg(), **pooled_note(variant),
                     **{k: v for k, v in m.items() if k.endswith("folds")}}
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
                extra["unconditioned_macro_f1"], extra["unconditioned_auc"] = round(un["macro_f1"], 4), round(
                    un["auc"], 4)
                extra["answer_readout"] = readout
            if variant.endswith("/answer-readout"):
                extra["note"] = ("the instruction-aware model's own answer (softmax over the task's answer sentences "
                                 "given the instruction), no probe, on the held-out users of the folds listed; "
                                 "occupation: users with no occupation left out")
            part = variant.split("/")[0]
            selection = ({f: metas.get(f"instruct-{f}", {}).get("selection") for f in range(len(folds))}
                         if part == "user-text-instruct" else
                         {p: metas.get(p, {}).get("selection") for p in part.split("+")} if "+" in part else
                         (metas.get(part, {}).get("selection") or None))
            record(BENCH, dataset="ml-100k", model=part, variant=variant.split("/")[-1],
                   split="cv5", metrics={"macro_f1": round(m["macro_f1"], 4), "auc": round(m["auc"], 4)},
                   timing={"train_all_models_s": round(base_s, 1)}, selection=selection,
                   settings={"probe": PROBE_SETTING, "probe_cs": PROBE_CS,
                             "history": "all items before each user's test item", **ml_settings(args),
                             "instruct_model": "user-text, batch 64, all 4 tasks per batch (top-genre, gender, "
                                               "age, occupation; attributes of the training fold only)",
                             "labels": "age in ML-1M bands" if attr == "age" else attr},
                   extra=extra, name=f"probe-{attr}_ml-100k_{variant.replace('/', '-')}")
            print(attr, variant, {k: round(v, 4) for k, v in m.items() if isinstance(v, float)}, flush=True)


def run_lookalike(args: argparse.Namespace) -> None:
    from scipy.stats import ttest_1samp
    from sklearn.model_selection import KFold

    ds, split = movielens()
    hist = split.test.histories
    folds = list(KFold(5, shuffle=True, random_state=0).split(np.zeros(ds.n_users)))
    cached = ml_vectors(args, ds, split, folds, ["sasrec", "user-text"])  # the probe's (no attribute supervision)
    vecs = user_vector_sets(cached)
    vecs["bag-of-items"] = bag_of_items(hist, ds.n_items).toarray().astype(np.float32)
    occ = np.asarray(ds.users["occupation"].fill_null("none").to_list())
    names, counts = np.unique(occ, return_counts=True)
    rng = np.random.default_rng(0)
    draws = {n: [rng.choice(np.flatnonzero(occ == n), 20, replace=False) for _ in range(10)]
             for n, c in zip(names, counts) if c >= 40}
    for model, v in vecs.items():
        per, diffs = {}, []
        for n, seeds_list in draws.items():
            prec = [float((occ[expand_segment(v, s, 50)[0]] == n).mean()) for s in seeds_list]
            rand = float(((occ == n).sum() - 20) / (len(occ) - 20))
            diffs += [x - rand for x in prec]
            per[n] = {"precision@50": round(float(np.mean(prec)), 4), "random_precision@50": round(rand, 4),
                      "lift": round(float(np.mean(prec)) / rand, 2)}
        p = np.mean([x["precision@50"] for x in per.values()])
        r = np.mean([x["random_precision@50"] for x in per.values()])
        test = ttest_1samp(diffs, 0.0, alternative="greater")
        part = model.split("/")[0] if model != "bag-of-items" else None
        record(BENCH, dataset="ml-100k", model=model.split("/")[0],
               variant="centroid" + (f"/{model.split('/')[1]}" if "/" in model else ""), split=None,
               metrics={"precision@50": round(float(p), 4)},
               selection=(None if part is None else {q: meta_of(cached, q).get("selection") for q in part.split("+")}
                          if "+" in part else meta_of(cached, part).get("selection") or None),
               settings={"seed_size": 20, "k": 50, "draws_per_occupation": 10, "min_occupation_users": 40,
                         "expansion": "cosine to the seed centroid", **ml_settings(args),
                         "history": "all items before each user's test item"},
               extra={"task": "lookalike", "precision@50": round(float(p), 4),
                      "random_precision@50": round(float(r), 4), "lift": round(float(p / r), 2),
                      "p_value_vs_random": float(test.pvalue),
                      "p_value_note": "one-sided one-sample t-test over all draws of (precision@50 - the "
                                      "occupation's random precision@50)",
                      "occupations_above_random": int(sum(x["precision@50"] > x["random_precision@50"]
                                                          for x in per.values())),
                      "occupations": len(per), "per_occupation": per, "loadavg": loadavg(), **pooled_note(model)},
               name=f"lookalike_ml-100k_{model.replace('/', '-')}")
        print(model, round(float(p), 4), "random", round(float(r), 4), "p", test.pvalue, flush=True)


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
        if (saved / "model.safetensors").exists():  # reloaded: training seconds from the row that trained it
            from semrec.models import Recommender

            model = Recommender.load(saved)
            earlier = RESULTS / f"query_{args.dataset}_user-text_history.json"
            fit_s = json.loads(earlier.read_text())["timing"]["fit_s"] if earlier.exists() else 0.0
            model_selection = {"note": "model reloaded from the cache; its validation NDCG@10 (history only) is "
                                       "valid_ndcg@10_by_weight['0.0'] on the validation users"}
        else:
            model = train_model("user-text", split, args.budget, dataset=str(Path(tmp) / "ds"), eval_every=2)
            model.save(saved)
            fit_s = time.perf_counter() - t0
            model_selection = selection_of(getattr(model, "history", None), "ndcg@10")

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
               extra=extra, name=f"query_{args.dataset}_user-text_{name.replace('+', '-')}",
               selection={"model": model_selection, "metric": "ndcg@10 on validation users (query = the validation "
                          "target's category path)", "chosen": {"query_weight": best},
                          "valid_score": round(float(valid[best]), 4), "valid_users": int(len(valid_rows)),
                          "grid": grid, "rule": "best weight strictly between 0 and 1"})
        print(args.dataset, name, round(float(rec.mean()), 4), round(float(ndcg.mean()), 4), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=("probe", "lookalike", "query", "vectors"), required=True)
    p.add_argument("--parts", nargs="+", default=None, help="vectors: which ML-100K models to train and cache "
                   "(sasrec, user-text, instruct-0 .. instruct-4), so the training can be split over several runs")
    p.add_argument("--epochs", type=int, default=0, help="ML-100K sasrec/user-text: train this many epochs at most "
                   "(early stopping) instead of --budget seconds")
    p.add_argument("--text-epochs", type=int, default=0, help="ML-100K user-text: epochs instead of --budget")
    p.add_argument("--instruct-epochs", type=int, default=0, help="ML-100K instruction-aware models: epochs "
                   "instead of --instruct-budget seconds")
    p.add_argument("--instruct-folds-cached-only", action="store_true", help="probe: train no instruction-aware "
                   "model; use the folds already cached (the probe rows need all 5, the read-out any)")
    p.add_argument("--max-len", type=int, default=200, help="ML-100K: history length the models read (SASRec's "
                   "MovieLens setting; median ML-100K history is 63 items, mean 104)")
    p.add_argument("--dataset", choices=("beauty", "scientific"), default="beauty")
    p.add_argument("--budget", type=float, default=120.0, help="training seconds per model")
    p.add_argument("--valid-users", type=int, default=4000, help="query: validation users used to pick the weight")
    p.add_argument("--instruct-budget", type=float, default=240.0, help="probe: seconds per instruction-aware model")
    p.add_argument("--cache", type=Path, default=Path("/tmp/semrec-users-bench"), help="cached ML-100K vectors")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    {"probe": run_probe, "lookalike": run_lookalike, "query": run_query, "vectors": run_vectors}[args.task](args)
    write_results_md()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
