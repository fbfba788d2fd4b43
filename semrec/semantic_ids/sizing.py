"""Codebook sizes that fit the catalogue, and warnings when the fitted codes show they do not.

Measured with RQ-KMeans, 3 levels, on all-MiniLM-L6-v2 text vectors (benchmarks/forge.py --sweep): raw
collisions FALL as the codebook grows (Scientific, 4,344 items: K=16 74%, 64 47%, 256 24%, 1024 12%;
Beauty, 12,101 items: 82%, 37%, 16%), while the deeper levels collapse at every K (level-3 perplexity 12-100
of K). Balanced k-means keeps every level at perplexity ~K and halves collisions (Scientific 3 x 256: 24% ->
13%). So the default is the largest codebook the catalogue can fill (at least `MIN_ITEMS_PER_CODE` items per
level-1 code, at most 256), and the warnings name balanced codes first.
"""

from __future__ import annotations

import math
from typing import Any

MIN_ITEMS_PER_CODE = 16  # level 1 should split the catalogue into groups deeper levels can still split
MAX_DEFAULT = 256  # TIGER's size; larger vocabularies cost the generative model's output layer
COLLISION_WARN = 0.05  # share of raw codes shared by two or more items
PERPLEXITY_WARN = 0.25  # a level whose effective number of codes is below this share of K is collapsed


def default_codebook_size(n_items: int) -> int:
    """Largest power of two with >= MIN_ITEMS_PER_CODE items per code, between 2 and MAX_DEFAULT."""
    if n_items < 2 * MIN_ITEMS_PER_CODE:
        return 2
    return int(min(MAX_DEFAULT, 2 ** math.floor(math.log2(n_items / MIN_ITEMS_PER_CODE))))


def codebook_warnings(diag: dict[str, Any], balanced: bool = False) -> list[str]:
    """Plain-language warnings from `diagnostics()` output: oversized codebook, collapsed levels, collisions."""
    out = []
    n, sizes = diag["n_items"], diag["codebook_sizes"]
    fit = default_codebook_size(n)
    cure = ("--set balanced=true (every code capped: perplexity ~K, about half the collisions)" if not balanced
            else "fewer --levels")
    if sizes and max(sizes) > max(fit, n / MIN_ITEMS_PER_CODE):
        out.append(f"codebook size {max(sizes)} is larger than {n:,} items can fill ({n / max(sizes):.1f} items per "
                   f"level-1 code, fewer than {MIN_ITEMS_PER_CODE}): level 1 becomes an item id and deeper levels "
                   f"pad; fix: --codebook-size {fit}")
    low = [(l, p, k) for l, (p, k) in enumerate(zip(diag["perplexity"], sizes)) if p < PERPLEXITY_WARN * k]
    if low:
        shown = ", ".join(f"level {l + 1} {p:.0f} of {k}" for l, p, k in low)
        out.append(f"collapsed levels (perplexity, the effective number of codes): {shown}; most of these codebooks "
                   f"go unused; fix: {cure}")
    rate = diag["collision_rate_before"]
    if rate > COLLISION_WARN:
        out.append(f"{rate:.1%} raw collisions ({diag['colliding_items_before']:,} items share their full code "
                   f"before the disambiguation level, which then carries no meaning); fix: "
                   + ("" if balanced else "--set balanced=true, ") + "or one more level")
    return out
