"""Time-to-quality against RecBole 1.2.1's LightGCN on Beauty: how long our LightGCN needs to reach RecBole's best
validation NDCG@10 of its run.

Both sides train LightGCN with the same setting (RecBole's LightGCN.yaml / overall.yaml defaults: embedding 64,
2 layers, BPR with one uniform negative per training interaction that is not one of the user's items, L2 1e-5 on
the batch's layer-0 vectors as 0.5 * sum of squares / batch, batch 2048, Adam lr 1e-3) on the same leave-one-out
split, validate on every user after every epoch with full ranking and the user's training items masked (RecBole
masks history for general models, so ours runs with exclude_history on), one torch thread each.
benchmarks/recbole_lightgcn.py (RecBole's venv) writes RecBole's per-epoch log; this script trains ours beside
it, waits for RecBole's run to end, and writes benchmarks/results/vs_recbole/beauty_lightgcn_bpr_valid.json.
See benchmarks/notes/graph.md ("LightGCN vs RecBole").

    .venv-recbole/bin/python benchmarks/recbole_lightgcn.py --data ../shared/data/amazon-beauty-s3rec/Beauty.txt \
        --out benchmarks/work/recbole/beauty_lightgcn.json --threads 1 --max-wall-s 4200 &
    .venv-recbole/bin/python benchmarks/recbole_lightgcn.py --data ../shared/data/amazon-beauty-s3rec/Beauty.txt \
        --out benchmarks/work/recbole/beauty_lightgcn_split.json --dump-split
    python benchmarks/vs_recbole_lightgcn.py --threads 1 --max-wall-s 3000
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SHARED_DATA, git_commit, record, selection_of, write_results_md  # noqa: E402
from vs_recbole import WORK, check_split, fit_with_epoch_clock, load_beauty, wait_for_recbole  # noqa: E402

METRIC = "ndcg@10"
# Our LightGCN options matching recbole_lightgcn.py's HYPER, RecBole's xavier-uniform init included (ours defaults
# to the LightGCN authors' normal(0, 0.1), which needs several times more epochs at lr 1e-3: valid NDCG@10 .0065
# after epoch 1 against RecBole's .0183).
OURS = {"dim": 64, "n_layers": 2, "loss": "bpr", "reg_weight": 1e-5, "init": "xavier"}
OURS_TRAIN = {"batch_size": 2048, "lr": 1e-3, "weight_decay": 0.0, "optimizer": "adam", "patience": 10,
              "eval_every": 1, "metric": METRIC, "eval_exclude_history": True}
RECBOLE_REQUIRED = {"embedding_size": 64, "n_layers": 2, "reg_weight": 1e-5, "require_pow": True,
                    "train_batch_size": 2048, "learning_rate": 1e-3, "learner": "adam", "weight_decay": 0.0,
                    "exclude_history": True}


def check_settings(log: dict[str, Any], where: str) -> None:
    """Exit naming the field when RecBole ran with other settings than the comparison needs."""
    for key, want in RECBOLE_REQUIRED.items():
        got = log.get("settings", {}).get(key)
        if got != want:
            raise SystemExit(f"{where}: settings.{key} is {got!r}, the comparison needs {want!r}")
    neg = log.get("settings", {}).get("train_neg_sample_args") or {}
    if neg.get("distribution") != "uniform" or neg.get("sample_num") != 1:
        raise SystemExit(f"{where}: settings.train_neg_sample_args is {neg!r}, the comparison needs 1 uniform")


def split_mismatches(split: Any, user_ids: np.ndarray, item_ids: np.ndarray, rows: dict[str, Any]) -> dict[str, int]:
    """(user, target item) rows of RecBole's valid/test splits that ours lacks or vice versa; all 0 = same split."""
    out = {}
    for name, es in (("valid", split.valid), ("test", split.test)):
        ours = set(zip(user_ids[es.users].tolist(), item_ids[es.targets.items].tolist()))
        theirs = set(zip(rows[name]["user_id"], rows[name]["item_id"]))
        out[name] = len(ours ^ theirs)
    return out


