"""Graph CF and multimodal item representations on Amazon Scientific-mm (CLIP image + text features).

For each protocol (`loo`: leave-one-out, full ranking; `mmrec`: per-user chronological 8:1:1, MMRec's
protocol; `cold`: leave-one-out with a share of items removed from training) and model, every setting of a small
grid is trained on the shared loop (early stopping on validation NDCG@20, a wall-time budget per setting), the
setting with the best validation NDCG@20 is evaluated on test, and one JSON per model is written to
benchmarks/results/graph/. Training items are excluded from the ranking in every protocol here (MMRec does so;
`settings.exclude_history` says it). Per-row test results are kept under --rows so `--compare` can add paired
tests (t-test and Wilcoxon on per-row NDCG@20 / Recall@20) between models on the same split.

    python benchmarks/graph.py --protocol loo --models lightgcn freedom lirdrec --budget 180 --threads 1
    python benchmarks/graph.py --protocol loo --compare
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import SHARED_DATA, record, selection_of, write_results_md

MM = SHARED_DATA / "amazon-scientific-mm"
FEATURES = {"image": "Scientific.feat3CLS", "text": "Scientific.feat1CLS"}
PROTOCOLS = {"loo": "loo", "mmrec": "mmrec-8-1-1", "cold": "loo (cold items)"}  # settings.protocol
COLD_FRACTION = 0.1
RESULTS = Path(__file__).resolve().parent / "results" / "graph"

# model key -> (registered model, modalities, grid of overrides); the grid is searched on validation
GRIDS: dict[str, tuple[str, list[str], list[dict[str, Any]]]] = {
    "lightgcn": ("lightgcn", [], [{"train.lr": 1e-3}, {"train.lr": 5e-3}]),
    "lightgcn-ssm": ("lightgcn", [], [{"loss": "sampled-softmax", "train.lr": 1e-3}]),
    "ngcf": ("ngcf", [], [{"train.lr": 1e-3}]),
    "freedom": ("freedom", ["image", "text"], [{"reg_weight": 1e-5, "edge_drop": 0.8},
                                               {"reg_weight": 1e-3, "edge_drop": 0.9}]),
    "lirdrec": ("lirdrec", ["image", "text"], [{"train.lr": 1e-3, "reg_weight": 1e-4},
                                               {"train.lr": 1e-3, "reg_weight": 1e-3}]),
    "lirdrec-text": ("lirdrec", ["text"], [{"train.lr": 1e-3, "reg_weight": 1e-4},
                                          {"train.lr": 1e-3, "reg_weight": 1e-3}]),
    "alpharec": ("alpharec", ["text"], [{"train.lr": 5e-4}, {"train.lr": 1e-3}]),
    "sasrec": ("sasrec", [], [{"loss": "ce", "dropout": 0.5}]),
    "itemknn": ("itemknn", [], [{}]),
}


def load(protocol: str, dataset: str = "scientific-mm"):
    from semrec.data.readers.unisrec import read_unisrec
    from semrec.data.splits import cold_start_split, leave_one_out, mmrec_split
    from semrec.features.precomputed import load_item_features

    if dataset == "beauty":  # ID-only models (no image features for Beauty here)
        from semrec.data.readers import read_s3rec

        ds, feats = read_s3rec(SHARED_DATA / "amazon-beauty-s3rec" / "Beauty.txt"), {}
    else:
        ds = read_unisrec(MM)
        feats = {m: load_item_features(MM / f, ds.n_items) for m, f in FEATURES.items()}
    split = {"loo": lambda: leave_one_out(ds), "mmrec": lambda: mmrec_split(ds),
             "cold": lambda: cold_start_split(ds, fraction=COLD_FRACTION, seed=0)}[protocol]()
    return ds, feats, split


def build(key: str, n_items: int, feats: dict[str, np.ndarray], overrides: dict[str, Any], budget: float):
    from semrec.models import get_model_class

    name, modalities, _ = GRIDS[key]
    cls = get_model_class(name)
    opts = dict(overrides)
    if hasattr(cls.Config(), "train"):
        opts = {"train.metric": "ndcg@20", "train.eval_exclude_history": True, "train.max_train_seconds": budget,
                "train.progress": False} | opts
    model = cls(n_items, **opts)
    if modalities:
        model.with_features({m: feats[m] for m in modalities})
    return model


def run_model(key: str, protocol: str, budget: float, rows_dir: Path, refit: bool = False,
              dataset: str = "scientific-mm") -> Path:
    """Search the grid (or, with `refit`, retrain the setting an earlier search picked, with this budget)."""
    from semrec.data.splits import targets_are_cold
    from semrec.evaluation import evaluate

    ds, feats, split = load(protocol, dataset)
    name, modalities, grid = GRIDS[key]
    if modalities and not feats:
        raise SystemExit(f"{key} needs image/text features; {dataset} has none here")
    tried: list[dict[str, Any]] = []
    if refit:
        earlier = json.loads((RESULTS / f"{dataset}_{protocol}_{key}.json").read_text())["extra"]["grid"]["tried"]
        tried = [e | {"refit": False} for e in earlier]
        grid = [max(earlier, key=lambda e: e["valid_ndcg@20"])["overrides"]]
    best = None
    for overrides in grid:
        torch.manual_seed(0)
        model = build(key, ds.n_items, feats, overrides, budget)
        t0 = time.perf_counter()
        model.fit(split.train, split.valid)
        fit_s = time.perf_counter() - t0
        valid = evaluate(model, split.valid, ks=(10, 20), exclude_history=True).metrics
        hist = getattr(model, "history", None)
        entry = {"overrides": overrides, "valid_ndcg@20": round(valid["ndcg@20"], 5),
                 "valid_recall@20": round(valid["recall@20"], 5), "fit_s": round(fit_s, 1),
                 "epochs": hist.epochs if hist else None, "best_epoch": hist.best_epoch if hist else None,
                 "stop": hist.stop_reason if hist else None}
        entry["refit"] = refit
        tried.append(entry)
        print(key, protocol, entry, flush=True)
        if best is None or valid["ndcg@20"] > best[0]["valid_ndcg@20"] or refit:
            best = (entry, model, valid, fit_s)
    entry, model, valid, fit_s = best
    test = evaluate(model, split.test, ks=(10, 20), exclude_history=True, train=split.train)
    rows_dir.mkdir(parents=True, exist_ok=True)
    test.save(rows_dir / f"{dataset}_{protocol}_{key}")
    extra: dict[str, Any] = {"grid": {"tried": tried}, "valid": {k: round(v, 5) for k, v in valid.items()},
                             "loadavg": [round(x, 2) for x in os.getloadavg()]}
    if protocol == "cold":
        cold_rows = targets_are_cold(split.test, split.cold_items, ds.n_items)
        sub = evaluate(model, split.test.subset(cold_rows), ks=(10, 20), exclude_history=True)
        top, _ = model.recommend(split.test.histories, k=20, exclude=split.test.histories,
                                 **({"users": split.test.users} if getattr(model, "uses_users", False) else {}))
        is_cold = np.zeros(ds.n_items, dtype=bool)
        is_cold[split.cold_items] = True
        extra["cold"] = {"rows": int(cold_rows.sum()), "items": len(split.cold_items),
                         "metrics": {k: round(v, 5) for k, v in sub.metrics.items()},
                         "cold_share_of_top20": round(float(is_cold[top].mean()), 5)}
    cfg = getattr(model, "config", None)
    hist = getattr(model, "history", None)
    settings = {"protocol": PROTOCOLS[protocol],
                "split": split.kind, "split_options": split.options, "exclude_history": True,
                "modalities": modalities or (["id"] if name not in ("itemknn",) else ["co-occurrence"]),
                "features": {m: f"amazon-scientific-mm/{FEATURES[m]} (CLIP ViT-B/32, 512-d)" for m in modalities},
                "selected_by": "validation ndcg@20 (training items excluded)" + (
                    "; grid searched at a shorter budget, the picked setting retrained (extra.grid)" if refit else ""),
                "budget_s_per_setting": budget,
                "model_config": _plain(cfg)}
    metrics = {k: round(v, 5) for k, v in test.metrics.items() if not k.startswith("coverage")}
    timing = {"fit_s": round(fit_s, 1), "eval_s": test.settings["eval_s"]}
    if hist is not None:
        timing |= {"train_s": round(hist.train_s, 1), "epoch_s": round(hist.epoch_s, 3)}
    return record("graph", dataset=dataset, model=name, variant=variant_label(protocol, key),
                  split="test", metrics=metrics, timing=timing, settings=settings, extra=extra,
                  selection=selection_of(hist, "ndcg@20"), name=f"{dataset}_{protocol}_{key}")


def variant_label(protocol: str, key: str) -> str:
    """RESULTS.md has no protocol column: the variant names the protocol (and the grid key when not the model)."""
    label = {"loo": "loo", "mmrec": "mmrec-8-1-1", "cold": "loo-cold10%"}[protocol]
    name = GRIDS[key][0] if key in GRIDS else key
    return label + (f" {key.removeprefix(name).strip('-')}" if key != name else "")


def _plain(cfg: Any) -> Any:
    import dataclasses

    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else None


# pairs (a, b): b is expected to beat a; paired tests on the test rows
PAIRS = [("lightgcn", "freedom"), ("freedom", "lirdrec"), ("lirdrec-text", "lirdrec"), ("lightgcn", "lirdrec"),
         ("lightgcn", "alpharec"), ("lightgcn", "ngcf"), ("sasrec", "lirdrec"), ("itemknn", "lightgcn")]


def compare(protocol: str, rows_dir: Path, dataset: str = "scientific-mm") -> None:
    from semrec.evaluation.result import EvalResult
    from semrec.evaluation.significance import compare as paired

    out = RESULTS
    for f in out.glob(f"{dataset}_{protocol}_*.json"):  # label files written before variants named protocols
        key = f.stem.split("_", 2)[2]
        rec = json.loads(f.read_text())
        if isinstance(rec["extra"].get("grid"), list):  # a mapping keeps the list out of RESULTS.md's table
            rec["extra"]["grid"] = {"tried": rec["extra"]["grid"]}
            f.write_text(json.dumps(rec, indent=2, default=str) + "\n")
        if key in GRIDS and rec["variant"] != variant_label(protocol, key):
            rec["variant"] = variant_label(protocol, key)
            f.write_text(json.dumps(rec, indent=2, default=str) + "\n")
    for a, b in PAIRS:
        pa, pb = rows_dir / f"{dataset}_{protocol}_{a}", rows_dir / f"{dataset}_{protocol}_{b}"
        jb = out / f"{dataset}_{protocol}_{b}.json"
        if not (pa.exists() and pb.exists() and jb.exists()):
            continue
        rows = paired(EvalResult.load(pa), EvalResult.load(pb), metrics=["ndcg@20", "recall@20"])
        rec = json.loads(jb.read_text())
        rec["extra"].setdefault("paired", {})[f"vs_{a}"] = [
            {k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
        jb.write_text(json.dumps(rec, indent=2, default=str) + "\n")
        r = rows[0]
        print(f"{protocol}: {b} vs {a}: ndcg@20 {r['b']:.4f} vs {r['a']:.4f}, delta {r['delta']:+.4f}, "
              f"p_t {r['p_ttest']:.3g}, p_w {r['p_wilcoxon']:.3g}")


def diagnose(protocol: str, rows_dir: Path, dataset: str = "scientific-mm") -> None:
    """For each expected ordering (PAIRS): the paired NDCG@20 gap, its standard error, the smallest gap these rows
    can detect (two-sided 0.05, power 0.8: 2.8 SE), how many rows the observed gap would need, rows won/lost, and
    the gap on rows whose target is a tail item (<= 5 training interactions) vs the rest."""
    from semrec.evaluation.result import EvalResult

    for a, b in PAIRS:
        pa, pb = rows_dir / f"{dataset}_{protocol}_{a}", rows_dir / f"{dataset}_{protocol}_{b}"
        if not (pa.exists() and pb.exists()):
            continue
        ra, rb = EvalResult.load(pa), EvalResult.load(pb)
        d = rb.row_metric("ndcg@20") - ra.row_metric("ndcg@20")
        n, sd = len(d), float(d.std(ddof=1))
        se = sd / np.sqrt(n)
        out = {"pair": f"{b} - {a}", "rows": n, "delta": round(float(d.mean()), 4), "se": round(se, 4),
               "mde80": round(2.8 * se, 4), "rows_needed": int((2.8 * sd / d.mean()) ** 2) if d.mean() > 0 else None,
               "won": int((d > 0).sum()), "lost": int((d < 0).sum()), "tied": int((d == 0).sum())}
        if ra.target_popularity is not None:
            tail = ra.target_popularity <= 5
            out |= {"tail_rows": int(tail.sum()), "delta_tail": round(float(d[tail].mean()), 4),
                    "delta_head": round(float(d[~tail].mean()), 4)}
        print(json.dumps(out), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--protocol", choices=list(PROTOCOLS), required=True)
    p.add_argument("--dataset", choices=["scientific-mm", "beauty"], default="scientific-mm")
    p.add_argument("--models", nargs="*", default=[], choices=list(GRIDS))
    p.add_argument("--budget", type=float, default=180.0, help="training seconds per grid setting")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rows", type=Path, default=Path("/tmp/semrec-graph-rows"),
                   help="where per-row test results are kept for --compare")
    p.add_argument("--compare", action="store_true", help="add paired tests to the results of this protocol")
    p.add_argument("--diagnose", action="store_true",
                   help="print power and tail/head gaps of the expected orderings from the kept per-row results")
    p.add_argument("--refit", action="store_true",
                   help="retrain the setting an earlier grid search picked (its JSON's extra.grid) with --budget")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for key in args.models:
        print(run_model(key, args.protocol, args.budget, args.rows, args.refit, args.dataset), flush=True)
    if args.compare:
        compare(args.protocol, args.rows, args.dataset)
    if args.diagnose:
        diagnose(args.protocol, args.rows, args.dataset)
        return
    write_results_md()


if __name__ == "__main__":
    main()
