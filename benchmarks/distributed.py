"""Data-parallel speed-up on this machine: SASRec (full-softmax CE) on Beauty for a few epochs, trained by
`semrec train` on 1 process (1 and 2 torch threads) and on 2 gloo processes (`--nproc 2`, 1 thread each), the
same global batch and seed. Reports epoch time, speed-up over 1 process x 1 thread, and the metrics each reached.

    .venv/bin/python benchmarks/distributed.py --epochs 3

Writes benchmarks/results/scale/ddp_beauty_sasrec_ws{N}_t{T}.json and regenerates RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, record, write_results_md  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "runs" / "ddp-bench"
CONFIGS = [(1, 1), (1, 2), (2, 1)]  # (processes, torch threads per process)


def beauty_folder() -> Path:
    """Beauty as a semrec dataset folder (imported once, then reused)."""
    out = WORK / "beauty"
    if not (out / "interactions.parquet").exists():
        from semrec.data.readers import read_s3rec

        d = SHARED_DATA / "amazon-beauty-s3rec"
        read_s3rec(d / "Beauty.txt", item_text=d / "text" / "Beauty.item.json", name="beauty").save(out)
    return out


def train(data: Path, world: int, threads: int, epochs: int, batch_size: int) -> tuple[Path, float, float]:
    """(run folder, wall seconds, CPU seconds of all processes) of one `semrec train` run."""
    run = WORK / f"ws{world}_t{threads}"
    cmd = [sys.executable, "-m", "semrec", "train", "sasrec", "--data", str(data), "--out", str(run), "--overwrite",
           "--set", "loss=ce", "--set", f"train.epochs={epochs}", "--set", f"train.batch_size={batch_size}",
           "--set", "train.patience=0", "--threads", str(threads)]
    if world > 1:
        cmd += ["--nproc", str(world)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0, c0 = time.perf_counter(), os.times()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    c1 = os.times()
    return run, time.perf_counter() - t0, (c1.children_user - c0.children_user) + (c1.children_system -
                                                                                    c0.children_system)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256, help="global batch (split across processes)")
    args = ap.parse_args(argv)
    data = beauty_folder()
    rows = []
    for world, threads in CONFIGS:
        run, wall, cpu = train(data, world, threads, args.epochs, args.batch_size)
        hist = json.loads((run / "history.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        rows.append((world, threads, hist, metrics, wall, cpu))
        print(f"world {world} x {threads} threads: epoch {hist['epoch_s']:.1f}s, "
              f"test N@10 {metrics['test']['ndcg@10']:.4f}", flush=True)
    base = rows[0][2]["epoch_s"]
    for world, threads, hist, metrics, wall, cpu in rows:
        record("scale", dataset="beauty", model="sasrec-ddp", name=f"ddp_beauty_sasrec_ws{world}_t{threads}",
               metrics={f"test_{k}": v for k, v in metrics["test"].items() if k in ("ndcg@10", "recall@10")}
               | {f"valid_{k}": v for k, v in metrics["valid"].items() if k in ("ndcg@10", "recall@10")},
               timing={"epoch_s": hist["epoch_s"], "train_s": hist["train_s"], "wall_s": round(wall, 2),
                       "cpu_s": round(cpu, 2)},
               settings={"epochs": args.epochs, "global_batch": args.batch_size, "loss": "ce",
                         "threads_per_process": threads, "data": str(data)},
               selection={"metric": hist["metric"], "valid_score": hist["best_score"], "best_epoch": hist["best_epoch"],
                          "epochs": hist["epochs"], "stop_reason": hist["stop_reason"]},
               extra={"world_size": world, "n_items": metrics.get("protocol", {}).get("n_items"),
                      "speedup_vs_1x1": round(base / hist["epoch_s"], 3),
                      "note": "2-core machine: 2 processes x 1 thread use the same cores as 1 process x 2 threads"})
    write_results_md()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
