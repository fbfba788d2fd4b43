"""Full-ranking evaluation speed on Beauty (22,363 test users x 12,101 items).

Target: < 5 s for a SASRec-sized scorer (2 causal self-attention blocks, d=64, max length 50, scores
against all items). Uses semrec's SASRec when it is available (untrained weights: the cost of scoring does
not depend on training), plus MostPop and ItemKNN for reference. Records eval wall time, the load average
(the machine is shared), and the metrics (so the numbers can be traced).

    python benchmarks/eval_speed.py [--batch-size 1024] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import SHARED_DATA, record, write_results_md  # noqa: E402
from semrec.data import leave_one_out  # noqa: E402
from semrec.data.readers import read_s3rec  # noqa: E402
from semrec.evaluation import evaluate  # noqa: E402
from semrec.models import ItemKNN, MostPop, get_model_class  # noqa: E402
from semrec.training import auto_threads, seed_everything  # noqa: E402


def sasrec_scorer(n_items: int):
    seed_everything(0)
    cls = get_model_class("sasrec")
    model = cls(n_items)
    model.build("cpu")
    model.module.eval()
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = auto (idle cores)")
    ap.add_argument("--repeats", type=int, default=3, help="timed evaluations per model; the best is reported")
    args = ap.parse_args()
    args.threads = args.threads or auto_threads()
    torch.set_num_threads(args.threads)
    sp = leave_one_out(read_s3rec(SHARED_DATA / "amazon-beauty-s3rec" / "Beauty.txt"))
    models = {"mostpop": MostPop(sp.n_items).fit(sp.train), "itemknn": ItemKNN(sp.n_items).fit(sp.train),
              "sasrec-untrained": sasrec_scorer(sp.n_items)}
    for name, model in models.items():
        evaluate(model, sp.test.subset(np.arange(2048)), batch_size=args.batch_size)  # warm-up
        times, loads, res = [], [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = evaluate(model, sp.test, batch_size=args.batch_size)
            times.append(time.perf_counter() - t0)
            loads.append(os.getloadavg()[0])
        settings = {"users": len(sp.test), "n_items": sp.n_items, "ks": [5, 10, 20], "batch_size": args.batch_size,
                    "threads": args.threads, "exclude_history": False, "repeats": args.repeats,
                    "model_config": dataclasses.asdict(model.config)}
        out = record("eval_speed", dataset="beauty", model=name, split="test", metrics=res.summary(),
                     timing={"eval_s": round(min(times), 3), "eval_s_median": round(sorted(times)[len(times) // 2], 3)},
                     settings=settings, extra={"loadavg_1m": [round(x, 2) for x in loads],
                                               "all_eval_s": [round(t, 3) for t in times]})
        print(f"{name}: best {min(times):.2f}s of {[round(t, 2) for t in times]} (load {loads}) -> {out}")
    write_results_md()


if __name__ == "__main__":
    main()
