"""Full-ranking evaluation: every model is asked, through `recommend`, for its top max(K) over all items.

Users are streamed in batches (memory is bounded by batch_size x n_items scores), in order of history
length so padded sequence models see short batches; each target's rank
is found with one vectorised comparison per batch, and per-row results are kept for significance tests.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from semrec.data.sequences import Sequences
from semrec.data.splits import EvalSet
from semrec.errors import ConfigError, DataError
from semrec.evaluation.metrics import metric_names, row_metric
from semrec.evaluation.result import EvalResult
from semrec.training.distributed import SINGLE, World, merge_max, my_part

PROTOCOL = "full ranking over all items, leave-one-out targets; metrics are means over evaluation rows"


def _unique_targets(targets: Sequences) -> Sequences:
    """Drop repeated target items within a row (a ranked list holds each item once)."""
    rows = np.repeat(np.arange(len(targets)), targets.lengths)
    order = np.lexsort((targets.items, rows))
    r, it = rows[order], targets.items[order]
    keep = np.ones(len(it), dtype=bool)
    keep[1:] = (r[1:] != r[:-1]) | (it[1:] != it[:-1])
    return Sequences.from_lengths(np.bincount(r[keep], minlength=len(targets)), it[keep])


def target_ranks(top_ids: np.ndarray, targets: Sequences) -> np.ndarray:
    """0-based position of each target in its row of `top_ids` (batch, k); -1 when absent."""
    rows = np.repeat(np.arange(len(targets)), targets.lengths)
    match = top_ids[rows] == targets.items[:, None]
    return np.where(match.any(axis=1), match.argmax(axis=1), -1)


def evaluate(model: Any, evalset: EvalSet, ks: tuple[int, ...] = (5, 10, 20), batch_size: int = 1024,
             exclude_history: bool = False, train: Sequences | None = None, progress: bool = False,
             name: str | None = None, item_chunk: int | None = None, world: World | None = None) -> EvalResult:
    """Evaluate `model.recommend` on `evalset` with full ranking; see semrec.evaluation.metrics for definitions.

    exclude_history: mask each row's history items before ranking (off by default, as in the published
    tables; recorded in the result). train: training sequences, used for target-popularity breakdowns.
    item_chunk: catalogue items scored at once (dot-product models; see `ScoringRecommender.recommend`).
    world: evaluate as one of several torch.distributed processes: each scores its part of the rows and all
    get the gathered result, identical to a single process's.
    """
    world = world or SINGLE
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise ConfigError(f"ks must be positive cut-offs, got {ks}")
    n_items = int(model.n_items)
    if ks[-1] > n_items:
        raise ConfigError(f"K={ks[-1]} exceeds the catalogue size {n_items}")
    if item_chunk is not None and not hasattr(model, "score_factors"):
        raise ConfigError(f"{type(model).__name__} cannot score the catalogue in chunks (item_chunk); leave it unset")
    n = len(evalset)
    if n == 0:
        raise DataError("the evaluation set has no rows", fix="check the split (users need >= 3 interactions)")
    targets = _unique_targets(evalset.targets)
    if (targets.lengths == 0).any():
        row = int(np.flatnonzero(targets.lengths == 0)[0])
        raise DataError(f"evaluation row {row} (user {evalset.users[row]}) has no target item",
                        fix="drop rows without targets from the split")
    if targets.items.size and (targets.items.min() < 0 or targets.items.max() >= n_items):
        raise DataError(f"target item index out of range [0, {n_items})", fix="the split and model disagree on n_items")

    ranks = np.full(len(targets.items), -2, dtype=np.int32)  # -2: scored by another rank (see merge_max)
    covered = np.zeros((len(ks), n_items), dtype=bool)
    t0 = time.perf_counter()
    # score rows in order of history length: models that pad a batch to its longest history (SASRec, ...)
    # then work on short batches; results are put back in row order
    order = np.argsort(evalset.histories.lengths, kind="stable")[my_part(n, world)]
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc=f"evaluate {name or ''}".strip(), unit="batch", disable=not progress or not world.is_main,
                      leave=False):
        rows = order[start:start + batch_size]
        hist = evalset.histories.select(rows)
        # models with per-user parameters (graph CF) also get the rows' user indices
        options = {"users": evalset.users[rows]} if getattr(model, "uses_users", False) else {}
        if item_chunk is not None:
            options["item_chunk"] = item_chunk
        top, _ = model.recommend(hist, k=ks[-1], exclude=hist if exclude_history else None, **options)
        top = np.asarray(top)
        if top.shape != (len(rows), ks[-1]):
            raise ConfigError(f"{type(model).__name__}.recommend returned shape {top.shape}; "
                              f"expected ({len(rows)}, {ks[-1]})")
        tg = targets.select(rows)
        flat = np.repeat(targets.offsets[rows] - tg.offsets[:-1], tg.lengths) + np.arange(len(tg.items))
        ranks[flat] = target_ranks(top, tg)
        for j, k in enumerate(ks):
            listed = top[:, :k].ravel()
            covered[j, listed[listed >= 0]] = True  # -1 pads lists of models that return fewer than k items
    ranks, covered = merge_max(ranks, world), merge_max(covered, world)
    eval_s = time.perf_counter() - t0

    metrics = {m: float(row_metric(m, ranks, targets.offsets, ks[-1]).mean()) for m in metric_names(ks)}
    metrics |= {f"coverage@{k}": float(covered[j].mean()) for j, k in enumerate(ks)}
    popularity = None
    if train is not None:
        counts = np.bincount(train.items, minlength=n_items)
        popularity = counts[targets.items[targets.offsets[:-1]]]
    settings = {"protocol": PROTOCOL, "exclude_history": bool(exclude_history), "ks": list(ks),
                "cutoff": ks[-1], "n_items": n_items, "rows": n, "targets": int(len(targets.items)),
                "model": getattr(model, "name", type(model).__name__), "batch_size": batch_size,
                "eval_s": round(eval_s, 4), "split": name, "world_size": world.size}
    return EvalResult(metrics=metrics, ks=ks, users=np.asarray(evalset.users), target_offsets=targets.offsets,
                      ranks=ranks, history_lengths=evalset.histories.lengths, target_popularity=popularity,
                      settings=settings)
