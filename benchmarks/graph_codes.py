"""Multimodal semantic IDs on Amazon Scientific-mm: the generative model (tiger-hier) on codes from CLIP text
vectors alone vs codes from text + image + collaborative vectors fused with `semrec.features.fusion.fuse`.

Codes: RQ-KMeans, 3 levels x 32 (balanced) + a disambiguation level (collision-free), fitted on all 1,585 items.
CF vectors: SPPMI-SVD co-occurrence of the training sequences (64-d, window 5). The fusion weights are fixed
(text 0.4, image 0.2, cf 0.4; not tuned). Both runs use the same leave-one-out split, tiger-hier with its
defaults and the same wall-time budget; test rows are compared with a paired test (t-test, Wilcoxon).

    python benchmarks/graph_codes.py --budget 300 --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import SHARED_DATA, record, write_results_md

MM = SHARED_DATA / "amazon-scientific-mm"
WEIGHTS = {"text": 0.4, "image": 0.2, "cf": 0.4}


def codes_for(vectors: np.ndarray, seed: int = 0) -> tuple[np.ndarray, dict]:
    from semrec.semantic_ids.rq_kmeans import RQKMeans

    tok = RQKMeans(n_levels=3, codebook_size=32, collisions="append", seed=seed, balanced=True)
    codes = tok.fit(vectors).table().codes
    return codes, {"tokenizer": "rq-kmeans 3x32 balanced + disambiguation level (collisions=append)",
                   "n_levels": int(codes.shape[1]), "last_level_vocab": int(codes[:, -1].max() + 1),
                   "collision_rate_before": tok.fit_stats.get("collision_rate_before")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", type=float, default=300.0, help="training seconds per run")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from semrec.data.readers.unisrec import read_unisrec
    from semrec.data.splits import leave_one_out
    from semrec.evaluation import evaluate
    from semrec.evaluation.significance import compare
    from semrec.features.collaborative import cooccurrence_vectors
    from semrec.features.fusion import fuse, l2_normalize
    from semrec.features.precomputed import load_item_features
    from semrec.models import get_model_class

    ds = read_unisrec(MM)
    split = leave_one_out(ds)
    text = load_item_features(MM / "Scientific.feat1CLS", ds.n_items)
    image = load_item_features(MM / "Scientific.feat3CLS", ds.n_items)
    cf = cooccurrence_vectors(split.train, ds.n_items, dim=64, window=5, seed=0)
    sources = {"text-codes": (l2_normalize(text), "CLIP text (512-d)"),
               "mm-codes": (fuse([text, image, cf], [WEIGHTS["text"], WEIGHTS["image"], WEIGHTS["cf"]]),
                            "fuse(CLIP text 0.4, CLIP image 0.2, SPPMI-SVD cf 0.4)")}
    results = {}
    for variant, (vectors, inputs) in sources.items():
        codes, info = codes_for(vectors)
        info["inputs"] = inputs
        torch.manual_seed(0)
        model = get_model_class("tiger-hier")(ds.n_items, codes=codes, **{"train.max_train_seconds": args.budget,
                                                                          "train.progress": False})
        t0 = time.perf_counter()
        model.fit(split.train, split.valid)
        train_s = time.perf_counter() - t0
        res = evaluate(model, split.test, ks=(5, 10, 20), train=split.train)
        valid = evaluate(model, split.valid, ks=(10, 20)).metrics
        results[variant] = res
        settings = {k: v for k, v in dataclasses.asdict(model.config).items() if k != "history"}
        settings |= {"protocol": "leave-one-out", "exclude_history": False, "modalities": (
            ["text"] if variant == "text-codes" else ["text", "image", "cf"]), "codes": info}
        extra = {"valid": {k: round(v, 5) for k, v in valid.items()}, "epochs": model.history.epochs,
                 "best_epoch": model.history.best_epoch, "stop": model.history.stop_reason,
                 "loadavg": [round(x, 2) for x in os.getloadavg()]}
        if variant == "mm-codes":
            rows = compare(results["text-codes"], res, metrics=["ndcg@10", "ndcg@20", "recall@20"])
            extra["paired"] = {"vs_text_codes": [{k: (round(v, 6) if isinstance(v, float) else v)
                                                  for k, v in r.items()} for r in rows]}
        metrics = {k: round(v, 5) for k, v in res.metrics.items() if not k.startswith("coverage")}
        print(variant, metrics, flush=True)
        record("graph", dataset="scientific-mm", model="tiger-hier", variant=f"loo {variant}", split="test",
               metrics=metrics, timing={"train_s": round(train_s, 1), "epoch_s": round(model.history.epoch_s, 2)},
               settings=settings, extra=extra, name=f"scientific-mm_loo_tiger-hier_{variant}")
    write_results_md()


if __name__ == "__main__":
    main()
