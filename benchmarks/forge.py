"""Identifier quality without training a recommender (FORGE-style): cheap numbers of each code table, and their
Spearman rank correlation with the test NDCG@10 of the generative models trained on those tables here.

Correlation mode (default): every `benchmarks/results/generative/<dataset>_*.json` test result names its code
table. The table is read from the saved model (`extra.model_dir`/model.safetensors holds the exact codes) or,
when that folder is gone, rebuilt with `benchmarks/generative.py:build_codes` from the recorded provenance and
checked against it (raw collision rate, last-level vocabulary). Results that share a table are one variant.
For each table (its semantic levels; a TIGER disambiguation level is left out) `semrec.semantic_ids.quality`
computes: level uniformity (entropy / log K), text and CF coherence lift at level 1 (mean cosine of pairs
sharing the level-1 code minus that of random pairs; text = all-MiniLM-L6-v2 item sentences, CF = SPPMI-SVD of
the training split), and next-item prefix transitions on the training split (lift over chance, majority
purity). Spearman's rho against test NDCG@10 is reported per result and per table (its best result), with n.

Sweep mode (`--sweep`): RQ-KMeans 3 levels x K for K in 16..512, plain and balanced, on the text vectors; the
same numbers plus raw collisions and per-level perplexity. This is the evidence behind `ids fit`'s default
codebook size and warnings (semrec/semantic_ids/sizing.py).

    python benchmarks/forge.py --dataset beauty
    python benchmarks/forge.py --dataset scientific --sweep
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import RESULTS_DIR, record, write_results_md  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCALARS = ["mean_uniformity", "uniformity_l1", "text_coherence_lift_l1", "cf_coherence_lift_l1",
           "transition_lift_l1", "transition_purity_l1", "mean_transition_lift", "collision_rate_before"]


def table_metrics(codes: np.ndarray, levels: int, text: np.ndarray, cf: np.ndarray, train) -> dict[str, Any]:
    """The FORGE-style numbers of one code table (its first `levels` levels)."""
    from semrec.semantic_ids import coherence, quality

    sem = np.ascontiguousarray(codes[:, :levels])
    sizes = [int(sem[:, l].max()) + 1 for l in range(levels)]
    q = quality(sem, sizes, train, cf)
    coh = coherence(text, sem[:, :1])
    return {"levels": levels, "codebook_sizes": sizes, "mean_uniformity": q["mean_uniformity"],
            "uniformity_l1": q["uniformity"][0], "text_coherence_lift_l1": coh["coherence_per_level"][0]
            - coh["coherence_random"], "cf_coherence_lift_l1": q["cf_coherence_lift"],
            "transition_lift_l1": q["transition_lift"][0], "transition_purity_l1": q["transition_purity"][0],
            "mean_transition_lift": float(np.mean(q["transition_lift"])), "uniformity": q["uniformity"],
            "transition_lift": q["transition_lift"], "transition_purity": q["transition_purity"]}


_REBUILT: dict[tuple, tuple[np.ndarray, int, str]] = {}


def codes_of(result: dict[str, Any], ds, split) -> tuple[np.ndarray | None, int, str]:
    """(codes, semantic levels, how they were obtained) of one generative result; codes None when unavailable."""
    info = result["settings"].get("codes") or {}
    tok = str(info.get("tokenizer", ""))
    model_dir = ROOT / str(result["extra"].get("model_dir", "-"))
    append = "disambiguation level" in tok
    if (model_dir / "model.safetensors").exists():
        from safetensors import safe_open

        with safe_open(str(model_dir / "model.safetensors"), framework="numpy") as f:
            if "codes" in f.keys():
                codes = f.get_tensor("codes")
                return codes, codes.shape[1] - int(append), f"saved model {model_dir.relative_to(ROOT)}"
    memo = (tok, str(info.get("inputs")), info.get("seed"))
    if memo in _REBUILT:
        return _REBUILT[memo]
    if tok.startswith("rq-kmeans"):
        from benchmarks.generative import build_codes

        size = tok.split()[1]
        levels, codebook = (int(v) for v in size.split("x"))
        cf = split.train if "SPPMI" in str(info.get("inputs", "")) else None
        codes, got = build_codes(ds, levels=levels, codebook=codebook, seed=int(info.get("seed", 0)), cf=cf,
                                 cf_weight=0.5, balanced="balanced" in tok)
        same = (abs(got["collision_rate_before"] - info.get("collision_rate_before", -1)) < 1e-9
                and got["last_level_vocab"] == info.get("last_level_vocab"))
        how = (f"rebuilt ({'same' if same else 'not identical to the trained table'}: raw collisions "
               f"{got['collision_rate_before']:.4f} vs recorded {info.get('collision_rate_before', float('nan')):.4f}, "
               f"last-level vocab {got['last_level_vocab']} vs {info.get('last_level_vocab')})")
        _REBUILT[memo] = codes, levels, how
        return _REBUILT[memo]
    return None, 0, f"no saved model and tokenizer {tok!r} cannot be rebuilt here"


def spearman(x: list[float], y: list[float]) -> dict[str, Any]:
    """Spearman's rho (average ranks for ties) with a two-sided p-value: exact over all permutations for n <= 8
    (the t approximation is wrong for so few points), else scipy's."""
    import itertools

    from scipy.stats import rankdata, spearmanr

    ok = [i for i in range(len(x)) if x[i] is not None and np.isfinite(x[i])]
    if len(ok) < 3 or len({x[i] for i in ok}) < 2:
        return {"rho": None, "p": None, "n": len(ok)}
    xs, ys = np.array([x[i] for i in ok], float), np.array([y[i] for i in ok], float)
    r = spearmanr(xs, ys)
    rho, p = float(r.statistic), float(r.pvalue)
    if len(ok) <= 8:
        rx, ry = rankdata(xs), rankdata(ys)
        perms = np.array(list(itertools.permutations(range(len(ok)))))
        rhos = np.array([np.corrcoef(rx, ry[q])[0, 1] for q in perms])
        p = float((np.abs(rhos) >= abs(rho) - 1e-12).mean())
    return {"rho": round(rho, 4), "p": round(p, 4), "n": len(ok), "p_method": "exact" if len(ok) <= 8 else "t"}


