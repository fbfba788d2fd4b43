"""Simple baselines (MostPop, ItemKNN) on the S3-Rec Amazon sets, full ranking, leave-one-out.

ItemKNN is tuned per dataset on the **validation** targets only (a small grid); the test numbers are those
of the validation-best configuration, so the baseline is tuned as honestly as the models it is compared to.

    python benchmarks/baselines.py [--datasets beauty sports toys] [--threads 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from common import SHARED_DATA, record, write_results_md  # noqa: E402
from semrec.data import leave_one_out  # noqa: E402
from semrec.data.readers import read_s3rec  # noqa: E402
from semrec.evaluation import evaluate  # noqa: E402
from semrec.models import ItemKNN, MostPop  # noqa: E402
from semrec.training import auto_threads  # noqa: E402

FILES = {"beauty": "amazon-beauty-s3rec/Beauty.txt", "sports": "amazon-sports-s3rec/Sports_and_Outdoors.txt",
         "toys": "amazon-toys-s3rec/Toys_and_Games.txt"}
# centred on the best region of a first, wider grid (window 1-5, history_items 1-10, history_decay 0.5-0.8,
# backward_weight 0-0.3, alpha 0.5-0.7), whose optimum sat on its edges
GRID = {"window": [3, 5, 8], "history_items": [2, 3, 5], "history_decay": [0.3, 0.5], "backward_weight": [0.0, 0.3],
        "alpha": [0.6, 0.7, 0.85]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(FILES))
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = auto (idle cores)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads or auto_threads())
    for name in args.datasets:
        t0 = time.perf_counter()
        sp = leave_one_out(read_s3rec(SHARED_DATA / FILES[name]))
        load_s = time.perf_counter() - t0
        protocol = {"split": "leave-one-out", "full_ranking": True, "exclude_history": False, "ks": [5, 10, 20],
                    "test_rows": len(sp.test), "n_items": sp.n_items}

        t0 = time.perf_counter()
        pop = MostPop(sp.n_items).fit(sp.train)
        fit_s = time.perf_counter() - t0
        val, test = evaluate(pop, sp.valid), evaluate(pop, sp.test)
        record("baselines", dataset=name, model="mostpop", split="test", metrics=test.summary(),
               timing={"fit_s": round(fit_s, 3), "eval_s": test.settings["eval_s"]},
               settings={**protocol, "config": dataclasses.asdict(pop.config)},
               extra={"valid_ndcg@10": val.metrics["ndcg@10"], "valid_recall@10": val.metrics["recall@10"],
                      "loadavg": [round(x, 1) for x in os.getloadavg()]})

        t0 = time.perf_counter()
        trials = []
        for values in itertools.product(*GRID.values()):
            opts = dict(zip(GRID, values))
            m = ItemKNN(sp.n_items, **opts).fit(sp.train)
            trials.append((evaluate(m, sp.valid).metrics["ndcg@10"], opts))
        tune_s = time.perf_counter() - t0
        best_valid, best = max(trials, key=lambda t: t[0])
        default = {k: getattr(ItemKNN.Config(), k) for k in GRID}
        default_valid = next((v for v, o in trials if o == default), None)
        t0 = time.perf_counter()
        knn = ItemKNN(sp.n_items, **best).fit(sp.train)
        fit_s = time.perf_counter() - t0
        test = evaluate(knn, sp.test)
        record("baselines", dataset=name, model="itemknn", variant="valid-tuned", split="test",
               metrics=test.summary(), timing={"fit_s": round(fit_s, 3), "eval_s": test.settings["eval_s"],
                                               "tune_s": round(tune_s, 1)},
               settings={**protocol, "config": dataclasses.asdict(knn.config), "grid": GRID,
                         "tuned_on": "valid ndcg@10"},
               extra={"valid_ndcg@10": best_valid, "loadavg": [round(x, 1) for x in os.getloadavg()],
                      "load_s": round(load_s, 1),
                      "tuning": {"trials": len(trials), "top5_valid": sorted(trials, key=lambda t: -t[0])[:5],
                                 "default_config_valid_ndcg@10": default_valid}})
        print(f"{name}: mostpop test N@10 {evaluate(pop, sp.test).metrics['ndcg@10']:.4f}; itemknn best {best} "
              f"valid N@10 {best_valid:.4f} test N@10 {test.metrics['ndcg@10']:.4f} "
              f"R@10 {test.metrics['recall@10']:.4f}",
              flush=True)
    write_results_md()


if __name__ == "__main__":
    main()
