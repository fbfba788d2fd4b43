"""Attribute vectors: item attribute ids (e.g. S3-Rec `*_item2attributes.json`) -> multi-hot -> TF-IDF
-> truncated SVD (LSA). Dense, L2-normalised, comparable by cosine; rare attributes weigh more."""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from semrec.errors import ConfigError


def attribute_matrix(attribute_ids: pl.Series | list) -> sp.csr_matrix:
    """Sparse multi-hot (n_items, n_attributes) from one list of attribute ids per item (nulls = none)."""
    s = pl.Series(attribute_ids) if not isinstance(attribute_ids, pl.Series) else attribute_ids
    s = s.fill_null(pl.lit([], dtype=s.dtype))
    lengths = s.list.len().to_numpy()
    cols = s.explode().drop_nulls().cast(pl.Int64).to_numpy()
    rows = np.repeat(np.arange(len(s)), lengths)
    if len(cols) != len(rows):  # nulls inside lists
        raise ConfigError("attribute lists contain null ids")
    _, cols = np.unique(cols, return_inverse=True)
    m = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(s), int(cols.max(initial=-1)) + 1))
    m.sum_duplicates()
    m.data[:] = 1.0  # an attribute listed twice still counts once
    return m


def attribute_vectors(attribute_ids: pl.Series | list, dim: int = 64, seed: int = 0) -> np.ndarray:
    """(n_items, dim) float32 LSA vectors; items without attributes get the zero vector."""
    m = attribute_matrix(attribute_ids)
    n, a = m.shape
    if a == 0:
        raise ConfigError("no attributes found (fix: check the attribute column / item2attributes file)")
    df = np.asarray((m > 0).sum(axis=0)).ravel()
    idf = np.log((1 + n) / (1 + df)) + 1.0  # smoothed idf, as scikit-learn
    x = m.multiply(idf[None, :]).tocsr()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    x = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ x
    k = min(dim, min(n, a) - 1)
    if k < 1:
        raise ConfigError(f"too few items/attributes ({n} x {a}) for an SVD")
    rng = np.random.default_rng(seed)
    u, s, _ = svds(x.astype(np.float64), k=k, v0=rng.standard_normal(min(n, a)))
    order = np.argsort(-s)
    z = (u[:, order] * s[order]).astype(np.float32)
    z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    z[norms == 0] = 0.0
    if k < dim:
        z = np.pad(z, ((0, 0), (0, dim - k)))
    # fix the sign of each component (SVD sign is arbitrary) so output is deterministic
    signs = np.sign(z[np.abs(z).argmax(axis=0), np.arange(z.shape[1])])
    return z * np.where(signs == 0, 1, signs)[None, :]
