"""Chunked capacitated assignment (shortlists + bounds) gives exactly the dense (n, k) algorithm's answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semrec.errors import ConfigError
from semrec.semantic_ids import capacitated_assign, kmeans
from semrec.semantic_ids.kmeans import CentroidDistances, sq_distances


def dense_reference(dist: np.ndarray, capacity, groups=None, n_groups=None) -> np.ndarray:
    """The former implementation: every round takes the argmin over the whole (n, k) matrix."""
    dist = np.asarray(dist, dtype=np.float64)
    n, k = dist.shape
    groups = np.zeros(n, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    g = int(n_groups if n_groups is not None else groups.max(initial=-1) + 1)
    cap = np.asarray(capacity, dtype=np.int64)
    remaining = (np.full((g, k), int(cap)) if cap.ndim == 0 else np.tile(cap, (g, 1)) if cap.ndim == 1
                 else cap.copy())
    flat = remaining.reshape(-1)
    assign = np.full(n, -1, dtype=np.int64)
    todo = np.arange(n)
    while todo.size:
        d = np.where(remaining[groups[todo]] > 0, dist[todo], np.inf)
        prop = d.argmin(1)
        pd = d[np.arange(len(todo)), prop]
        assert not np.isinf(pd).any()
        bins = groups[todo] * k + prop
        order = np.lexsort((np.arange(len(todo)), pd, bins))
        sb = bins[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sb)) + 1]
        rank = np.arange(len(sb)) - np.repeat(starts, np.diff(np.r_[starts, len(sb)]))
        ok = rank < flat[sb]
        assign[todo[order[ok]]] = prop[order[ok]]
        np.subtract.at(flat, sb[ok], 1)
        todo = np.sort(todo[order[~ok]])
    return assign


@pytest.mark.parametrize("seed", range(12))
def test_chunked_equals_dense_on_random_problems(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 400)), int(rng.integers(1, 40))
    # integer-valued distances make ties common, including ties across the shortlist boundary
    dist = rng.integers(0, 6, (n, k)).astype(np.float64) if seed % 2 else rng.random((n, k))
    g = int(rng.integers(1, 4))
    groups = rng.integers(0, g, n)
    capacity = rng.integers(0, 4, (g, k))
    need = np.bincount(groups, minlength=g) - capacity.sum(1)
    capacity[:, 0] += np.maximum(need, 0)  # enough room in every group
    want = dense_reference(dist, capacity, groups, g)
    for m, chunk in ((1, 7), (3, 64), (8, 16384), (k + 5, 5)):
        got = capacitated_assign(dist, capacity, groups, g, candidates=m, chunk=chunk)
        np.testing.assert_array_equal(got, want)
    sizes = np.zeros((g, k), np.int64)
    np.add.at(sizes, (groups, want), 1)
    assert (sizes <= capacity).all()


def test_lazy_centroid_distances_match_the_dense_matrix():
    gen = torch.Generator().manual_seed(0)
    x, c = torch.randn(500, 12, generator=gen), torch.randn(20, 12, generator=gen)
    dense = sq_distances(x, c).numpy()
    want = dense_reference(dense, 25)
    lazy = CentroidDistances(x, c)
    assert lazy.shape == (500, 20)
    np.testing.assert_allclose(lazy[np.array([3, 0, 499])], dense[[3, 0, 499]], rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(capacitated_assign(lazy, 25, chunk=64), want)
    assert np.bincount(want, minlength=20).max() == 25


def test_no_capacity_is_an_error_with_a_fix():
    with pytest.raises(ConfigError, match="fix:"):
        capacitated_assign(np.zeros((5, 2)), 2, candidates=1, chunk=2)


def test_balanced_kmeans_caps_every_code_in_float32():
    x = torch.randn(3000, 16, generator=torch.Generator().manual_seed(1))
    c, a = kmeans(x, 64, balanced=True, chunk=500)
    assert c.dtype == torch.float32
    assert np.bincount(a.numpy(), minlength=64).max() == int(np.ceil(3000 / 64))
