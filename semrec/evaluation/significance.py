"""Paired comparison of two evaluations of the same rows: delta, bootstrap CI, t-test and Wilcoxon p-values."""

from __future__ import annotations

from typing import Any

import numpy as np

from semrec.errors import ConfigError
from semrec.evaluation.metrics import metric_names
from semrec.evaluation.result import EvalResult


def bootstrap_mean_ci(values: np.ndarray, level: float = 0.95, n_boot: int = 1000, seed: int = 0,
                      chunk: int = 100) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(values), resampling rows with replacement (vectorised in chunks)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for s in range(0, n_boot, chunk):
        m = min(chunk, n_boot - s)
        idx = rng.integers(0, n, size=(m, n), dtype=np.int32)
        means[s:s + m] = values[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def paired_tests(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Two-sided p-values for H0 'same mean' (paired t-test) and 'symmetric differences' (Wilcoxon signed-rank).

    Identical inputs give p = 1.0 (no evidence of a difference) rather than NaN.
    """
    from scipy import stats

    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    if not np.any(d):
        return {"p_ttest": 1.0, "p_wilcoxon": 1.0}
    p_t = float(stats.ttest_rel(b, a).pvalue) if np.std(d) > 0 else 0.0
    p_w = float(stats.wilcoxon(d, zero_method="wilcox").pvalue)
    return {"p_ttest": p_t, "p_wilcoxon": p_w}


def compare(a: EvalResult, b: EvalResult, metrics: list[str] | None = None, level: float = 0.95,
            n_boot: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """One row per metric: a, b, delta = b - a, relative delta, bootstrap CI of the delta, paired p-values.

    Both results must cover the same evaluation rows (same users in the same order, same targets).
    """
    if len(a) != len(b) or not np.array_equal(a.users, b.users):
        raise ConfigError("the two results evaluate different rows (users differ); compare runs on the same split")
    if not np.array_equal(a.target_offsets, b.target_offsets):
        raise ConfigError("the two results have different targets per row; compare runs on the same split")
    if a.settings.get("exclude_history") != b.settings.get("exclude_history"):
        raise ConfigError("one result excludes history items and the other does not; evaluate both the same way")
    ks = tuple(sorted(set(a.ks) & set(b.ks)))
    if not ks:
        raise ConfigError(f"no common cut-off K between the results ({a.ks} vs {b.ks})")
    names = list(metrics or metric_names(ks))
    if a.cutoff != b.cutoff:  # 'mrr' is MRR@cutoff: compare both at the common cut-off instead
        names = list(dict.fromkeys(f"mrr@{max(ks)}" if m == "mrr" else m for m in names))
    rows = []
    for name in names:
        va, vb = a.row_metric(name), b.row_metric(name)
        d = vb - va
        lo, hi = bootstrap_mean_ci(d, level=level, n_boot=n_boot, seed=seed)
        ma, mb = float(va.mean()), float(vb.mean())
        rows.append({"metric": name, "a": ma, "b": mb, "delta": mb - ma,
                     "rel_delta": (mb - ma) / ma if ma else float("nan"), "ci_low": lo, "ci_high": hi,
                     "level": level, **paired_tests(va, vb), "rows": len(va)})
    return rows
