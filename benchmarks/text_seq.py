"""text-seq benchmark: the text-based sequential recommender against the published UniSRec/VQ-Rec rows and our
ID baselines on the same split, with paired tests.

Datasets: `scientific-unisrec` (the exact UniSRec/VQ-Rec Scientific files; their given split = our leave-one-out,
checked by tests/test_readers_unisrec.py), `scientific` (LC-Rec's Scientific), `beauty`, `toys`, `sports`, `games`.
Protocol (DESIGN.md): leave-one-out, full ranking over all items, history NOT excluded, at most 50 history items.
Item text: all-MiniLM-L6-v2 vectors of the item sentence (cached under runs/cache/text, so a second run encodes
nothing). Baselines (SASRec `ce` with dropout 0.3, ItemKNN at its defaults) are trained once per dataset and their
per-row test ranks kept under runs/text_seq/<dataset>/ for the paired tests; settings are chosen on validation.

    python benchmarks/text_seq.py --dataset scientific-unisrec --variant text+id --minutes 25 --threads 1
    python benchmarks/text_seq.py --dataset scientific-unisrec --variant text+id --set dropout=0.5 --tag d05  # tuning
    python benchmarks/text_seq.py --dataset scientific-unisrec --epoch-ratio  # epoch time vs SASRec ce, one run
    python benchmarks/text_seq.py --pretrain beauty toys sports games --variant text --minutes 30
    python benchmarks/text_seq.py --dataset scientific --variant text --init runs/text_seq/pretrain-beauty/model \
        --train-fraction 0.1 --name ft-init-10pct  # transfer; --zero-shot evaluates without training
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import RESULTS_DIR, SHARED_DATA, record, write_results_md

RUNS = Path(__file__).resolve().parent.parent / "runs" / "text_seq"
CACHE = Path(__file__).resolve().parent.parent / "runs" / "cache" / "text"
KS = (5, 10, 20)
S3REC = {"beauty": ("amazon-beauty-s3rec", "Beauty"), "sports": ("amazon-sports-s3rec", "Sports_and_Outdoors"),
         "toys": ("amazon-toys-s3rec", "Toys_and_Games")}
# Published rows on amazon-scientific-unisrec (VQ-Rec paper, Table 2; second-hand copies via DESIGN.md).
PUBLISHED = {"VQ-Rec (published)": {"recall@10": .1211, "ndcg@10": .0643},
             "UniSRec (published)": {"recall@10": .1188, "ndcg@10": .0641}}
SASREC_CE = {"loss": "ce", "dropout": 0.3}


def load_dataset(name: str):
    """Benchmark dataset with item text (readers of semrec.data)."""
    from semrec.data.readers import read_lcrec, read_s3rec, read_unisrec

    if name == "scientific-unisrec":
        return read_unisrec(SHARED_DATA / "amazon-scientific-unisrec")
    if name == "games":
        return read_unisrec(SHARED_DATA / "amazon-games-text")
    if name == "scientific":
        return read_lcrec(SHARED_DATA / "amazon-scientific-text" / "Scientific.inter.json")
    if name in S3REC:
        folder, stem = S3REC[name]
        return read_s3rec(SHARED_DATA / folder / f"{stem}.txt", name=name,
                          item_text=SHARED_DATA / folder / "text" / f"{stem}.item.json")
    raise SystemExit(f"unknown dataset {name!r}")


def text_fields(ds) -> list[str]:
    """title, categories, brand where present (UniSRec's fields); otherwise the dataset's text fields."""
    return [f for f in ("title", "categories", "brand") if f in ds.text_fields] or list(ds.text_fields)


def item_vectors(ds) -> tuple[np.ndarray, dict[str, Any]]:
    """Cached MiniLM vectors of every item's sentence, and how long encoding took (0 when all cached)."""
    from semrec.data import item_sentences
    from semrec.features import TextEncoder

    enc = TextEncoder(cache_dir=str(CACHE))
    t0 = time.perf_counter()
    vectors = enc.encode(item_sentences(ds.items, text_fields(ds)))
    return vectors, {"text_model": "all-MiniLM-L6-v2 (normalized)", "fields": text_fields(ds),
                     "encode_s": round(time.perf_counter() - t0, 2), "encoded": enc.stats["encoded"],
                     "from_cache": enc.stats["cached"]}


def run_dir(dataset: str, name: str) -> Path:
    return RUNS / dataset / name


def baseline(dataset: str, split, name: str, threads: int | None) -> Any:
    """Test EvalResult of a baseline (`sasrec-ce` or `itemknn`) on this split: trained once, then read back."""
    from semrec.evaluation import EvalResult, evaluate
    from semrec.models import get_model_class

    out = run_dir(dataset, name)
    if (out / "test" / "result.json").exists():
        return EvalResult.load(out / "test")
    t0 = time.perf_counter()
    if name == "sasrec-ce":
        model = get_model_class("sasrec")(split.n_items, **SASREC_CE, progress=False, num_threads=threads)
    else:
        model = get_model_class("itemknn")(split.n_items)
    model.fit(split.train, split.valid)
    fit_s = time.perf_counter() - t0
    for part in ("valid", "test"):
        res = evaluate(model, getattr(split, part), ks=KS, exclude_history=False, train=split.train)
        res.settings["fit_s"] = round(fit_s, 1)
        hist = getattr(model, "history", None)
        if hist is not None:
            res.settings |= {"epoch_s": round(hist.epoch_s, 3), "epochs": hist.epochs, "best_epoch": hist.best_epoch}
        res.save(out / part)
    return EvalResult.load(out / "test")


def paired(base, res) -> dict[str, Any]:
    """Paired tests of `res` against `base` on R@10 and N@10 (t-test and Wilcoxon p, bootstrap CI of the delta)."""
    from semrec.evaluation import compare

    rows = compare(base, res, metrics=["recall@10", "ndcg@10"])
    return {r["metric"]: {"base": round(r["a"], 5), "delta": round(r["delta"], 5), "p_ttest": r["p_ttest"],
                          "p_wilcoxon": r["p_wilcoxon"], "ci95": [round(r["ci_low"], 5), round(r["ci_high"], 5)]}
            for r in rows}


def epoch_ratio(split, vectors: np.ndarray, overrides: dict[str, Any], rounds: int = 3) -> dict[str, Any]:
    """Training time of one epoch, text-seq vs SASRec ce, alternated in this process (same data and threads).

    SASRec runs at its own default batch (128) and at text-seq's batch, so both ratios are on record; each on wall
    time and on this process's CPU time (at one thread the same on a quiet machine, and fair on a loaded one)."""
    from semrec.models import get_model_class

    ts_batch = get_model_class("text-seq")(split.n_items, vectors=vectors, **overrides).config.train.batch_size
    times: dict[str, list[float]] = {"text-seq": [], "sasrec-ce": [], f"sasrec-ce-batch{ts_batch}": []}
    cpu: dict[str, list[float]] = {name: [] for name in times}
    for _ in range(rounds):
        for name, spent in times.items():
            if name == "text-seq":
                model = get_model_class("text-seq")(split.n_items, vectors=vectors, **overrides)
            else:
                batch = {"batch_size": ts_batch} if "batch" in name else {}
                model = get_model_class("sasrec")(split.n_items, **SASREC_CE, **batch)
            model.config = dataclasses.replace(model.config, train=dataclasses.replace(
                model.config.train, epochs=1, progress=False))
            model.fit(split.train, None)
            spent.append(model.history.records[0]["epoch_s"])
            cpu[name].append(model.history.records[0]["cpu_s"])
    out: dict[str, Any] = {}
    for clock, runs in (("epoch_s", times), ("cpu_s", cpu)):
        med = {k: float(np.median(v)) for k, v in runs.items()}
        out |= {clock: {k: [round(x, 2) for x in v] for k, v in runs.items()},
                f"{clock}_ratio_vs_sasrec": round(med["text-seq"] / med["sasrec-ce"], 3),
                f"{clock}_ratio_vs_sasrec_same_batch": round(med["text-seq"] / med[f"sasrec-ce-batch{ts_batch}"], 3)}
    return out


def parse_sets(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def subsample_users(train, fraction: float, seed: int = 0):
    """Training sequences of a random `fraction` of users (the others become empty: they still get evaluated)."""
    from semrec.data import Sequences

    if fraction >= 1:
        return train
    keep = np.random.default_rng(seed).random(len(train)) < fraction
    return Sequences.from_lengths(np.where(keep, train.lengths, 0), train.items[np.repeat(keep, train.lengths)])


def pretrain(names: list[str], variant: str, minutes: float, sets: dict[str, Any], threads: int | None) -> Path:
    """Pretrain one text-seq on several catalogues at once (one combined item table, `loss=in-batch`), save it
    under runs/text_seq/pretrain-<names>/model and record its validation metrics on the combined valid rows."""
    from semrec.data import leave_one_out
    from semrec.evaluation import evaluate
    from semrec.models import get_model_class
    from semrec.models.text.catalogues import Catalogue, combine_catalogues

    parts, infos = [], {}
    for name in names:
        ds = load_dataset(name)
        split = leave_one_out(ds)
        vectors, infos[name] = item_vectors(ds)
        parts.append(Catalogue(name, split.train, vectors, split.valid))
    comb = combine_catalogues(parts)
    out_dir = RUNS / f"pretrain-{'+'.join(names)}"
    opts = {"item_repr": variant, "loss": "in-batch", "n_negatives": 1024, **sets}
    model = get_model_class("text-seq")(comb.n_items, vectors=comb.vectors, **opts)
    model.config = dataclasses.replace(model.config, train=dataclasses.replace(
        model.config.train, max_train_seconds=minutes * 60, progress=False, num_threads=threads,
        lr_schedule="cosine", eval_every=2, log_path=str(out_dir / "train.log.jsonl")))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "train.log.jsonl").unlink(missing_ok=True)
    model.fit(comb.train, comb.valid)
    model.save(out_dir / "model")
    valid = evaluate(model, comb.valid, ks=KS, exclude_history=False)
    record("text_seq", dataset="+".join(names), model="text-seq", variant=f"{variant}-pretrain", split="valid",
           metrics={k: round(v, 5) for k, v in valid.metrics.items() if "@" in k and "coverage" not in k},
           timing={"train_s": round(model.history.train_s, 1), "epoch_s": round(model.history.epoch_s, 2)},
           settings={"catalogues": comb.sizes, "offsets": comb.offsets, "train_users": len(comb.train),
                     "model_config": dataclasses.asdict(model.config), "vectors": infos,
                     "note": "validation rows of all catalogues, scored over the combined item table"},
           extra={"loadavg": [round(x, 2) for x in os.getloadavg()], "epochs_run": model.history.epochs,
                  "best_epoch": model.history.best_epoch, "saved": str(out_dir / "model")},
           name=f"{'+'.join(names)}_text-seq_{variant}-pretrain_valid")
    return out_dir / "model"


def versus(dataset: str, label: str, other: str) -> Path:
    """Add a paired test of run `label` against run `other` (e.g. fine-tuned from a pretrained run vs trained from
    scratch) to `label`'s result JSON as `extra.p_value_vs_scratch` and `extra.paired_vs_scratch`."""
    from semrec.evaluation import EvalResult

    a = EvalResult.load(run_dir(dataset, f"text-seq-{other}") / "test")
    b = EvalResult.load(run_dir(dataset, f"text-seq-{label}") / "test")
    tests = paired(a, b)
    out = RESULTS_DIR / "text_seq" / f"{dataset}_text-seq_{label}_test.json"
    rec = json.loads(out.read_text())
    rec["extra"] |= {"p_value_vs_scratch": {m: tests[m]["p_ttest"] for m in tests}, "paired_vs_scratch": tests,
                     "scratch_run": other}
    out.write_text(json.dumps(rec, indent=2, default=str) + "\n")
    write_results_md()
    return out


def finish(dataset: str, name: str, threads: int | None, wait_s: float = 3 * 3600) -> Path:
    """Paired tests of a saved run (runs/text_seq/<dataset>/<name>/) against the baselines, then record its JSON.

    Baselines trained by another process (`--baselines-only`, which holds a .lock) are waited for, not retrained."""
    from semrec.data import leave_one_out
    from semrec.evaluation import EvalResult

    out_dir = run_dir(dataset, name)
    summary = json.loads((out_dir / "summary.json").read_text())
    test = EvalResult.load(out_dir / "test")
    extra = summary["extra"]
    split = None
    for base_name in ("sasrec-ce", "itemknn"):
        lock = run_dir(dataset, base_name).with_suffix(".lock")
        t0 = time.time()
        while lock.exists() and time.time() - t0 < wait_s:
            time.sleep(20)
        if split is None and not (run_dir(dataset, base_name) / "test" / "result.json").exists():
            split = leave_one_out(load_dataset(dataset))
        tests = paired(baseline(dataset, split, base_name, threads), test)
        key = "p_value_vs_sasrec_ce" if base_name == "sasrec-ce" else "p_value_vs_itemknn"
        extra[key] = {m: tests[m]["p_ttest"] for m in tests}
        extra[f"paired_vs_{base_name}"] = tests
    if dataset == "scientific-unisrec":
        extra["published"] = PUBLISHED
        extra["beats_vq_rec"] = bool(test.metrics["recall@10"] > .1211 and test.metrics["ndcg@10"] > .0643)
    out = record("text_seq", **{k: summary[k] for k in ("dataset", "model", "variant", "split", "metrics", "timing",
                                                        "settings")}, extra=extra, name=summary["name"])
    command = summary.get("command")
    if command:  # the command that trained it, not the one that finished it
        rec = json.loads(out.read_text())
        rec["command"] = command
        out.write_text(json.dumps(rec, indent=2, default=str) + "\n")
    write_results_md()
    return out


def main() -> None:
    from benchmarks.common import command_line

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="scientific-unisrec")
    ap.add_argument("--variant", default="text+id", help="item_repr: text | id | text+id")
    ap.add_argument("--minutes", type=float, default=20.0, help="training time budget (train.max_train_seconds)")
    ap.add_argument("--set", nargs="*", default=[], help="text-seq options key=value")
    ap.add_argument("--tag", default=None, help="tuning run: validation only, written to text_seq_tuning/")
    ap.add_argument("--name", default=None, help="result name suffix (transfer runs: e.g. ft-init-10pct)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epoch-ratio", action="store_true", help="also time one epoch vs SASRec ce in this run")
    ap.add_argument("--epoch-ratio-only", action="store_true", help="only the epoch-time ratio (no quality run)")
    ap.add_argument("--baselines-only", action="store_true")
    ap.add_argument("--finish", action="store_true", help="only the paired tests + JSON of a saved run")
    ap.add_argument("--init", default=None, help="start from a pretrained text-seq model folder (transfer)")
    ap.add_argument("--train-fraction", type=float, default=1.0, help="share of training users kept (transfer)")
    ap.add_argument("--zero-shot", action="store_true", help="no training on this dataset (needs --init)")
    ap.add_argument("--vs", default=None, help="paired test of a saved run against run VS (e.g. text-scratch-10pct)")
    ap.add_argument("--pretrain", nargs="+", default=None, help="pretrain on these catalogues at once and save")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from semrec.data import leave_one_out
    from semrec.evaluation import evaluate
    from semrec.models import get_model_class

    if args.pretrain:
        print(f"saved {pretrain(args.pretrain, args.variant, args.minutes, parse_sets(args.set), args.threads)}")
        write_results_md()
        return
    label = args.variant + (f"-{args.name}" if args.name else "")
    if args.finish:
        print(f"wrote {finish(args.dataset, f'text-seq-{label}', args.threads)}")
        return
    if args.vs:
        print(f"wrote {versus(args.dataset, label, args.vs)}")
        return
    t_start = time.perf_counter()
    load0 = [round(x, 2) for x in os.getloadavg()]
    ds = load_dataset(args.dataset)
    split = leave_one_out(ds)
    if args.baselines_only:
        for name in ("itemknn", "sasrec-ce"):
            lock = run_dir(args.dataset, name).with_suffix(".lock")
            lock.parent.mkdir(parents=True, exist_ok=True)
            lock.write_text(str(os.getpid()))
            try:
                res = baseline(args.dataset, split, name, args.threads)
            finally:
                lock.unlink(missing_ok=True)
            print(name, {k: round(v, 4) for k, v in res.metrics.items() if k in ("recall@10", "ndcg@10")})
        return
    vectors, vec_info = item_vectors(ds)
    overrides = {"item_repr": args.variant, **parse_sets(args.set)}
    if args.epoch_ratio_only:
        ratio = epoch_ratio(split, vectors, overrides | {"num_threads": args.threads})
        out = record("text_seq", dataset=args.dataset, model="text-seq", variant=f"{label}-epoch-time", split=None,
                     timing={"epoch_s": float(np.median(ratio["epoch_s"]["text-seq"]))},
                     settings={"overrides": overrides, "vectors": vec_info, "threads": args.threads,
                               "baseline": "sasrec " + json.dumps(SASREC_CE), "batch_size": "each model's default",
                               "how": "one training epoch each, alternated text-seq / SASRec / SASRec at the same batch 3 times in one "
                                      "process; medians of wall (epoch_s) and process CPU seconds (cpu_s)"},
                     extra={**ratio, "loadavg": [round(x, 2) for x in os.getloadavg()]},
                     name=f"{args.dataset}_text-seq_{label}_epoch-time")
        write_results_md()
        print(ratio, f"wrote {out}")
        return
    out_dir = run_dir(args.dataset, f"text-seq-{label}")
    train_opts = {"max_train_seconds": args.minutes * 60, "progress": False, "num_threads": args.threads,
                  "lr_schedule": "cosine", "log_path": str(out_dir / f"{args.tag or 'test'}.log.jsonl")}
    categories = None
    if overrides.get("category_weight"):  # M2TRec-style auxiliary: the next item's category, from the item table
        from semrec.models.text.item_vectors import category_labels

        categories = category_labels(ds.items, overrides.setdefault("category_field", "categories"),
                                     overrides.get("category_level", 1))
    model = get_model_class("text-seq")(ds.n_items, vectors=vectors, categories=categories, **overrides)
    model.config = dataclasses.replace(model.config, train=dataclasses.replace(
        model.config.train, **{k: v for k, v in train_opts.items() if f"train.{k}" not in overrides}))
    Path(train_opts["log_path"]).parent.mkdir(parents=True, exist_ok=True)
    Path(train_opts["log_path"]).unlink(missing_ok=True)
    carried = model.init_from(args.init) if args.init else []
    train = subsample_users(split.train, args.train_fraction)
    t0 = time.perf_counter()
    if args.zero_shot:
        if not args.init:
            raise SystemExit("--zero-shot needs --init (a pretrained model)")
        model._seen = np.zeros(ds.n_items, dtype=bool)  # no item of this catalogue was trained: text only
        model.module.seen.zero_()
        model.module.eval()
    else:
        model.fit(train, split.valid)
    fit_s = time.perf_counter() - t0
    hist = model.history
    valid = evaluate(model, split.valid, ks=KS, exclude_history=False, train=split.train)
    keys = [f"{m}@{k}" for k in KS for m in ("recall", "ndcg")] + ["mrr"]
    settings = {"protocol": "leave-one-out, full ranking over all items", "exclude_history": False, "max_len":
                model.config.max_len, "split": "given split (== leave_one_out)" if args.dataset.endswith("unisrec")
                else "leave-one-out", "n_users": ds.n_users, "n_items": ds.n_items,
                "n_interactions": ds.n_interactions, "model_config": dataclasses.asdict(model.config),
                "overrides": overrides, "vectors": vec_info, "selection": "best valid ndcg@10 epoch",
                "epochs_run": hist.epochs if hist else 0, "best_epoch": hist.best_epoch if hist else None,
                "stop_reason": hist.stop_reason if hist else None}
    extra: dict[str, Any] = {"loadavg": load0, "valid_ndcg@10": round(valid.metrics["ndcg@10"], 5),
                             "valid_recall@10": round(valid.metrics["recall@10"], 5),
                             "curves": {"valid_ndcg@10": [r.get("valid", {}).get("ndcg@10")
                                                          for r in (hist.records if hist else [])]}}
    if args.init or args.train_fraction < 1 or args.zero_shot:
        extra |= {"init": args.init, "init_carried": len(carried), "train_fraction": args.train_fraction,
                  "zero_shot": args.zero_shot, "train_users": int((train.lengths >= 2).sum())}
    timing = {"train_s": round(hist.train_s, 1) if hist else 0.0, "fit_s": round(fit_s, 1),
              "epoch_s": round(hist.epoch_s, 2) if hist else None}
    if args.tag:
        variant = f"{label}-{args.tag}"
        out = record("text_seq_tuning", dataset=args.dataset, model="text-seq", variant=variant, split="valid",
                     metrics={k: round(valid.metrics[k], 5) for k in keys}, timing=timing, settings=settings,
                     extra=extra, name=f"{args.dataset}_text-seq_{variant}_valid")
        print({k: round(valid.metrics[k], 4) for k in keys})
        write_results_md()
        print(f"wrote {out}")
        return
    test = evaluate(model, split.test, ks=KS, exclude_history=False, train=split.train)
    test.save(out_dir / "test")
    model.save(out_dir / "model")
    extra["ci95"] = {k: [round(x, 5) for x in test.confidence_interval(k)] for k in ("recall@10", "ndcg@10")}
    if args.epoch_ratio:
        extra |= epoch_ratio(split, vectors, overrides)
    timing["eval_s"] = round(test.settings["eval_s"], 2)
    timing["wall_s"] = round(time.perf_counter() - t_start, 1)
    summary = {"dataset": args.dataset, "model": "text-seq", "variant": label, "split": "test",
               "metrics": {k: round(test.metrics[k], 5) for k in keys}, "timing": timing, "settings": settings,
               "extra": extra, "name": f"{args.dataset}_text-seq_{label}_test", "command": command_line()}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print({k: round(test.metrics[k], 4) for k in keys})
    print(f"wrote {finish(args.dataset, f'text-seq-{label}', args.threads)}")


if __name__ == "__main__":
    main()
