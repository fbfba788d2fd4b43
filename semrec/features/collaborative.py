"""Collaborative (CF) item vectors: the item table of a trained recommender, or of a saved run folder,
or — when no model is trained yet — an SPPMI co-occurrence factorisation of the training sequences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from semrec.data.sequences import Sequences
from semrec.errors import ConfigError, DataError
from semrec.io import read_json


def model_item_vectors(model) -> np.ndarray:
    """`model.item_embeddings()` of a fitted `Recommender` as (n_items, d) float32, row = item_idx."""
    fn = getattr(model, "item_embeddings", None)
    if fn is None:
        raise ConfigError(f"model {type(model).__name__} has no item_embeddings() (fix: use a model with an "
                          "item table, e.g. sasrec, or `cooccurrence_vectors`)")
    try:
        vecs = fn()
    except NotImplementedError as e:
        raise ConfigError(f"{type(model).__name__}: {e}") from None
    vecs = vecs.detach().float().cpu().numpy() if hasattr(vecs, "detach") else np.asarray(vecs, np.float32)
    if vecs.shape[0] != model.n_items:
        raise DataError(f"item_embeddings() returned {vecs.shape[0]} rows for {model.n_items} items")
    return vecs.astype(np.float32, copy=False)


def run_item_vectors(run_dir: str | Path, key: str | None = None, pad_row: int | None = None) -> np.ndarray:
    """The item table from `run_dir/model.safetensors` (+ `config.json` for n_items), row = item_idx.

    With no `key`, the 2-d tensor named like `*item*emb*` with n_items or n_items + 1 rows is used. A table
    with one extra row has a padding row: `pad_row` names it; otherwise an all-zero first/last row is taken.
    """
    from safetensors.numpy import load_file

    run_dir = Path(run_dir)
    info = read_json(run_dir / "config.json")
    n = int(info.get("n_items", 0))
    weights = run_dir / "model.safetensors"
    if not weights.exists():
        raise DataError("no model.safetensors in run folder", path=run_dir, fix="train and save a model first")
    state = load_file(str(weights))
    if key is None:
        cands = [k for k, v in state.items() if v.ndim == 2 and v.shape[0] in (n, n + 1)]
        named = [k for k in cands if "item" in k.lower() and "emb" in k.lower()]
        pick = named or cands
        if len(pick) != 1:
            raise DataError(f"cannot tell which tensor is the item table among {pick or list(state)}",
                            path=weights, fix="pass key=<tensor name>")
        key = pick[0]
    if key not in state:
        raise DataError(f"no tensor {key!r}; available: {sorted(state)}", path=weights, field=key)
    table = state[key].astype(np.float32)
    if table.shape[0] == n + 1:
        if pad_row is None:
            zero = ~table.any(axis=1)
            pad_row = 0 if zero[0] else (n if zero[-1] else None)
            if pad_row is None:
                raise DataError(f"{key} has {n + 1} rows for {n} items and no all-zero padding row",
                                path=weights, field=key, fix="pass pad_row=0 or pad_row=-1")
        table = np.delete(table, pad_row % (n + 1), axis=0)
    elif table.shape[0] != n:
        raise DataError(f"{key} has {table.shape[0]} rows for {n} items", path=weights, field=key)
    return table


def cooccurrence_vectors(sequences: Sequences, n_items: int, dim: int = 64, window: int = 5,
                         shift: float = 1.0, seed: int = 0) -> np.ndarray:
    """(n_items, dim) SPPMI-SVD vectors (Levy & Goldberg 2014; W + C) from items co-occurring within `window` steps.

    A training-free CF signal: items bought in the same sessions get similar vectors. Items never seen
    get the zero vector. Pass only training sequences to avoid leaking test targets.
    """
    items = sequences.items
    user = np.repeat(np.arange(len(sequences)), sequences.lengths)
    rows, cols = [], []
    for d in range(1, window + 1):  # loop over offsets, not items: each step is one vectorised shift
        same = user[d:] == user[:-d]
        rows.append(items[:-d][same])
        cols.append(items[d:][same])
    r, c = np.concatenate(rows), np.concatenate(cols)
    counts = sp.coo_matrix((np.ones(len(r) * 2, np.float64), (np.r_[r, c], np.r_[c, r])),
                           shape=(n_items, n_items)).tocsr()
    counts.sum_duplicates()
    total = counts.sum()
    if total == 0:
        raise DataError("no co-occurring item pairs (all sequences shorter than 2)")
    marg = np.asarray(counts.sum(axis=1)).ravel()
    coo = counts.tocoo()
    pmi = np.log(coo.data * total / (marg[coo.row] * marg[coo.col])) - np.log(shift)
    keep = pmi > 0
    m = sp.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=(n_items, n_items))
    k = min(dim, n_items - 2)
    rng = np.random.default_rng(seed)
    u, s, vt = svds(m, k=k, v0=rng.standard_normal(n_items))
    order = np.argsort(-s)
    # word + context vectors (W + C): for the symmetric PMI matrix this keeps the positive-eigenvalue
    # directions, so two items always bought together get the same vector
    z = ((u[:, order] + vt[order].T) * np.sqrt(s[order])).astype(np.float32)
    signs = np.sign(z[np.abs(z).argmax(axis=0), np.arange(k)])
    z *= np.where(signs == 0, 1, signs)[None, :]
    if k < dim:
        z = np.pad(z, ((0, 0), (0, dim - k)))
    return z
