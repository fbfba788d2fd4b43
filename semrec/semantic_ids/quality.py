"""Identifier quality before training a recommender (FORGE-style): cheap numbers meant to rank code tables
the way a generative model trained on them would.

- uniformity: each level's entropy / log K (1 = every code equally used; FORGE and LETTER both find that
  skewed code usage hurts);
- CF coherence: `diagnostics.coherence` on collaborative vectors (SPPMI-SVD of the training sequences), i.e.
  do items sharing a prefix co-occur in users' histories, against random pairs;
- transitions: over consecutive training pairs (a -> b), how often b shares a's prefix of each length
  (`transition_same_prefix`, against the chance rate from the codes' frequencies: `transition_lift`), and
  how well a's prefix predicts b's by majority vote (`transition_purity`) — a model that must generate b's
  prefix from a history ending in a has an easier first step when these are high.

`benchmarks/forge.py` measures their rank correlation with test NDCG@10 across the tables run here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from semrec.data.sequences import Sequences
from semrec.semantic_ids.collisions import group_ids


def level_uniformity(codes: np.ndarray, codebook_sizes: list[int]) -> list[float]:
    """Per level: entropy of the code distribution divided by log K (0 when K = 1)."""
    out = []
    for l, k in enumerate(codebook_sizes):
        p = np.bincount(codes[:, l], minlength=k)
        p = p[p > 0] / len(codes)
        out.append(float(-(p * np.log(p)).sum() / np.log(k)) if k > 1 else 0.0)
    return out


def transition_pairs(train: Sequences) -> tuple[np.ndarray, np.ndarray]:
    """(source, next) item of every consecutive pair inside each training sequence."""
    items = np.asarray(train.items, dtype=np.int64)
    last = np.zeros(len(items), dtype=bool)
    ends = train.offsets[1:][np.diff(train.offsets) > 0] - 1
    last[ends] = True
    src = np.flatnonzero(~last)
    return items[src], items[src + 1]


def transition_metrics(codes: np.ndarray, train: Sequences) -> dict[str, list[float]]:
    """Per prefix length: same-prefix rate of next-item pairs, its chance rate, their ratio, majority purity."""
    codes = np.asarray(codes, dtype=np.int64)
    a, b = transition_pairs(train)
    keep = (a < len(codes)) & (b < len(codes))
    a, b = a[keep], b[keep]
    same, chance, lift, purity = [], [], [], []
    n = max(len(a), 1)
    for l in range(1, codes.shape[1] + 1):
        gid, counts = group_ids(codes[:, :l])
        ga, gb = gid[a], gid[b]
        g = len(counts)
        s = float((ga == gb).sum() / n)
        c = float((np.bincount(ga, minlength=g) / n) @ (np.bincount(gb, minlength=g) / n))
        keys, pair_counts = np.unique(ga * g + gb, return_counts=True)
        pair_src = keys // g
        best = np.zeros(g, dtype=np.int64)
        np.maximum.at(best, pair_src, pair_counts)
        same.append(s)
        chance.append(c)
        lift.append(s / c if c > 0 else float("nan"))
        purity.append(float(best.sum() / n))
    return {"transition_same_prefix": same, "transition_same_prefix_chance": chance, "transition_lift": lift,
            "transition_purity": purity, "transition_pairs": int(len(a))}


def quality(codes: np.ndarray, codebook_sizes: list[int], train: Sequences | None = None,
            cf_vectors: np.ndarray | None = None) -> dict[str, Any]:
    """The FORGE-style numbers of one raw code table, as a JSON-ready dict (see module docstring)."""
    from semrec.semantic_ids.diagnostics import coherence

    codes = np.asarray(codes, dtype=np.int64)
    uni = level_uniformity(codes, codebook_sizes)
    out: dict[str, Any] = {"uniformity": uni, "mean_uniformity": float(np.mean(uni)) if uni else float("nan")}
    if cf_vectors is not None:
        coh = coherence(cf_vectors, codes)
        out["cf_coherence_per_level"] = coh["coherence_per_level"]
        out["cf_coherence_random"] = coh["coherence_random"]
        out["cf_coherence_lift"] = coh["coherence_per_level"][0] - coh["coherence_random"]
    if train is not None:
        out.update(transition_metrics(codes, train))
    return out
