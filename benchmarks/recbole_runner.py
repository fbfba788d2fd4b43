"""Train RecBole 1.2.1's SASRec on an S3-Rec sequence file and log per-epoch time and validation quality.

Runs inside RecBole's own venv (.venv-recbole; RecBole pins numpy<2 and cannot share semrec's venv), so it
imports nothing from semrec. `benchmarks/vs_recbole.py` reads the JSON log it writes.

    .venv-recbole/bin/python benchmarks/recbole_runner.py \
        --data ../shared/data/amazon-beauty-s3rec/Beauty.txt --out benchmarks/work/recbole/beauty_sasrec_ce.json

Split: the S3-Rec line order is chronological, so the token position is written as the timestamp and RecBole's
leave-one-out (eval_args split LS valid_and_test, order TO) makes the last item the test target and the
second-to-last the validation target, exactly as semrec.data's leave-one-out does. Evaluation is RecBole's full
ranking; for sequential models RecBole masks only the padding item 0, not the user's history (its
FullSortEvalDataLoader passes history_index=None when MODEL_TYPE is SEQUENTIAL), which matches semrec's default.
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

import numpy as np

HYPER = {  # the shared SASRec setting of the comparison; every key is a RecBole config key
    "loss_type": "CE", "hidden_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2,
    "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
    "initializer_range": 0.02, "MAX_ITEM_LIST_LENGTH": 50, "train_batch_size": 256, "learning_rate": 1e-3,
    "weight_decay": 0.0, "learner": "adam",
}


def write_atomic_inter(sequences_txt: Path, folder: Path, name: str) -> int:
    """Convert an S3-Rec `user item item ...` file into RecBole's `<name>.inter`; returns the row count.

    The timestamp of an interaction is its position in the user's line (line order is chronological)."""
    users, items, times = [], [], []
    with open(sequences_txt) as f:
        for lineno, line in enumerate(f, 1):
            tok = line.split()
            if len(tok) < 2:
                sys.exit(f"{sequences_txt}:{lineno}: expected 'user item [item ...]', got {line.strip()!r}")
            seq = np.asarray(tok[1:], dtype=np.int64)
            users.append(np.full(len(seq), int(tok[0]), dtype=np.int64))
            items.append(seq)
            times.append(np.arange(len(seq), dtype=np.int64))
    u, i, t = np.concatenate(users), np.concatenate(items), np.concatenate(times)
    (folder / name).mkdir(parents=True, exist_ok=True)
    table = np.stack([u, i, t], axis=1)
    np.savetxt(folder / name / f"{name}.inter", table, fmt="%d", delimiter="\t",
               header="user_id:token\titem_id:token\ttimestamp:float", comments="")
    return len(table)


def _write_log(path: Path, log: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(log, indent=2) + "\n")
    os.replace(tmp, path)


def _eval_rows(dataset, eval_dataset) -> dict[str, list]:
    """External ids of an evaluation split's users and targets, and the length of each history RecBole feeds."""
    inter = eval_dataset.inter_feat
    return {"user_id": dataset.id2token("user_id", inter["user_id"].numpy()).tolist(),
            "item_id": dataset.id2token("item_id", inter["item_id"].numpy()).tolist(),
            "history_length": inter["item_length"].numpy().tolist()}


def add_common_args(p: argparse.ArgumentParser, *, epochs: int, eval_batch_size: int) -> None:
    """The options both RecBole runners take (the SASRec runner and recbole_lightgcn.py)."""
    p.add_argument("--data", type=Path, required=True, help="S3-Rec sequence file, e.g. Beauty.txt")
    p.add_argument("--out", type=Path, required=True, help="JSON log, rewritten after every epoch")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--max-wall-s", type=float, default=float("inf"),
                   help="stop after the epoch during which this much wall time (since start) has passed")
    p.add_argument("--eval-batch-size", type=int, default=eval_batch_size, help="users per full-sort batch")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 keeps torch's default")


def check_paths(args: argparse.Namespace) -> None:
    args.out = args.out.resolve()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.data.exists():
        sys.exit(f"{args.data}: not found; pass the S3-Rec sequence file (e.g. ../shared/data/amazon-beauty-s3rec/"
                 "Beauty.txt)")


def base_config(work: Path, args: argparse.Namespace, *, stopping_step: int, topk: list[int]) -> dict:
    """RecBole config keys shared by both runners: the atomic file written by `write_atomic_inter`, leave-one-out
    by position (LS valid_and_test, order TO), full ranking, validation on NDCG@10 after every epoch."""
    return {
        "data_path": str(work), "checkpoint_dir": str(work / "saved"), "use_gpu": False,
        "device": "cpu", "seed": args.seed, "reproducibility": True, "show_progress": False, "state": "INFO",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)", "rm_dup_inter": None,
        "epochs": args.epochs, "stopping_step": stopping_step, "eval_step": 1,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["NDCG", "Recall"], "topk": topk, "valid_metric": "NDCG@10",
        "eval_batch_size": args.eval_batch_size,
    }


