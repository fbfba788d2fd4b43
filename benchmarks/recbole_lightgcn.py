"""Train RecBole 1.2.1's LightGCN on an S3-Rec sequence file and log per-epoch time, CPU time and validation
quality, for benchmarks/vs_recbole_lightgcn.py.

Runs inside RecBole's own venv (.venv-recbole), so it imports nothing from semrec; the atomic-file writer, the
shared config keys and the timed epoch loop come from recbole_runner.py (the SASRec runner).

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
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recbole_runner import (
    _write_log,
    add_common_args,
    base_config,
    check_paths,
    timed_epochs,
    write_atomic_inter,
)

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


def _drop_cached_propagation(model) -> None:
    """LightGCN caches its propagated embeddings for evaluation; the restored best weights need a fresh pass."""
    model.restore_user_e = model.restore_item_e = None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(p, epochs=300, eval_batch_size=4096)  # RecBole's defaults
    p.add_argument("--patience", type=int, default=10, help="RecBole's stopping_step")
    p.add_argument("--dump-split", action="store_true",
                   help="write RecBole's validation/test (user, target item) rows to --out and exit")
    args = p.parse_args()
    check_paths(args)

    t_start, c_start = time.time(), time.process_time()
    import recbole
    import torch
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
    config_dict = {**base_config(work, args, stopping_step=args.patience, topk=[10, 20]), **HYPER}
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
    timed_epochs(trainer, model, train_data, valid_data, test_data, log, args, t_start=t_start, topk=[10, 20],
                 patience=args.patience, before_test=_drop_cached_propagation)


if __name__ == "__main__":
    main()
