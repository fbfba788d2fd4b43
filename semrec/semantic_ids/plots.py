"""PNG plots of a code table: code usage per level and the distribution of items per prefix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from semrec.io import atomic_path
from semrec.semantic_ids.diagnostics import prefix_groups


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_code_usage(codes: np.ndarray, codebook_sizes: list[int], path: str | Path) -> Path:
    """One panel per level: items per code, codes sorted by count (a flat line means no collapse)."""
    plt = _pyplot()
    L = len(codebook_sizes)
    fig, axes = plt.subplots(1, L, figsize=(4 * L, 3), squeeze=False)
    for l, (ax, k) in enumerate(zip(axes[0], codebook_sizes)):
        counts = np.sort(np.bincount(codes[:, l], minlength=k))[::-1]
        ax.bar(np.arange(k), counts, width=1.0)
        ax.axhline(len(codes) / k, color="k", lw=0.8, ls="--", label="uniform")
        ax.set_title(f"level {l + 1}: {int((counts > 0).sum())}/{k} codes used")
        ax.set_xlabel("code (sorted by count)")
        ax.set_ylabel("items")
    axes[0][0].legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_prefix_sizes(codes: np.ndarray, path: str | Path) -> Path:
    """Histogram of items per prefix for each prefix length (log-scaled counts)."""
    plt = _pyplot()
    groups = prefix_groups(codes)
    fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3), squeeze=False)
    for l, (ax, g) in enumerate(zip(axes[0], groups)):
        ax.hist(g, bins=min(50, max(int(g.max()), 1)), log=True)
        ax.set_title(f"prefix length {l + 1}: max {int(g.max())} items")
        ax.set_xlabel("items per prefix")
        ax.set_ylabel("prefixes")
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