def train_ours(split: Any, args: argparse.Namespace, log: Path) -> tuple[list[dict], list[float], list[float], Any]:
    """Train our LightGCN, validating after each epoch, with wall clock and process CPU seconds noted after each
    (`fit_with_epoch_clock`)."""
    from semrec.models import get_model_class

    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    model = get_model_class("lightgcn")(split.n_items, **OURS, **OURS_TRAIN, epochs=args.epochs, seed=args.seed,
                                        device=args.device, num_threads=args.threads, log_path=str(log),
                                        max_train_seconds=args.max_wall_s, progress=False)
    walls, cpus, loads = fit_with_epoch_clock(model, split, log)
    for r, w, c, load in zip(model.history.records, walls, cpus, loads):
        r["loadavg"] = load
        print(json.dumps({"epoch": r["epoch"], "train_s": r["epoch_s"], "eval_s": r.get("eval_s"), "cpu_s": round(c, 1),
                          METRIC: r["valid"][METRIC]}), flush=True)
    return model.history.records, walls, cpus, model


def from_log(split: Any, args: argparse.Namespace, log: Path) -> tuple[list[dict], list[float], list[float], Any]:
    """The records of a run of ours stopped before its end (so it wrote no result): the loop's per-epoch log gives
    wall times, training CPU seconds and validation scores; validation CPU seconds are the run's process CPU at
    an epoch's end (`--from-log` capture, from /proc/PID/stat) minus its startup (this process's CPU after the same
    imports and data loading) minus the logged training CPU, spread evenly over the epochs. The model is rebuilt
    and one validation pass is run, so the memory figures describe the same graph and evaluation."""
    from semrec.evaluation import evaluate
    from semrec.models import get_model_class
    from semrec.models.graph.adjacency import interaction_edges

    startup_cpu = time.process_time()
    torch.set_num_threads(args.threads)
    cap = json.loads(args.from_log.read_text())
    records = [r for r in map(json.loads, log.read_text().splitlines()) if "loss" in r]
    n = int(cap["epochs_logged"])
    if len(records) < n:
        raise SystemExit(f"{log}: {len(records)} epochs logged, the capture {args.from_log} says {n}")
    records = records[:n]
    eval_cpu = (float(cap["process_cpu_s"]) - startup_cpu - sum(r["cpu_s"] for r in records)) / n
    cpus = list(np.cumsum([r["cpu_s"] + eval_cpu for r in records]))
    walls = [r["elapsed_s"] for r in records]
    for r in records:
        r["loadavg"] = None
    model = get_model_class("lightgcn")(split.n_items, **OURS, **OURS_TRAIN, num_threads=args.threads,
                                        progress=False)
    model.n_users, model._edges = len(split.train), interaction_edges(split.train, split.n_items)
    model.build(args.device)
    evaluate(model, split.valid, ks=(5, 10, 20), exclude_history=True)

    class _History:  # what selection_of reads
        best_score = max(r["valid"][METRIC] for r in records)
        best_epoch = max(records, key=lambda r: r["valid"][METRIC])["epoch"]
        epochs = n
        stop_reason = "stopped by hand at this epoch (see extra.from_log)"

    model.history = _History()
    args.capture = {**cap, "startup_cpu_s": round(startup_cpu, 2), "eval_cpu_per_epoch_s": round(eval_cpu, 2)}
    return records, walls, cpus, model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recbole-log", type=Path, default=WORK / "recbole" / "beauty_lightgcn.json")
    p.add_argument("--recbole-split", type=Path, default=WORK / "recbole" / "beauty_lightgcn_split.json",
                   help="recbole_lightgcn.py --dump-split output; checked against our split when present")
    p.add_argument("--data-root", type=Path, default=SHARED_DATA)
    p.add_argument("--epochs", type=int, default=300, help="RecBole's default")
    p.add_argument("--max-wall-s", type=float, default=None, help="training-time budget of ours (seconds)")
    p.add_argument("--max-wait-s", type=float, default=2 * 3600.0, help="how long to wait for RecBole's run to end")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-record", action="store_true", help="print the result instead of writing it")
    p.add_argument("--from-log", type=Path, default=None, metavar="CAPTURE_JSON",
                   help="no training: rebuild the result of a run of ours that was stopped early from its loop log "
                        "and a capture {epochs_logged, process_cpu_s} of its process CPU at an epoch's end")
    args = p.parse_args(argv)

    split, user_ids, item_ids = load_beauty(args.data_root)
    mismatches = check_split(split, user_ids, item_ids, args.recbole_split, compare=split_mismatches)
    load_start = [round(x, 2) for x in os.getloadavg()]
    commit_at_start = git_commit()
    if args.from_log is not None:
        records, walls, cpus, model = from_log(split, args, WORK / "vs_recbole" / "ours_lightgcn.jsonl")
        test = {}
    else:
        records, walls, cpus, model = train_ours(split, args, WORK / "vs_recbole" / "ours_lightgcn.jsonl")
        from semrec.evaluation import evaluate

        test = {k: round(v, 6) for k, v in evaluate(model, split.test, ks=(10, 20), exclude_history=True,
                                                    train=split.train).summary().items()}
    load_end = [round(x, 2) for x in os.getloadavg()]
    adj = model.module.adjacency()
    graph = {"edges": model.n_edges, "adjacency_nnz": int(adj._nnz()), "adjacency_layout": str(adj.layout),
             "adjacency_mb": round(sum(t.numel() * t.element_size() for t in
                                       (adj.crow_indices(), adj.col_indices(), adj.values())) / 2**20, 2),
             "dense_adjacency_would_be_mb": round(adj.shape[0] ** 2 * 4 / 2**20, 1)}

    wait_for_recbole(args.recbole_log, args.max_wait_s)
    if not args.recbole_log.exists():
        raise SystemExit(f"{args.recbole_log} not found (fix: run benchmarks/recbole_lightgcn.py first)")
    rlog = json.loads(args.recbole_log.read_text())
    check_settings(rlog, str(args.recbole_log))
    repochs = rlog.get("epochs") or []
    if not repochs:
        raise SystemExit(f"{args.recbole_log}: no finished epoch (fix: let recbole_lightgcn.py log one)")
    rbest = max(repochs, key=lambda r: (r["valid_ndcg@10"], -r["epoch"]))  # earliest epoch among ties
    target = float(rbest["valid_ndcg@10"])  # RecBole rounds metrics to 4 decimals
    hit = next((i for i, r in enumerate(records) if r["valid"][METRIC] >= target), None)
    best = max(records, key=lambda r: r["valid"][METRIC])
    speed = (lambda a, b: round(a / b, 2) if a and b else None)
    ours_tt = records[hit]["elapsed_s"] if hit is not None else None
    ours_train_tt = float(sum(r["epoch_s"] for r in records[:hit + 1])) if hit is not None else None
    ours_cpu = cpus[hit] if hit is not None else None
    r_epoch_s = float(np.mean([r["train_s"] for r in repochs]))
    r_eval_s = float(np.mean([r["eval_s"] for r in repochs]))
    r_cpu_epoch = repochs[-1]["cum_cpu_s"] / len(repochs)
    ours_epoch_s = float(np.mean([r["epoch_s"] for r in records]))
    ours_eval_s = float(np.mean([r.get("eval_s", 0.0) for r in records]))
    rtest = rlog.get("test") or {}
    extra = {
        "target_valid_ndcg10": target, "target_source": "RecBole best valid NDCG@10 over its run (4 decimals)",
        "recbole_best_epoch": rbest["epoch"], "recbole_epochs_run": len(repochs),
        "recbole_run_complete": bool(rlog.get("done")), "recbole_stop_reason": rlog.get("stop_reason"),
        "recbole_time_to_target_s": rbest["cum_train_eval_s"], "recbole_train_to_target_s": rbest["cum_train_s"],
        "recbole_cpu_to_target_s": rbest["cum_cpu_s"],
        "recbole_epoch_s": round(r_epoch_s, 1), "recbole_eval_s": round(r_eval_s, 1),
        "recbole_cpu_per_epoch_s": round(r_cpu_epoch, 1),
        "ours_epochs_to_target": hit + 1 if hit is not None else None,
        "ours_time_to_target_s": round(ours_tt, 1) if ours_tt is not None else None,
        "ours_train_to_target_s": round(ours_train_tt, 1) if ours_train_tt is not None else None,
        "ours_cpu_to_target_s": round(ours_cpu, 1) if ours_cpu is not None else None,
        "ours_epoch_s": round(ours_epoch_s, 1), "ours_eval_s": round(ours_eval_s, 1),
        "ours_cpu_per_epoch_s": round(cpus[-1] / len(cpus), 1) if cpus else None,
        "speedup": speed(rbest["cum_train_eval_s"], ours_tt),
        "speedup_train_only": speed(rbest["cum_train_s"], ours_train_tt),
        "speedup_cpu": speed(rbest["cum_cpu_s"], ours_cpu),
        "speedup_per_epoch_cpu": speed(r_cpu_epoch, cpus[-1] / len(cpus) if cpus else None),
        "ours_best_valid_ndcg10": best["valid"][METRIC], "ours_best_epoch": best["epoch"],
        "ours_test": test, "recbole_test": rtest,
        "split_mismatches_vs_recbole": mismatches, "graph": graph,
        "threads": torch.get_num_threads(), "recbole_threads": rlog.get("threads"),
        "loadavg_start": load_start, "loadavg_end_of_ours": load_end,
        "recbole_per_epoch": [{k: r.get(k) for k in ("epoch", "train_s", "eval_s", "cum_train_eval_s", "cum_cpu_s",
                                                     "valid_ndcg@10", "loadavg")} for r in repochs],
        "ours_per_epoch": [{"epoch": r["epoch"], "train_s": r["epoch_s"], "eval_s": r.get("eval_s"),
                            "cum_train_eval_s": r["elapsed_s"], "cum_cpu_s": round(c, 1), "cum_wall_s": round(w, 1),
                            "valid_ndcg@10": r["valid"][METRIC], "loadavg": r.get("loadavg")}
                           for r, w, c in zip(records, walls, cpus)],
        "commit_at_start": commit_at_start, "recbole_version": rlog.get("recbole"), "recbole_torch": rlog.get("torch"),
    }
    if args.from_log is not None:
        extra["from_log"] = {**args.capture, "note": "ours was stopped after this epoch so the run ended before "
                             "the session's deadline; wall times and training CPU per epoch are the loop's log, "
                             "validation CPU is the process total minus startup and training, spread evenly; "
                             "no test evaluation"}
        extra["commit_at_start"] = args.capture.get("commit", commit_at_start)  # the code that trained
        extra["loadavg_start"] = extra["loadavg_end_of_ours"] = None  # this process ran later; see recbole_per_epoch
    settings = {"protocol": "leave-one-out, full ranking over all items, validation split, training items masked",
                "exclude_history": True, "ours": {**OURS, **OURS_TRAIN, "epochs": args.epochs, "seed": args.seed,
                                                  "max_train_seconds": args.max_wall_s},
                "recbole": rlog.get("settings"), "n_users": len(split.train), "n_items": split.n_items,
                "time_to_target": "sum of per-epoch training + validation wall time up to the first epoch whose "
                                  "valid NDCG@10 >= target (data loading/preprocessing excluded on both sides)"}
    metrics = {k: v for k, v in best["valid"].items() if k.startswith(("recall@", "ndcg@"))}
    timing = {"wall_s": round(walls[-1], 1) if walls else None, "cpu_s": round(cpus[-1], 1) if cpus else None,
              "train_s": round(float(sum(r["epoch_s"] for r in records)), 1), "epoch_s": round(ours_epoch_s, 2),
              "eval_s": round(ours_eval_s, 2)}
    selection = selection_of(model.history, METRIC)
    if args.no_record:
        print(json.dumps({"metrics": metrics, "timing": timing, "extra": extra}, indent=1, default=str))
        return 0
    out = record("vs_recbole", dataset="beauty", model="lightgcn", variant="bpr", split="valid", metrics=metrics,
                 timing=timing, settings=settings, extra=extra, device=args.device, selection=selection)
    write_results_md()
    print(f"target {target:.4f} (RecBole epoch {rbest['epoch']}, {rbest['cum_train_eval_s']:.0f}s); ours "
          + (f"epoch {hit + 1}, {ours_tt:.0f}s; speedup {extra['speedup']}x, CPU {extra['speedup_cpu']}x"
             if hit is not None else f"did not reach it in {len(records)} epochs (best {best['valid'][METRIC]:.4f})")
          + f" -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
