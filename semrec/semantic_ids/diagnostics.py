"""Code-table diagnostics: the numbers that reveal collapse, collisions and meaningless codes.

- utilisation: fraction of each level's codebook used by at least one item;
- entropy / perplexity of each level's code distribution (perplexity = exp(entropy), the effective
  number of codes; equal to K when usage is perfectly uniform);
- collision rate: 1 - distinct codes / items (of the raw codes, before resolution);
- largest group: most items sharing one prefix of each length;
- coherence: mean cosine similarity of item pairs sharing a prefix of each length, against the mean
  over all pairs ("random"). Computed exactly from group sums, with no sampling:
  sum over pairs in a group of v_i . v_j = (|sum v|^2 - sum |v|^2) / 2 for unit vectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from semrec.semantic_ids.collisions import collision_rate, group_ids


def level_usage(codes: np.ndarray, codebook_sizes: list[int]) -> dict[str, list[float]]:
    """Per level: utilisation, entropy (nats), perplexity and the largest code's share of items."""
    util, ent, ppl, top = [], [], [], []
    for l, k in enumerate(codebook_sizes):
        counts = np.bincount(codes[:, l], minlength=k)
        p = counts[counts > 0] / len(codes)
        h = float(-(p * np.log(p)).sum())
        util.append(float((counts > 0).sum() / k))
        ent.append(h)
        ppl.append(float(np.exp(h)))
        top.append(float(counts.max() / len(codes)))
    return {"utilization": util, "entropy": ent, "perplexity": ppl, "largest_code_share": top}


def prefix_groups(codes: np.ndarray) -> list[np.ndarray]:
    """For each prefix length 1..L, the size of every prefix group."""
    return [group_ids(codes[:, :l])[1] for l in range(1, codes.shape[1] + 1)]


def coherence(vectors: np.ndarray, codes: np.ndarray) -> dict[str, Any]:
    """Mean pairwise cosine of items sharing each prefix length, and over all pairs (the random baseline)."""
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    norms2 = (v * v).sum(1)
    n = len(v)
    total = v.sum(0)
    random = float(((total @ total) - norms2.sum()) / max(n * (n - 1), 1))
    per_level = []
    for l in range(1, codes.shape[1] + 1):
        gid, counts = group_ids(codes[:, :l])
        sums = np.zeros((len(counts), v.shape[1]))
        np.add.at(sums, gid, v)
        self_sq = np.bincount(gid, weights=norms2, minlength=len(counts))
        pair_dot = ((sums * sums).sum(1) - self_sq)  # = 2 x sum over unordered pairs
        n_pairs = (counts * (counts - 1)).sum()
        per_level.append(float(pair_dot.sum() / n_pairs) if n_pairs else float("nan"))
    return {"coherence_per_level": per_level, "coherence_random": random}


def diagnostics(raw_codes: np.ndarray, final_codes: np.ndarray, codebook_sizes: list[int],
                vectors: np.ndarray | None = None) -> dict[str, Any]:
    """All diagnostics as one JSON-ready dict (see module docstring)."""
    raw = np.asarray(raw_codes, dtype=np.int64)
    out: dict[str, Any] = {"n_items": int(len(raw)), "n_levels": int(raw.shape[1]),
                           "codebook_sizes": list(map(int, codebook_sizes))}
    out.update(level_usage(raw, codebook_sizes))
    groups = prefix_groups(raw)
    out["largest_group_per_prefix"] = [int(g.max()) for g in groups]
    out["mean_group_per_prefix"] = [float(g.mean()) for g in groups]
    out["collision_rate_before"] = collision_rate(raw)
    out["colliding_items_before"] = int((groups[-1][group_ids(raw)[0]] > 1).sum())
    out["collision_rate_final"] = collision_rate(final_codes)
    out["final_levels"] = int(np.asarray(final_codes).shape[1])
    out["disambiguation_size"] = (int(np.asarray(final_codes)[:, -1].max()) + 1
                                  if np.asarray(final_codes).shape[1] > raw.shape[1] else 0)
    if vectors is not None:
        coh = coherence(vectors, raw)
        out.update(coh)
        out["coherence"] = coh["coherence_per_level"][0]
    return out