def timed_epochs(trainer, model, train_data, valid_data, test_data, log: dict, args: argparse.Namespace, *,
                 t_start: float, topk: list[int], patience: int | None = None, before_test=None) -> None:
    """Train epoch by epoch with RecBole's own `_train_epoch` / `_valid_epoch`, logging wall and CPU time and the
    validation metrics after each (the log is rewritten every epoch, so a reader can follow the run); stop at
    `args.epochs`, after `patience` epochs without improvement, or once `args.max_wall_s` has passed; then test
    the best-validation epoch's weights, as RecBole's own fit() reports it (`before_test(model)` first, e.g. to
    drop a cached propagation)."""
    metrics = [f"{m}@{k}" for k in topk for m in ("ndcg", "recall")]
    cum_train = cum_wall = cum_cpu = 0.0
    best_score, best_state, best_epoch, stale = -float("inf"), None, 0, 0
    log["stop_reason"] = f"epochs {args.epochs}"
    for epoch in range(args.epochs):
        t0, c0 = time.time(), time.process_time()
        loss = trainer._train_epoch(train_data, epoch, show_progress=False)
        t1 = time.time()
        _score, result = trainer._valid_epoch(valid_data, show_progress=False)
        t2, c2 = time.time(), time.process_time()
        cum_train += t1 - t0
        cum_wall += t2 - t0
        cum_cpu += c2 - c0
        row = {"epoch": epoch + 1, "train_s": round(t1 - t0, 2), "eval_s": round(t2 - t1, 2),
               "cum_train_s": round(cum_train, 2), "cum_train_eval_s": round(cum_wall, 2),
               "cum_cpu_s": round(cum_cpu, 2), "since_start_s": round(t2 - t_start, 2), "end_unix": t2,
               "loss": float(sum(loss) if isinstance(loss, tuple) else loss),
               **{f"valid_{k}": float(result[k]) for k in metrics},
               "loadavg": [round(x, 2) for x in os.getloadavg()]}
        log["epochs"].append(row)
        _write_log(args.out, log)
        print(json.dumps(row), flush=True)
        if row["valid_ndcg@10"] > best_score:  # kept in memory (outside the timed span) for the test evaluation
            best_score, best_epoch, stale = row["valid_ndcg@10"], epoch + 1, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        if patience is not None and stale >= patience:
            log["stop_reason"] = f"no improvement for {patience} epochs"
            break
        if t2 - t_start > args.max_wall_s:
            log["stop_reason"] = f"max_wall_s {args.max_wall_s:.0f}"
            break
    if best_state is not None:
        model.load_state_dict(best_state)
        if before_test is not None:
            before_test(model)
        t3 = time.time()
        result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        log["test"] = {"epoch": best_epoch, **{k: float(result[k]) for k in metrics},
                       "eval_s": round(time.time() - t3, 2)}
        print(json.dumps({"test": log["test"]}), flush=True)
    log["done"] = True
    _write_log(args.out, log)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(p, epochs=12, eval_batch_size=2048)
    p.add_argument("--dump-split", action="store_true",
                   help="write RecBole's validation/test rows (external user id, target item id, history length) "
                        "to --out and exit without training, so vs_recbole.py can check the split is ours")
    args = p.parse_args()
    check_paths(args)

    t_start = time.time()
    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="recbole_"))
    name = "beauty"
    n_rows = write_atomic_inter(args.data, work, name)
    config_dict = {**base_config(work, args, stopping_step=10**6, topk=[10]), **HYPER,
                   "train_neg_sample_args": None}
    os.chdir(work)  # RecBole writes log/ and log_tensorboard/ into the working directory
    config = Config(model="SASRec", dataset=name, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, _test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = SASRec(config, train_data._dataset).to(config["device"])
    if args.dump_split:
        _write_log(args.out, {name: _eval_rows(dataset, data._dataset)
                              for name, data in (("valid", valid_data), ("test", _test_data))})
        return
    trainer = Trainer(config, model)
    prep_s = time.time() - t_start

    log = {"recbole": recbole.__version__, "torch": torch.__version__, "threads": torch.get_num_threads(),
           "python": platform.python_version(), "cpu_count": os.cpu_count(), "data": str(args.data.resolve()),
           "inter_rows": n_rows, "users": int(dataset.user_num - 1), "items": int(dataset.item_num - 1),
           "train_examples": len(train_data._dataset), "valid_examples": len(valid_data._dataset),
           "settings": {**HYPER, "epochs": args.epochs, "seed": args.seed, "eval_batch_size": args.eval_batch_size,
                        "eval_args": config_dict["eval_args"], "exclude_history": False,
                        "train_neg_sample_args": None},
           "prep_s": round(prep_s, 2), "started_unix": t_start, "epochs": [], "done": False}
    print(f"recbole {recbole.__version__}: {log['users']} users, {log['items']} items, "
          f"{log['train_examples']} training examples, prep {prep_s:.1f}s", flush=True)
    _write_log(args.out, log)  # settings first, so a reader can check them before the first epoch ends
    timed_epochs(trainer, model, train_data, valid_data, _test_data, log, args, t_start=t_start, topk=[10])


if __name__ == "__main__":
    main()
