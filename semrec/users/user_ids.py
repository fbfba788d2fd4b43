"""User semantic IDs (ULMRec-style user indices): quantise user vectors with the same tokenizers that build
item codes (RQ-KMeans, RQ-VAE), so a user becomes a short hierarchical code; users sharing a prefix form
a behavioural segment, and new users get a code without refitting (`Tokenizer.encode`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from semrec.errors import ConfigError
from semrec.semantic_ids import TOKENIZERS, Tokenizer


def fit_user_ids(vectors: np.ndarray, user_ids: list[str] | None = None, method: str = "rq-kmeans",
                 **options: Any) -> Tokenizer:
    """A tokenizer fitted on user vectors (rows = users); `tok.codes[i]` is user i's collision-free code and
    `tok.item_ids` holds the user ids (the tokenizer is item-agnostic: its 'items' are users here)."""
    if method not in TOKENIZERS:
        raise ConfigError(f"unknown tokenizer {method!r}; choose one of {', '.join(sorted(TOKENIZERS))}")
    tok = TOKENIZERS[method](**options)
    return tok.fit(np.ascontiguousarray(vectors, dtype=np.float32), item_ids=user_ids)


def segments(codes: np.ndarray, depth: int = 1) -> dict[tuple[int, ...], np.ndarray]:
    """User rows grouped by their first `depth` code levels (coarse segments), largest first."""
    prefix = np.ascontiguousarray(codes[:, :depth])
    uniq, inverse, counts = np.unique(prefix, axis=0, return_inverse=True, return_counts=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    groups = np.split(order, np.cumsum(counts)[:-1])
    ranked = np.argsort(-counts, kind="stable")
    return {tuple(int(c) for c in uniq[g]): groups[g] for g in ranked}