def correlate(args, ds, split, text: np.ndarray, cf: np.ndarray) -> None:
    results = [json.loads(p.read_text()) for p in sorted((RESULTS_DIR / "generative").glob(f"{args.dataset}_*.json"))]
    results = [r for r in results if r.get("split") == "test" and "ndcg@10" in r.get("metrics", {})]
    tables: dict[str, dict[str, Any]] = {}
    points, skipped = [], []
    for r in results:
        codes, levels, how = codes_of(r, ds, split)
        name = f"{r['model']}/{r['variant']}"
        if codes is None:
            skipped.append({"result": name, "why": how})
            continue
        key = hashlib.sha256(np.ascontiguousarray(codes, dtype=np.int64).tobytes()).hexdigest()[:16]
        if key not in tables:
            t0 = time.perf_counter()
            m = table_metrics(codes, levels, text, cf, split.train)
            m["collision_rate_before"] = (r["settings"].get("codes") or {}).get("collision_rate_before")
            tables[key] = {"table": key, "tokenizer": (r["settings"].get("codes") or {}).get("tokenizer"),
                           "inputs": (r["settings"].get("codes") or {}).get("inputs", "text"), "source": how,
                           "metrics_s": round(time.perf_counter() - t0, 2), **m, "results": []}
        tables[key]["results"].append({"result": name, "test_ndcg@10": r["metrics"]["ndcg@10"],
                                       "valid_ndcg@10": valid_score(r)})
        points.append((key, r["metrics"]["ndcg@10"]))
        print(f"{name}: table {key} ({how}), N@10 {r['metrics']['ndcg@10']:.4f}", flush=True)
    per_result = {m: spearman([tables[k][m] for k, _ in points], [y for _, y in points]) for m in SCALARS}
    best = [max(t["results"], key=lambda x: x["test_ndcg@10"])["test_ndcg@10"] for t in tables.values()]
    per_table = {m: spearman([t[m] for t in tables.values()], best) for m in SCALARS}
    for m in SCALARS:
        print(f"{m:>26}: per result {per_result[m]}, per table {per_table[m]}")
    record("semantic_ids", dataset=args.dataset, model="forge", variant="spearman", split="test",
           metrics={}, timing={"wall_s": round(time.perf_counter() - args.t0, 1)},
           settings={"metrics": SCALARS, "target": "test ndcg@10 of benchmarks/results/generative results",
                     "text_vectors": "all-MiniLM-L6-v2 item sentences (benchmarks/generative.py:item_vectors)",
                     "cf_vectors": "SPPMI-SVD 64-d, window 5, of the leave-one-out training split",
                     "transitions": "consecutive pairs of the leave-one-out training split"},
           extra={"spearman_vs_test_ndcg@10": per_table, "spearman_per_result": per_result,
                  **{f"rho_{m}": per_table[m]["rho"] for m in SCALARS},
                  "n_tables": len(tables), "n_results": len(points), "goal_tables": 8,
                  "tables": tables, "skipped": {s["result"]: s["why"] for s in skipped}},
           selection=selection_of_results(tables), name=f"forge_{args.dataset}")


