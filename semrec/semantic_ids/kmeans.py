"""Vectorised k-means in torch (k-means++ init, Lloyd iterations, chunked distances, any device) and a
capacitated assignment used for balanced codebooks and collision re-assignment.

Fitting follows faiss: centroids are learned on at most `max_points_per_centroid * k` sampled points,
then every point is assigned in chunks, so 1M x 384-d vectors fit in seconds per level on a CPU.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from semrec.errors import ConfigError


def sq_distances(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """(n, k) squared Euclidean distances via one matmul (clamped at 0 against rounding)."""
    return ((x * x).sum(1, keepdim=True) - 2.0 * (x @ c.T) + (c * c).sum(1)[None, :]).clamp_min_(0.0)


def nearest(x: torch.Tensor, c: torch.Tensor, chunk: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """Index and squared distance of the nearest centroid for each row, computed in row chunks.

    Per chunk one fused `addmm` (|c|^2 - 2 x c^T); |x|^2 is added only to the minimum. Chunks of 16k
    rows keep temporaries small enough to be reused rather than mapped afresh by the allocator.
    """
    idx = torch.empty(len(x), dtype=torch.long, device=x.device)
    dist = torch.empty(len(x), dtype=x.dtype, device=x.device)
    c2 = (c * c).sum(1)[None, :]
    ct = c.T.contiguous()
    for s in range(0, len(x), chunk):
        xb = x[s:s + chunk]
        best, idx[s:s + chunk] = torch.addmm(c2, xb, ct, alpha=-2.0).min(1)
        dist[s:s + chunk] = best + torch.linalg.vector_norm(xb, dim=1).square()
    return idx, dist.clamp_min_(0.0)


def kmeans_plusplus(x: torch.Tensor, k: int, generator: torch.Generator, max_points: int = 64) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) on at most `max_points * k` of the rows."""
    if len(x) > max_points * k:
        x = x[torch.randperm(len(x), generator=generator)[:max_points * k].to(x.device)]
    n = len(x)
    x2 = torch.linalg.vector_norm(x, dim=1).square()
    first = torch.randint(n, (1,), generator=generator).item()
    centres = [first]
    d = (x2 - 2.0 * (x @ x[first]) + x2[first]).clamp_min(0.0)
    for _ in range(1, k):
        total = d.sum()
        if total <= 0:  # fewer distinct points than k: reuse random points
            i = torch.randint(n, (1,), generator=generator).item()
        else:
            i = torch.multinomial((d / total).cpu(), 1, generator=generator).item()
        centres.append(i)
        d = torch.minimum(d, (x2 - 2.0 * (x @ x[i]) + x2[i]).clamp_min(0.0))
    return x[centres].clone()


class CentroidDistances:
    """Squared distances from rows of `x` to centroids `c`, computed only for the rows asked for.

    Has `shape` and `[rows]` like an (n, k) array, so `capacitated_assign` takes it in place of one and never
    holds more than a chunk of rows x k distances (1M x 256 would be 1 GB in float32, 2 GB in float64).
    """

    def __init__(self, x: torch.Tensor, c: torch.Tensor):
        self.x, self.c = x, c
        self.shape = (len(x), len(c))
        self.dtype = np.dtype(str(x.dtype).removeprefix("torch."))

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        return sq_distances(self.x[torch.as_tensor(rows, device=self.x.device)], self.c).cpu().numpy()


