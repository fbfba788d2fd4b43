"""Train RecBole 1.2.1's LightGCN on an S3-Rec sequence file and log per-epoch time, CPU time and validation
quality, for benchmarks/vs_recbole_lightgcn.py.

Runs inside RecBole's own venv (.venv-recbole), so it imports nothing from semrec (only the atomic-file writer of
recbole_runner.py, the SASRec runner, which it leaves untouched).

    .venv-recbole/bin/python benchmarks/recbole_lightgcn.py --data ../shared/data/amazon-beauty-s3rec/Beauty.txt \
        --out benchmarks/work/recbole/beauty_lightgcn.json --threads 1 --max-wall-s 4800

Split: as recbole_runner.py (position in the line = timestamp, eval_args LS valid_and_test, order TO), so the
validation target is the second-to-last item and training holds the rest, as in semrec's leave-one-out.
Evaluation: RecBole's full ranking for a *general* model, which masks every item of the user's training history
(its FullSortEvalDataLoader passes history_index for non-sequential models); semrec's side must therefore run
with exclude_history on. Settings: RecBole's LightGCN.yaml and overall.yaml defaults (embedding 64, 2 layers,
reg_weight 1e-5, batch 2048, Adam lr 1e-3, one uniform negative per positive, not one of the user's items),
except `require_pow: True`, so its L2 term is reg_weight * 0.5 * sum of squares / batch exactly as semrec's
(RecBole's default sums unsquared norms), and early stopping after `--patience` epochs without improvement
(RecBole's stopping_step, default 10) or at `--max-wall-s`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recbole_runner import _write_log, write_atomic_inter  # noqa: E402

HYPER = {  # the shared LightGCN setting of the comparison; every key is a RecBole config key
    "embedding_size": 64, "n_layers": 2, "reg_weight": 1e-5, "require_pow": True, "train_batch_size": 2048,
    "learning_rate": 1e-3, "learner": "adam", "weight_decay": 0.0,
    "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1, "alpha": 1.0, "dynamic": False,
                              "candidate_num": 0},
}


def _patch_scipy_dok() -> None:
    """RecBole 1.2.1's LightGCN builds its adjacency with `dok_matrix._update(dict)`, which scipy 1.13 (the newest
    that RecBole's numpy<2 pin allows here) no longer has; give it back as the dict update it was. One-time
    preprocessing, outside every timed span."""
    import scipy.sparse as sp

    if not hasattr(sp.dok_matrix, "_update"):
        sp.dok_matrix._update = lambda self, data: self._dict.update(data)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="S3-Rec sequence file, e.g. Beauty.txt")
    p.add_argument("--out", type=Path, required=True, help="JSON log, rewritten after every epoch")
    p.add_argument("--epochs", type=int, default=300, help="RecBole's default")
    p.add_argument("--patience", type=int, default=10, help="RecBole's stopping_step")
    p.add_argument("--max-wall-s", type=float, default=float("inf"),
                   help="stop after the epoch during which this much wall time (since start) has passed")
    p.add_argument("--eval-batch-size", type=int, default=4096, help="users per full-sort batch (RecBole's default)")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 keeps torch's default")
    p.add_argument("--dump-split", action="store_true",
                   help="write RecBole's validation/test (user, target item) rows to --out and exit")
    args = p.parse_args()
    args.out = args.out.resolve()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.data.exists():
        sys.exit(f"{args.data}: not found; pass the S3-Rec sequence file (e.g. ../shared/data/amazon-beauty-s3rec/"
                 "Beauty.txt)")

    t_start, c_start = time.time(), time.process_time()
    import torch
    import recbole
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import LightGCN
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    if args.threads:
        torch.set_num_threads(args.threads)
    _patch_scipy_dok()
    work = Path(tempfile.mkdtemp(prefix="recbole_lgcn_"))
    name = "beauty"
    n_rows = write_atomic_inter(args.data, work, name)
    config_dict = {
        **HYPER, "data_path": str(work), "checkpoint_dir": str(work / "saved"), "use_gpu": False,
        "device": "cpu", "seed": args.seed, "reproducibility": True, "show_progress": False, "state": "INFO",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)", "rm_dup_inter": None,
        "epochs": args.epochs, "stopping_step": args.patience, "eval_step": 1,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["NDCG", "Recall"], "topk": [10, 20], "valid_metric": "NDCG@10",
        "eval_batch_size": args.eval_batch_size,
    }
    os.chdir(work)  # RecBole writes log/ and log_tensorboard/ into the working directory
    config = Config(model="LightGCN", dataset=name, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    if args.dump_split:
        out = {}
        for split_name, data in (("valid", valid_data), ("test", test_data)):
            inter = data._dataset.inter_feat
            out[split_name] = {"user_id": dataset.id2token("user_id", inter["user_id"].numpy()).tolist(),
                               "item_id": dataset.id2token("item_id", inter["item_id"].numpy()).tolist()}
        _write_log(args.out, out)
        return
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = LightGCN(config, train_data._dataset).to(config["device"])
    trainer = Trainer(config, model)
    prep_s, prep_cpu = time.time() - t_start, time.process_time() - c_start

    log = {"recbole": recbole.__version__, "torch": torch.__version__, "threads": torch.get_num_threads(),
           "python": platform.python_version(), "cpu_count": os.cpu_count(), "data": str(args.data.resolve()),
           "model": "LightGCN", "inter_rows": n_rows, "users": int(dataset.user_num - 1),
           "items": int(dataset.item_num - 1), "train_interactions": len(train_data._dataset),
           "train_edges": int(model.interaction_matrix.nnz), "valid_rows": len(valid_data._dataset),
           "settings": {**HYPER, "epochs": args.epochs, "stopping_step": args.patience, "seed": args.seed,
                        "eval_batch_size": args.eval_batch_size, "eval_args": config_dict["eval_args"],
                        "exclude_history": True, "init": "xavier_uniform"},
           "prep_s": round(prep_s, 2), "prep_cpu_s": round(prep_cpu, 2), "started_unix": t_start,
           "max_wall_s": args.max_wall_s, "epochs": [], "done": False}
    print(f"recbole {recbole.__version__} LightGCN: {log['users']} users, {log['items']} items, "
          f"{log['train_interactions']} training interactions, prep {prep_s:.1f}s", flush=True)
    _write_log(args.out, log)
    cum_train = cum_wall = cum_cpu = 0.0
    best_score, best_state, best_epoch, stale = -float("inf"), None, 0, 0
    for epoch in range(args.epochs):
        t0, c0 = time.time(), time.process_time()
        loss = trainer._train_epoch(train_data, epoch, show_progress=False)
        t1 = time.time()
        score, result = trainer._valid_epoch(valid_data, show_progress=False)
        t2, c2 = time.time(), time.process_time()
        cum_train += t1 - t0
        cum_wall += t2 - t0
        cum_cpu += c2 - c0
        row = {"epoch": epoch + 1, "train_s": round(t1 - t0, 2), "eval_s": round(t2 - t1, 2),
               "cum_train_s": round(cum_train, 2), "cum_train_eval_s": round(cum_wall, 2),
               "cum_cpu_s": round(cum_cpu, 2), "since_start_s": round(t2 - t_start, 2), "end_unix": t2,
               "loss": float(loss if not isinstance(loss, tuple) else sum(loss)),
               "valid_ndcg@10": float(result["ndcg@10"]), "valid_recall@10": float(result["recall@10"]),
               "valid_ndcg@20": float(result["ndcg@20"]), "valid_recall@20": float(result["recall@20"]),
               "loadavg": [round(x, 2) for x in os.getloadavg()]}
        log["epochs"].append(row)
        _write_log(args.out, log)
        print(json.dumps(row), flush=True)
        if row["valid_ndcg@10"] > best_score:  # kept in memory (outside the timed span) for the test evaluation
            best_score, best_epoch, stale = row["valid_ndcg@10"], epoch + 1, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        if stale >= args.patience:
            log["stop_reason"] = f"no improvement for {args.patience} epochs"
            break
        if t2 - t_start > args.max_wall_s:
            log["stop_reason"] = f"max_wall_s {args.max_wall_s:.0f}"
            break
    else:
        log["stop_reason"] = f"epochs {args.epochs}"
    if best_state is not None:  # test quality of the best-validation epoch, as RecBole's own fit() reports it
        model.load_state_dict(best_state)
        model.restore_user_e = model.restore_item_e = None
        t3 = time.time()
        result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        log["test"] = {"epoch": best_epoch, **{k: float(result[k]) for k in ("ndcg@10", "recall@10", "ndcg@20",
                                                                              "recall@20")},
                       "eval_s": round(time.time() - t3, 2)}
        print(json.dumps({"test": log["test"]}), flush=True)
    log["done"] = True
    _write_log(args.out, log)


if __name__ == "__main__":
    main()
