"""Cold start: can a generative model recommend items that never occurred in training?

Split: `semrec.data.cold_start_split` (leave-one-out; a random 5% of items is removed from training and from
every history, but may be a validation/test target). Codes: RQ-KMeans codebooks fitted on the WARM items' text
vectors only; cold items get codes from their text through the fitted tokenizer (collision-free). TIGER can then
decode them; `reserve_new` keeps that share of the top-k for items unseen in training. ID-only SASRec (full
cross-entropy) is trained on the same split and cannot score unseen items above trained ones.

text-seq (`--model text-seq`): cold items keep their text vector; they are no negatives of the training softmax
(they never occur in training), and under `text+id` they borrow the ID vector of the warm item nearest in text
(`unseen_id=nearest`, never their own untrained row). One row per `--variants` item_repr; `--epochs` fixed epochs
(`--max-train-minutes 0`: no time budget, so the result does not depend on the machine's load).

Reports, on test rows whose target is cold: Recall/NDCG@{5,10,20} (metrics), and over all test rows: how often
cold items are recommended (share of top-10 slots, users with >= 1 cold item in their top 10) and overall metrics.

    python benchmarks/cold_start.py --dataset synthetic --reserve 0 0.1 0.2
    python benchmarks/cold_start.py --dataset scientific --model text-seq --variants text text+id --epochs 12 \
        --max-train-minutes 0 --threads 1 --skip-baselines
    python benchmarks/cold_start.py --dataset beauty --baselines-only --sasrec-epochs 10 --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks.common import record, selection_of, write_results_md
from benchmarks.generative import build_codes, load_dataset, parse_sets


def topk_all(model, evalset, k: int = 20, batch: int = 1024) -> np.ndarray:
    from tqdm.auto import tqdm

    out = []
    for s in tqdm(range(0, len(evalset), batch), desc=f"recommend {getattr(model, 'name', '')}", leave=False):
        rows = np.arange(s, min(s + batch, len(evalset)))
        out.append(np.asarray(model.recommend(evalset.histories.select(rows), k=k)[0]))
    return np.concatenate(out)


def report(top: np.ndarray, evalset, cold_rows: np.ndarray, is_cold: np.ndarray) -> tuple[dict, dict]:
    from semrec.evaluation import metric_names, row_metric

    target = evalset.targets.items[evalset.targets.offsets[:-1]]
    match = top == target[:, None]
    ranks = np.where(match.any(1), match.argmax(1), -1)
    offsets = np.arange(len(ranks) + 1)
    names = [m for m in metric_names((5, 10, 20)) if m.split("@")[0] in ("recall", "ndcg", "mrr")]
    cold = {m: round(float(row_metric(m, ranks[cold_rows], offsets[: cold_rows.sum() + 1], 20).mean()), 5) for m in names}
    overall = {m: round(float(row_metric(m, ranks, offsets, 20).mean()), 5) for m in names}
    top10_cold = is_cold[np.clip(top[:, :10], 0, None)] & (top[:, :10] >= 0)
    extra = {"cold_rows": int(cold_rows.sum()), "rows": len(ranks), "overall": overall,
             "cold_share_of_top10": round(float(top10_cold.mean()), 5),
             "users_with_cold_in_top10": round(float(top10_cold.any(1).mean()), 5),
             "distinct_cold_items_recommended": len(np.unique(top[:, :10][top10_cold]))}
    return cold, extra


def text_seq_rows(args, ds, split, cold_rows: np.ndarray, is_cold: np.ndarray, common: dict) -> None:
    """text-seq on the cold split: cold items keep their text vector (never their ID), so they are scored from
    text; one row per item_repr. Trained by the shared loop with early stopping on (all) validation rows."""
    import dataclasses

    from benchmarks.text_seq import item_vectors
    from semrec.models.base import get_model_class

    vectors, vec_info = item_vectors(ds)
    for variant in args.variants:
        t0 = time.perf_counter()
        model = get_model_class("text-seq")(ds.n_items, vectors=vectors, item_repr=variant, progress=False,
                                            epochs=args.epochs, max_train_seconds=args.max_train_minutes * 60 or None,
                                            lr_schedule="cosine", num_threads=args.threads, **parse_sets(args.set))
        model.fit(split.train, split.valid)
        train_s = time.perf_counter() - t0
        top = topk_all(model, split.test)
        cold, extra = report(top, split.test, cold_rows, is_cold)
        print(f"text-seq {variant}: cold {cold} | {extra}")
        record("cold_start", dataset=args.dataset, model="text-seq", split="test-cold",
               variant=variant + "".join(f" {x}" for x in args.set),
               metrics=cold, timing={"train_s": round(train_s, 1), "epoch_s": round(model.history.epoch_s, 2)},
               settings={**common, "vectors": vec_info, "model_config": dataclasses.asdict(model.config)},
               extra={**extra, "epochs_run": model.history.epochs, "best_epoch": model.history.best_epoch,
                      "loadavg": [round(x, 2) for x in os.getloadavg()]},
               selection=selection_of(model.history, model.config.train.metric),
               name=f"{args.dataset}_text-seq_{variant}" + "".join(f"_{x}" for x in args.set))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--model", default="tiger-decoder", choices=["tiger", "tiger-decoder", "tiger-hier", "text-seq"])
    ap.add_argument("--variants", nargs="+", default=["text", "text+id"], help="text-seq: item_repr values")
    ap.add_argument("--fraction", type=float, default=0.05)
    ap.add_argument("--reserve", type=float, nargs="+", default=[0.0, 0.1, 0.2])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--max-train-minutes", type=float, default=20.0)
    ap.add_argument("--sasrec-epochs", type=int, default=30)
    ap.add_argument("--set", nargs="*", default=[])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--codes", default="text", choices=["text", "text+cf"],
                    help="text+cf fuses training co-occurrence vectors (cold items have none: text only)")
    ap.add_argument("--balanced", action="store_true")
    ap.add_argument("--skip-baselines", action="store_true", help="only the generative model")
    ap.add_argument("--baselines-only", action="store_true", help="only the ID baselines (SASRec ce, MostPop)")
    ap.add_argument("--reuse", action="store_true",
                    help="generative: evaluate the model saved by an earlier run (runs/cold_start/DATASET_MODEL)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from semrec.data import cold_start_split, targets_are_cold

    ds = load_dataset(args.dataset)
    split = cold_start_split(ds, fraction=args.fraction, seed=0)
    is_cold = np.zeros(ds.n_items, bool)
    is_cold[split.cold_items] = True
    cold_rows = targets_are_cold(split.test, split.cold_items, ds.n_items)
    warm = np.flatnonzero(np.bincount(split.train.items, minlength=ds.n_items) > 0)
    load0 = os.getloadavg()
    common = {"split": "cold-start (leave-one-out, cold items removed from training and histories)",
              "fraction": args.fraction, "seed": 0, "exclude_history": False, "metrics_on": "test rows with a cold target"}
    if args.model == "text-seq" and not args.baselines_only:
        text_seq_rows(args, ds, split, cold_rows, is_cold, common)
    elif not args.baselines_only:
        generative_rows(args, ds, split, cold_rows, is_cold, common, warm, load0)
    baseline_rows(args, ds, split, cold_rows, is_cold, common)
    write_results_md()


def generative_rows(args, ds, split, cold_rows, is_cold, common, warm, load0) -> None:
    """One generative model on the cold split, one row per reserve share."""
    from semrec.models.base import Recommender, get_model_class

    # --- TIGER: one model, several reserve shares
    saved = Path(__file__).resolve().parent.parent / "runs" / "cold_start" / f"{args.dataset}_{args.model}"
    if args.reuse:  # the model this script trained and saved before: only the decoding is evaluated again
        model, train_s, losses = Recommender.load(saved), None, None
        code_info = {"table": f"saved with the model ({saved.name}); its provenance is in the training run's rows",
                     "n_levels": int(model.codes.shape[1])}
    else:
        codes, code_info = build_codes(ds, fit_items=warm, balanced=args.balanced,
                                       cf=split.train if args.codes == "text+cf" else None)
        t0 = time.perf_counter()
        # every generative model is trained by semrec.training (early stopping on validation)
        model = get_model_class(args.model)(ds.n_items, codes=codes, **{
            "train.epochs": args.epochs, "train.max_train_seconds": args.max_train_minutes * 60,
            **parse_sets(args.set)})
        model.fit(split.train, split.valid)
        train_s = round(time.perf_counter() - t0, 1)
        losses = [round(r["loss"], 4) for r in model.history.records]
        model.save(saved)
    for share in args.reserve:
        model.config.reserve_new = share
        t1 = time.perf_counter()
        top = topk_all(model, split.test)
        cold, extra = report(top, split.test, cold_rows, is_cold)
        print(f"{args.model} reserve {share}: cold {cold} | {extra}")
        record("cold_start", dataset=args.dataset, model="tiger", variant=f"{args.model}-reserve{share}",
               split="test-cold", metrics=cold, timing={"train_s": train_s, "eval_s": round(time.perf_counter() - t1, 1)},
               settings={**common, "codes": code_info, "reserve_new": share, "model": args.model,
                         "epochs": args.epochs, "beam": model.config.beam},
               extra={**extra, "reserve_new": share, "loadavg": [round(x, 2) for x in load0], "loss": losses,
                      "reused_model": str(saved) if args.reuse else None},
               name=f"{args.dataset}_{args.model}_reserve{share}")


def baseline_rows(args, ds, split, cold_rows, is_cold, common) -> None:
    """ID-only baselines on the same split (they cannot rank items never seen in training)."""
    from semrec.models.base import get_model_class

    for name, kw in () if args.skip_baselines else (("sasrec", {"loss": "ce", "epochs": args.sasrec_epochs}), ("mostpop", {})):
        t0 = time.perf_counter()
        base = get_model_class(name)(ds.n_items, **kw).fit(split.train, split.valid)
        train_s = time.perf_counter() - t0
        top = topk_all(base, split.test)
        cold, extra = report(top, split.test, cold_rows, is_cold)
        print(f"{name}: cold {cold} | {extra}")
        record("cold_start", dataset=args.dataset, model=name, variant=kw.get("loss"), split="test-cold", metrics=cold,
               timing={"train_s": round(train_s, 1)}, settings={**common, **{k: v for k, v in kw.items()}},
               extra={**extra, "loadavg": [round(x, 2) for x in os.getloadavg()]},
               name=f"{args.dataset}_{name}")


if __name__ == "__main__":
    main()