def _shortlist(d: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The m smallest columns of each row of `d` sorted by (distance, column), and the (m+1)-th smallest
    distance: a lower bound on every column left out."""
    if m >= d.shape[1]:
        cols = np.broadcast_to(np.arange(d.shape[1]), d.shape)
        bound = np.full(len(d), np.inf)
    else:
        part = np.argpartition(d, m, axis=1)
        bound = np.take_along_axis(d, part[:, m:m + 1], 1)[:, 0].astype(np.float64)
        cols = part[:, :m]
    vals = np.take_along_axis(d, cols, 1)
    order = np.lexsort((cols, vals), axis=1)
    return np.take_along_axis(cols, order, 1), np.take_along_axis(vals, order, 1), bound


def capacitated_assign(dist: np.ndarray | CentroidDistances, capacity: np.ndarray | int,
                       groups: np.ndarray | None = None, n_groups: int | None = None, candidates: int = 8,
                       chunk: int = 4096) -> np.ndarray:
    """Assign each row to a column so no (group, column) bin exceeds its capacity; near-greedy by distance.

    Rounds of proposals: every unassigned row proposes its nearest non-full bin, each bin keeps its
    closest proposers up to its remaining capacity. Each round fills at least one bin, so it ends; each
    round is vectorised. Ties go to the lower row index, so the result is deterministic.

    `dist` is an (n, k) array or anything with `shape` and `[rows]` (e.g. `CentroidDistances`); it is read
    `chunk` rows at a time. Each row keeps a shortlist of its `candidates` nearest open bins and a bound on
    the rest; a row whose proposal the shortlist cannot prove is re-read and re-listed. Bins only fill up,
    so proposals are exactly those of the full (n, k) argmin: the memory is O(n * candidates).
    """
    n, k = dist.shape
    groups = np.zeros(n, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    g = int(n_groups if n_groups is not None else (groups.max(initial=-1) + 1))
    cap = np.asarray(capacity, dtype=np.int64)
    remaining = (np.full((g, k), int(cap)) if cap.ndim == 0 else np.tile(cap, (g, 1)) if cap.ndim == 1
                 else cap.copy())
    flat = remaining.reshape(-1)  # a view: updates below change `remaining`
    m = max(1, min(candidates, k))
    cand = np.empty((n, m), dtype=np.int32 if k < 2**31 else np.int64)
    cand_d = np.empty((n, m), dtype=np.result_type(getattr(dist, "dtype", np.float64), np.float32))
    bound = np.empty(n, dtype=np.float64)

    def relist(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Re-read `rows`, shortlist their open bins; return their exact proposals (column, distance)."""
        prop, pd = np.empty(len(rows), np.int64), np.empty(len(rows), np.float64)
        for s in range(0, len(rows), chunk):
            r = rows[s:s + chunk]
            d = np.where(remaining[groups[r]] > 0, dist[r], np.inf)
            prop[s:s + chunk] = d.argmin(1)
            pd[s:s + chunk] = d[np.arange(len(r)), prop[s:s + chunk]]
            cand[r], cand_d[r], bound[r] = _shortlist(d, m)
        return prop, pd

    assign = np.full(n, -1, dtype=np.int64)
    todo = np.arange(n)
    prop, pd = relist(todo)
    while todo.size:
        if np.isinf(pd).any():
            raise ConfigError(f"no capacity left for {int(np.isinf(pd).sum())} item(s): total capacity is below "
                              "the number of items (fix: raise the codebook size or the balance slack)")
        bins = groups[todo] * k + prop
        order = np.lexsort((np.arange(len(todo)), pd, bins))
        sb = bins[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sb)) + 1]
        rank = np.arange(len(sb)) - np.repeat(starts, np.diff(np.r_[starts, len(sb)]))
        ok = rank < flat[sb]
        won = order[ok]
        assign[todo[won]] = prop[won]
        np.subtract.at(flat, sb[ok], 1)
        todo = np.sort(todo[order[~ok]])
        if not todo.size:
            break
        # next proposals from the shortlists (sorted, so the first open entry is the lowest-index nearest);
        # a proposal is exact when it is strictly closer than every bin left off the list
        prop, pd = np.empty(len(todo), np.int64), np.empty(len(todo), np.float64)
        for s in range(0, len(todo), chunk):
            t = todo[s:s + chunk]
            c = cand[t]
            v = np.where(flat[groups[t, None] * k + c] > 0, cand_d[t], np.inf)
            first = v.argmin(1)
            pd[s:s + chunk] = v[np.arange(len(t)), first]
            prop[s:s + chunk] = c[np.arange(len(t)), first]
        stale = ~(pd < bound[todo])
        if stale.any():
            prop[stale], pd[stale] = relist(todo[stale])
    return assign


def _update(sample: torch.Tensor, c: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """New centroids as cluster means; empty clusters re-seeded at the points farthest from their centroid."""
    k = len(c)
    counts = torch.bincount(a, minlength=k).to(sample.dtype)
    new = torch.zeros_like(c).index_add_(0, a, sample) / counts.clamp_min(1)[:, None]
    empty = counts == 0
    if empty.any():  # distances to the assigned centroids in row chunks: no (n, d) temporaries
        d = torch.cat([((sample[s:s + 16384] - c[a[s:s + 16384]]) ** 2).sum(1) for s in range(0, len(a), 16384)])
        new[empty] = sample[torch.topk(d, int(empty.sum())).indices]
    return new


def faiss_kmeans(x: torch.Tensor, k: int, n_iter: int = 20, seed: int = 0,
                 max_points_per_centroid: int | None = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The same contract as `kmeans` (unbalanced) through faiss.Kmeans on the CPU: ~2x faster per level."""
    import faiss

    xn = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
    km = faiss.Kmeans(xn.shape[1], k, niter=n_iter, seed=seed,
                      max_points_per_centroid=max_points_per_centroid or max(len(xn) // k, 1))
    km.train(xn)
    _, idx = km.index.search(xn, 1)
    return torch.from_numpy(km.centroids).to(x.device), torch.from_numpy(idx[:, 0].astype(np.int64)).to(x.device)


def kmeans(x: torch.Tensor, k: int, n_iter: int = 20, seed: int = 0, max_points_per_centroid: int | None = 256,
           balanced: bool = False, balance_slack: float = 0.0, balanced_iters: int = 5, chunk: int = 16384
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroids (k, d) and the assignment (n,) of every row of `x`.

    With `balanced`, Lloyd runs as usual, then `balanced_iters` iterations with capacitated assignment
    refine the centroids, and the returned assignment gives no centroid more than
    ceil(n / k * (1 + balance_slack)) rows.
    """
    n = len(x)
    if n < k:
        raise ConfigError(f"k-means with k={k} needs at least k points, got {n} (fix: lower the codebook size)")
    g = torch.Generator().manual_seed(seed)
    if max_points_per_centroid and n > max_points_per_centroid * k:
        sample = x[torch.randperm(n, generator=g)[:max_points_per_centroid * k].to(x.device)]
    else:
        sample = x
    c = kmeans_plusplus(sample, k, g)
    for _ in range(n_iter):
        new = _update(sample, c, nearest(sample, c, chunk)[0])
        shift = (new - c).pow(2).sum()
        c = new
        if shift <= 1e-10 * (c * c).sum():
            break
    if not balanced:
        return c, nearest(x, c, chunk)[0]
    cap = math.ceil(len(sample) / k * (1.0 + balance_slack))
    for _ in range(balanced_iters):
        a = torch.from_numpy(capacitated_assign(CentroidDistances(sample, c), cap)).to(x.device)
        c = _update(sample, c, a)
    cap_all = math.ceil(n / k * (1.0 + balance_slack))
    del sample  # its memory is free again for the assignment of all rows
    return c, torch.from_numpy(capacitated_assign(CentroidDistances(x, c), cap_all)).to(x.device)