def valid_score(result: dict[str, Any]) -> float | None:
    """The validation NDCG@10 that selected a generative result (None where its JSON predates recording it)."""
    return (result.get("selection") or {}).get("valid_score") or result.get("extra", {}).get("valid_ndcg@10")


def selection_of_results(tables: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """No setting is chosen here: the correlation runs over every recorded result; each result's own
    validation score (what selected it) is listed."""
    return {"rule": "none: Spearman over every recorded generative test result on this dataset",
            "valid_ndcg@10_per_result": {x["result"]: x["valid_ndcg@10"] for t in tables.values()
                                         for x in t["results"]}}


def sweep(args, ds, split, text: np.ndarray, cf: np.ndarray) -> None:
    from semrec.semantic_ids import RQKMeans, diagnostics

    rows = []
    for k in args.sizes:
        for balanced in (False, True):
            t0 = time.perf_counter()
            tok = RQKMeans(n_levels=3, codebook_size=k, collisions="append", seed=0, balanced=balanced).fit(text)
            fit_s = time.perf_counter() - t0
            d = diagnostics(tok.raw_codes, tok.codes, tok.codebook_sizes)
            m = table_metrics(tok.raw_codes, 3, text, cf, split.train)
            rows.append({"codebook_size": k, "balanced": balanced, "collision_rate_before": d["collision_rate_before"],
                         "perplexity": d["perplexity"], "largest_group_per_prefix": d["largest_group_per_prefix"],
                         "disambiguation_size": d["disambiguation_size"], "fit_s": round(fit_s, 1),
                         **{key: m[key] for key in SCALARS if key in m}})
            r = rows[-1]
            print(f"K={k:4d} balanced={balanced!s:5}: collisions {r['collision_rate_before']:.1%}, perplexity "
                  f"{[round(p) for p in r['perplexity']]}, transition lift l1 {r['transition_lift_l1']:.2f}", flush=True)
    record("semantic_ids", dataset=args.dataset, model="forge", variant="codebook-sweep", split=None, metrics={},
           timing={"wall_s": round(time.perf_counter() - args.t0, 1)},
           settings={"tokenizer": "rq-kmeans 3 levels, collisions=append, seed 0", "codebook_sizes": args.sizes,
                     "inputs": "all-MiniLM-L6-v2 item sentences (text only)", "n_items": int(ds.n_items)},
           extra={"rows": rows}, name=f"forge-sweep_{args.dataset}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="beauty", choices=["beauty", "sports", "toys", "scientific"])
    ap.add_argument("--sweep", action="store_true", help="codebook-size sweep instead of the correlation")
    ap.add_argument("--sizes", type=int, nargs="*", default=[16, 32, 64, 128, 256, 512])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    args.t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    from benchmarks.generative import item_vectors, load_dataset
    from semrec.data import leave_one_out
    from semrec.features.collaborative import cooccurrence_vectors

    ds = load_dataset(args.dataset)
    split = leave_one_out(ds)
    text = item_vectors(ds)[0]
    cf = cooccurrence_vectors(split.train, ds.n_items, dim=64, window=5, seed=0)
    (sweep if args.sweep else correlate)(args, ds, split, text, cf)
    write_results_md()


if __name__ == "__main__":
    main()
