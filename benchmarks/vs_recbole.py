"""Time-to-quality against RecBole 1.2.1: how long our SASRec needs to reach RecBole's best validation NDCG@10.

Both sides train SASRec with the same hyperparameters (full-softmax CE, hidden 64, 2 layers, 2 heads, max length
50, batch 256, Adam lr 1e-3, dropout 0.5) on the same leave-one-out split of Beauty, validate on every user
each epoch with full ranking and no history masking, and run with the same number of torch threads.
RecBole runs first, in its own venv (benchmarks/recbole_runner.py writes a per-epoch JSON log); this script
takes RecBole's best validation NDCG@10 as the target, trains ours epoch by epoch until it reaches it, and
writes benchmarks/results/vs_recbole/beauty_sasrec_ce_valid.json. See benchmarks/notes/vs_recbole.md.

    .venv-recbole/bin/python benchmarks/recbole_runner.py --data ../shared/data/amazon-beauty-s3rec/Beauty.txt \
        --out benchmarks/work/recbole/beauty_sasrec_ce.json --epochs 10 --threads 1
    .venv-recbole/bin/python benchmarks/recbole_runner.py --data ../shared/data/amazon-beauty-s3rec/Beauty.txt \
        --out benchmarks/work/recbole/beauty_split.json --dump-split
    python benchmarks/vs_recbole.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, SHARED_DATA, git_commit, record, selection_of, write_results_md  # noqa: E402

from semrec.data import Split, leave_one_out  # noqa: E402

WORK = ROOT / "work"
METRIC = "ndcg@10"
# Our SASRec options matching RecBole's HYPER in recbole_runner.py (RecBole's inner_size 256 = 4 x hidden,
# the feed-forward width of our Block).
OURS = {"loss": "ce", "hidden": 64, "n_layers": 2, "n_heads": 2, "max_len": 50, "dropout": 0.5}
OURS_TRAIN = {"batch_size": 256, "lr": 1e-3, "weight_decay": 0.0, "optimizer": "adam", "patience": 0,
              "eval_every": 1, "metric": METRIC, "eval_exclude_history": False}
# What ours changes on top of that. "shared": exactly RecBole's setting (incl. its 4 x hidden feed-forward),
# trained until --set epochs. "fast": the time-to-quality recipe chosen on validation with --tune runs of ours
# alone (benchmarks/results/vs_recbole_tuning/, benchmarks/notes/vs_recbole.md); the model is the same size.
RECIPES: dict[str, dict[str, Any]] = {
    "shared": {"inner": 256, "epochs": 40},
    "fast": {"inner": 256, "length_pool": 16, "ce_chunk": 128, "batch_size": 128, "lr": 4e-3, "warmup_steps": 100,
             "lr_schedule": "cosine", "epochs": 8},
}
# RecBole settings that must hold for the comparison to mean anything (checked against its log).
RECBOLE_REQUIRED = {"loss_type": "CE", "hidden_size": 64, "n_layers": 2, "n_heads": 2, "MAX_ITEM_LIST_LENGTH": 50,
                    "train_batch_size": 256, "learning_rate": 1e-3, "hidden_dropout_prob": 0.5,
                    "attn_dropout_prob": 0.5, "exclude_history": False}


def check_settings(log: dict[str, Any], where: str = "RecBole log") -> None:
    """Exit with a message naming the field when RecBole ran with other settings than the comparison needs."""
    for key, want in RECBOLE_REQUIRED.items():
        got = log.get("settings", {}).get(key)
        if got != want:
            raise SystemExit(f"{where}: settings.{key} is {got!r}, the comparison needs {want!r}")


def recbole_target(log: dict[str, Any], where: str = "RecBole log") -> dict[str, Any]:
    """RecBole's best validation NDCG@10 over its run, the epoch it came at, and the time it took to get there
    (training + per-epoch validation, and training alone)."""
    check_settings(log, where)
    epochs = log.get("epochs") or []
    if not epochs:
        raise SystemExit(f"{where}: no finished epoch yet (fix: wait for recbole_runner.py to log one)")
    best = max(epochs, key=lambda r: (r["valid_ndcg@10"], -r["epoch"]))  # earliest epoch among ties
    return {"target": float(best["valid_ndcg@10"]), "epoch": int(best["epoch"]),
            "time_to_target_s": float(best["cum_train_eval_s"]), "train_to_target_s": float(best["cum_train_s"]),
            "epoch_s": float(np.mean([r["train_s"] for r in epochs])),
            "eval_s": float(np.mean([r["eval_s"] for r in epochs])), "epochs_run": len(epochs)}


def recbole_cpu_s(log: dict[str, Any], epoch: int, samples: Path | None) -> float | None:
    """RecBole's process CPU seconds for its first `epoch` epochs (training + validation): the log's
    `cum_cpu_s`, or, for a log written before the runner recorded it, interpolated from a file of
    `unix_time clock_ticks` samples of the process (/proc/PID/stat utime+stime) minus the preprocessing,
    counted at its wall time (single-threaded, so CPU <= wall)."""
    row = log["epochs"][epoch - 1]
    if "cum_cpu_s" in row:
        return float(row["cum_cpu_s"])
    if samples is None or not samples.exists():
        return None
    t, ticks = np.loadtxt(samples, ndmin=2).T
    if not t[0] <= row["end_unix"] <= t[-1]:
        return None
    return float(np.interp(row["end_unix"], t, ticks)) / os.sysconf("SC_CLK_TCK") - float(log["prep_s"])


def check_split(split: Split, user_ids: np.ndarray, item_ids: np.ndarray, recbole_split: Path,
                compare: Any = None) -> dict | None:
    """`compare` (default `split_mismatches`) against RecBole's dumped split when the file exists (None otherwise);
    a differing split stops the benchmark."""
    if not recbole_split.exists():
        return None
    mismatches = (compare or split_mismatches)(split, user_ids, item_ids, json.loads(recbole_split.read_text()))
    if any(mismatches.values()):
        raise SystemExit(f"RecBole's split differs from ours in {mismatches} rows ({recbole_split})")
    return mismatches


def split_mismatches(split: Split, user_ids: np.ndarray, item_ids: np.ndarray, recbole_rows: dict[str, Any]
                     ) -> dict[str, int]:
    """Rows of RecBole's valid/test split whose (user, target item, history length) differ from ours
    (history lengths compared after RecBole's cap at max_len). All zeros = the same split."""
    out = {}
    for name, es in (("valid", split.valid), ("test", split.test)):
        ours = {(str(u), str(t), int(min(n, OURS["max_len"]))) for u, t, n in
                zip(user_ids[es.users], item_ids[es.targets.items], es.histories.lengths)}
        rows = recbole_rows[name]
        theirs = set(zip(rows["user_id"], rows["item_id"], (int(n) for n in rows["history_length"])))
        out[name] = len(ours ^ theirs)
    return out


def load_beauty(data_root: Path) -> tuple[Split, np.ndarray, np.ndarray]:
    from semrec.data.readers import read_s3rec

    path = data_root / "amazon-beauty-s3rec" / "Beauty.txt"
    if not path.exists():
        raise SystemExit(f"{path} not found (fix: pass --data-root pointing at the folder holding "
                         "amazon-beauty-s3rec/)")
    ds = read_s3rec(path, name="beauty")
    return leave_one_out(ds), ds.users["user_id"].to_numpy().astype(str), ds.item_ids().astype(str)


def ours_settings(recipe: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """Model + training options of our side: the shared setting, the recipe's changes, then `key=value`
    overrides (values parsed as JSON, e.g. lr=3e-3, length_pool=16, inner=256)."""
    if recipe not in RECIPES:
        raise SystemExit(f"--recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
    out = {**OURS, **OURS_TRAIN, **RECIPES[recipe]}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected key=value (e.g. --set lr=3e-3)")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = {"none": None, "null": None}.get(value.lower(), value)
    return out


def fit_with_epoch_clock(model: Any, split: Any, log: Path) -> tuple[list[float], list[float], list[list[float]]]:
    """`model.fit(split.train, split.valid)` while a thread watches the loop's JSON-lines log at `log` and notes,
    when each epoch's record appears (after its validation), the wall clock and process CPU seconds since the
    start and the load average: per-epoch cost measured without touching the training loop (+-0.1 s)."""
    walls: list[float] = []
    cpus: list[float] = []
    loads: list[list[float]] = []
    done = threading.Event()

    def watch() -> None:
        seen = 0
        while True:
            finished = done.is_set()
            epochs = sum('"loss"' in ln for ln in log.read_text().splitlines()) if log.exists() else 0
            while seen < epochs:
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
                loads.append([round(x, 2) for x in os.getloadavg()])
                seen += 1
            if finished:
                return
            time.sleep(0.05)

    t0, c0 = time.perf_counter(), time.process_time()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        model.fit(split.train, split.valid)
    finally:
        done.set()
        watcher.join()
    return walls, cpus, loads


def train_ours(split: Split, settings: dict[str, Any], *, threads: int | None, seed: int, device: str, log: Path
               ) -> tuple[list[dict[str, Any]], list[float], list[float], Any]:
    """Train our SASRec once for `settings["epochs"]` epochs, validating after each one.

    Returns the loop's records, the wall clock and the process CPU seconds after each epoch
    (`fit_with_epoch_clock`), and the model (holding its best-validation weights)."""
    from semrec.models import get_model_class

    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    cls = get_model_class("sasrec")
    model = cls(split.n_items, **settings, seed=seed, device=device, num_threads=threads, log_path=str(log),
                progress=sys.stderr.isatty())
    walls, cpus, _loads = fit_with_epoch_clock(model, split, log)
    records = model.history.records
    for r, w, c in zip(records, walls, cpus):
        print(json.dumps({"epoch": r["epoch"], "epoch_s": r["epoch_s"], "eval_s": r.get("eval_s"),
                          "cpu_s": round(c, 1), METRIC: r["valid"][METRIC],
                          "loadavg": [round(x, 2) for x in os.getloadavg()]}), flush=True)
    return records, walls, cpus, model


def wait_for_recbole(path: Path, max_wait_s: float) -> None:
    """Sleep (no CPU) until RecBole's log says its run is done, so the target is its final best."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_wait_s:
        if path.exists() and json.loads(path.read_text()).get("done"):
            return
        time.sleep(15)
    print(f"RecBole's run did not finish within {max_wait_s:.0f}s; using its log as it stands", file=sys.stderr)


def tune(args: argparse.Namespace, split: Split, settings: dict[str, Any]) -> int:
    """One short run of ours alone (no RecBole): validation NDCG@10 and process CPU seconds after each epoch,
    written to benchmarks/results/vs_recbole_tuning/<label>.json; the recipe is chosen from these files."""
    log = WORK / "vs_recbole" / f"tune_{args.tune}.jsonl"
    if args.from_log:  # a tune run stopped before its end (e.g. by its lock slot's timeout): record what it logged
        records = [r for r in map(json.loads, log.read_text().splitlines()) if "loss" in r]
        walls = list(np.cumsum([r["epoch_s"] + r.get("eval_s", 0.0) for r in records]))
        cpus = list(np.cumsum([r["cpu_s"] for r in records]))  # training CPU only: the loop logs no eval CPU
        model = None
    else:
        records, walls, cpus, model = train_ours(split, settings, threads=args.threads, seed=args.seed,
                                                 device=args.device, log=log)
    best = max(records, key=lambda r: r["valid"][METRIC])
    per_epoch = [{"epoch": r["epoch"], "train_s": r["epoch_s"], "eval_s": r.get("eval_s"), "cum_cpu_s": round(c, 1),
                  "cum_wall_s": round(w, 1), "valid_ndcg@10": r["valid"][METRIC],
                  "valid_recall@10": r["valid"]["recall@10"]} for r, w, c in zip(records, walls, cpus)]
    targets = {f"cpu_to_{t}": next((e["cum_cpu_s"] for e in per_epoch if e["valid_ndcg@10"] >= t), None)
               for t in (0.045, 0.0492)}
    extra = {"label": args.tune, "recipe": args.recipe, "overrides": args.set, "complete": not args.from_log,
             "cpu_counts": "training only (from the loop's log)" if args.from_log else "training + validation",
             "cpu_per_epoch_s": round(cpus[-1] / len(cpus), 1), **targets, "threads": args.threads if args.from_log else torch.get_num_threads(),
             "loadavg": [round(x, 2) for x in os.getloadavg()], "per_epoch": per_epoch}
    print(json.dumps({k: v for k, v in extra.items() if k != "per_epoch"}))
    if not args.no_record:
        record("vs_recbole_tuning", dataset="beauty", model="sasrec", variant=args.tune, split="valid",
               metrics={k: v for k, v in best["valid"].items() if k.startswith(("recall@", "ndcg@"))},
               timing={"wall_s": round(walls[-1], 1), "cpu_s": round(cpus[-1], 1)},
               settings={"ours": {**settings, "seed": args.seed}, "exclude_history": False},
               selection=selection_of(model.history if model else None, METRIC), extra=extra, device=args.device)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recbole-log", type=Path, default=WORK / "recbole" / "beauty_sasrec_ce.json")
    p.add_argument("--recbole-split", type=Path, default=WORK / "recbole" / "beauty_split.json",
                   help="recbole_runner.py --dump-split output; checked against our split when present")
    p.add_argument("--recbole-cpu-samples", type=Path, default=WORK / "recbole" / "cpu_samples.txt",
                   help="'unix_time clock_ticks' samples of the RecBole process, for logs without cum_cpu_s")
    p.add_argument("--data-root", type=Path, default=SHARED_DATA)
    p.add_argument("--recipe", default="fast", help=f"our settings: {', '.join(RECIPES)} (see RECIPES)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one of our settings (repeatable), e.g. --set lr=3e-3 --set epochs=8")
    p.add_argument("--tune", metavar="LABEL", help="train ours alone and record the run under vs_recbole_tuning/")
    p.add_argument("--name", default="beauty_sasrec_ce_valid",
                   help="result file stem under benchmarks/results/vs_recbole/ (one per recipe compared)")
    p.add_argument("--save-ours", type=Path, default=None,
                   help="write ours' per-epoch records, CPU/wall clocks and test metrics here")
    p.add_argument("--from-ours", type=Path, default=None,
                   help="rebuild the report from a --save-ours file instead of training (e.g. once RecBole's run "
                        "has finished); the recipe, overrides and seed are the saved run's")
    p.add_argument("--from-log", action="store_true",
                   help="with --tune: record the epochs an interrupted tune run logged instead of training")
    p.add_argument("--max-wait-s", type=float, default=3 * 3600.0,
                   help="how long to wait, after ours finished, for RecBole's run to finish")
    p.add_argument("--threads", type=int, default=None, help="torch threads (use RecBole's: its log says)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--target", type=float, default=None, help="override the target (smoke tests only)")
    p.add_argument("--no-record", action="store_true", help="print the result instead of writing it (smoke tests)")
    args = p.parse_args(argv)
    settings = ours_settings(args.recipe, args.set)

    split, user_ids, item_ids = load_beauty(args.data_root)
    if args.tune:
        return tune(args, split, settings)
    if args.recbole_log.exists():  # else RecBole has not finished preprocessing yet: checked at the end
        check_settings(json.loads(args.recbole_log.read_text()), str(args.recbole_log))
    mismatches = check_split(split, user_ids, item_ids, args.recbole_split)

    load_start = [round(x, 2) for x in os.getloadavg()]
    commit_at_start = git_commit()  # the code that trained (others may commit while this runs)
    if args.from_ours:  # report again from a saved run of ours, e.g. once RecBole's run has finished
        if not args.from_ours.exists():
            raise SystemExit(f"--from-ours {args.from_ours}: not found (fix: a file written by --save-ours)")
        saved = json.loads(args.from_ours.read_text())
        records, walls, cpus, test = saved["records"], saved["walls"], saved["cpus"], saved["test"]
        settings, load_start, load_end = saved["settings"], saved["loadavg_start"], saved["loadavg_end"]
        commit_at_start, ffn_inner, model = saved["commit"], saved["ffn_inner"], None
        threads_used = saved.get("threads", args.threads)  # files saved before this field: the --threads given
        args.recipe, args.set, args.seed = saved["recipe"], saved["overrides"], saved["seed"]
    else:
        records, walls, cpus, model = train_ours(split, settings, threads=args.threads, seed=args.seed,
                                                 device=args.device, log=WORK / "vs_recbole" / f"{args.name}.jsonl")
        load_end = [round(x, 2) for x in os.getloadavg()]
        threads_used = torch.get_num_threads()
        test = evaluate_test(model, split)
        blocks = getattr(model.module, "blocks", [])
        ffn_inner = blocks[0].mlp.fc.out_features if len(blocks) and hasattr(blocks[0], "mlp") else None
        if args.save_ours:
            args.save_ours.parent.mkdir(parents=True, exist_ok=True)
            args.save_ours.write_text(json.dumps(
                {"records": records, "walls": walls, "cpus": cpus, "test": test, "settings": settings,
                 "loadavg_start": load_start, "loadavg_end": load_end, "commit": commit_at_start,
                 "ffn_inner": ffn_inner, "threads": threads_used, "command": " ".join(sys.argv),
                 "recipe": args.recipe, "overrides": args.set, "seed": args.seed,
                 "selection": selection_of(getattr(model, "history", None), METRIC)}, default=float))
    if args.target is None:
        wait_for_recbole(args.recbole_log, args.max_wait_s)
    if not args.recbole_log.exists():
        raise SystemExit(f"{args.recbole_log} not found (fix: run benchmarks/recbole_runner.py; see "
                         "benchmarks/notes/vs_recbole.md)")
    rlog = json.loads(args.recbole_log.read_text())  # RecBole's final log (it ran beside ours)
    rb = recbole_target(rlog, str(args.recbole_log))
    target = rb["target"] if args.target is None else args.target
    hit = next((i for i, r in enumerate(records) if r["valid"][METRIC] >= target), None)
    ours_tt = records[hit]["elapsed_s"] if hit is not None else None
    ours_train_tt = float(sum(r["epoch_s"] for r in records[:hit + 1])) if hit is not None else None
    best = max(records, key=lambda r: r["valid"][METRIC])
    ours_epoch_s = float(np.mean([r["epoch_s"] for r in records]))
    speed = (lambda a, b: round(a / b, 2) if a and b else None)
    rb_cpu = recbole_cpu_s(rlog, rb["epoch"], args.recbole_cpu_samples)
    ours_cpu = cpus[hit] if hit is not None else None
    rb_test = rlog.get("test") or {}
    extra = {
        "target_valid_ndcg10": target, "target_source": "RecBole best valid NDCG@10 over its run",
        "recbole_best_epoch": rb["epoch"], "recbole_epochs_run": rb["epochs_run"],
        "recbole_run_complete": bool(rlog.get("done")),
        "recbole_epoch_s": round(rb["epoch_s"], 1), "recbole_eval_s": round(rb["eval_s"], 1),
        "recbole_time_to_target_s": round(rb["time_to_target_s"], 1),
        "recbole_train_to_target_s": round(rb["train_to_target_s"], 1),
        "ours_recipe": args.recipe, "ours_overrides": args.set,
        "ours_epoch_s": round(ours_epoch_s, 1),
        "ours_eval_s": round(float(np.mean([r["eval_s"] for r in records])), 1),
        "ours_epochs_to_target": hit + 1 if hit is not None else None,
        "ours_time_to_target_s": round(ours_tt, 1) if ours_tt is not None else None,
        "ours_train_to_target_s": round(ours_train_tt, 1) if ours_train_tt is not None else None,
        "ours_wall_to_target_s": round(walls[hit], 1) if hit is not None else None,
        "speedup": speed(rb["time_to_target_s"], ours_tt),
        "speedup_train_only": speed(rb["train_to_target_s"], ours_train_tt),
        "speedup_per_epoch": speed(rb["epoch_s"], ours_epoch_s),
        "recbole_cpu_to_target_s": round(rb_cpu, 1) if rb_cpu is not None else None,
        "ours_cpu_to_target_s": round(ours_cpu, 1) if ours_cpu is not None else None,
        "speedup_cpu": speed(rb_cpu, ours_cpu),
        "ours_best_valid_ndcg10": best["valid"][METRIC], "ours_best_epoch": best["epoch"],
        "ours_test_ndcg10": test.get("ndcg@10"), "ours_test_recall10": test.get("recall@10"),
        "recbole_test_ndcg10": rb_test.get("ndcg@10"), "recbole_test_recall10": rb_test.get("recall@10"),
        "recbole_test_epoch": rb_test.get("epoch"),
        "test_ndcg10_not_worse": (test["ndcg@10"] >= rb_test["ndcg@10"]) if rb_test and test else None,
        "split_mismatches_vs_recbole": mismatches,
        "threads": threads_used, "recbole_threads": rlog.get("threads"),
        "loadavg_start": load_start, "loadavg_end_of_ours": load_end,
        "recbole_loadavg_per_epoch": [r["loadavg"] for r in rlog["epochs"]],
        "recbole_per_epoch": [{k: r.get(k) for k in ("epoch", "train_s", "eval_s", "cum_train_eval_s", "cum_cpu_s",
                                                     "valid_ndcg@10", "valid_recall@10")} for r in rlog["epochs"]],
        "ours_per_epoch": [{"epoch": r["epoch"], "train_s": r["epoch_s"], "eval_s": r.get("eval_s"),
                            "cum_train_eval_s": r["elapsed_s"], "cum_cpu_s": round(c, 1), "cum_wall_s": round(w, 1),
                            "valid_ndcg@10": r["valid"][METRIC], "valid_recall@10": r["valid"]["recall@10"]}
                           for r, w, c in zip(records, walls, cpus)],
        "commit_at_start": commit_at_start, "recbole_version": rlog.get("recbole"), "recbole_torch": rlog.get("torch"),
    }
    extra["ours_ffn_inner"] = ffn_inner
    settings_out = {"protocol": "leave-one-out, full ranking over all items, one target per user, validation split",
                    "exclude_history": False, "max_len": OURS["max_len"], "ours": {**settings, "seed": args.seed},
                    "recbole": rlog.get("settings"), "n_users": len(split.train), "n_items": split.n_items,
                    "time_to_target": "sum of per-epoch training + validation wall time up to the first epoch whose "
                                      "valid NDCG@10 >= target (data loading/preprocessing excluded on both sides)"}
    metrics = {k: v for k, v in best["valid"].items() if k.startswith(("recall@", "ndcg@", "mrr"))}
    timing = {"wall_s": round(walls[-1], 1), "train_s": round(float(sum(r["epoch_s"] for r in records)), 1),
              "epoch_s": round(ours_epoch_s, 1), "eval_s": round(float(sum(r.get("eval_s", 0) for r in records)), 1)}
    selection = (selection_of(getattr(model, "history", None), METRIC) if model is not None
                 else saved.get("selection", {}))
    if args.no_record:
        print(json.dumps({"metrics": metrics, "timing": timing, "settings": settings_out, "extra": extra,
                          "selection": selection}, indent=1, default=str))
        return 0
    out = record("vs_recbole", dataset="beauty", model="sasrec", variant="ce", split="valid", metrics=metrics,
                 timing=timing, settings=settings_out, extra=extra, device=args.device, selection=selection,
                 name=args.name)
    write_results_md()
    print(f"target {target:.4f} (RecBole epoch {rb['epoch']}, {rb['time_to_target_s']:.0f}s); ours "
          + (f"epoch {hit + 1}, {ours_tt:.0f}s; speedup {extra['speedup']}x, CPU {extra['speedup_cpu']}x"
             if hit is not None else f"did not reach it in {len(records)} epochs (best {best['valid'][METRIC]:.4f})")
          + f"; test N@10 ours {test.get('ndcg@10')} vs RecBole {rb_test.get('ndcg@10')} -> {out}")
    return 0


def evaluate_test(model: Any, split: Split) -> dict[str, float]:
    """Test metrics of ours' best-validation weights (the loop restores them), no history masking."""
    if getattr(model, "module", None) is None:
        return {}
    from semrec.evaluation import evaluate

    res = evaluate(model, split.test, ks=(5, 10, 20), exclude_history=False, name="test")
    return {k: round(v, 6) for k, v in res.summary().items()}


if __name__ == "__main__":
    raise SystemExit(main())
