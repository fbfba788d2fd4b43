"""`EvalResult`: aggregate metrics plus the rank of every target, so runs can be re-cut and compared.

Saved as a folder: `result.json` (metrics, settings, breakdowns) and `ranks.npz` (per-row arrays, no pickle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semrec.evaluation.metrics import metric_names, row_metric
from semrec.errors import DataError
from semrec.io import atomic_dir, load_npz, read_json, write_json

POPULARITY_EDGES = (1, 5, 20, 100)  # training interactions of the target: 0 | 1-4 | 5-19 | 20-99 | 100+
HISTORY_EDGES = (5, 10, 20, 50)  # history length: <5 | 5-9 | 10-19 | 20-49 | 50+


def bucket_labels(edges: tuple[int, ...], low: int = 0) -> list[str]:
    """Readable labels for integer buckets [low, e0), [e0, e1), ..., [e_last, inf)."""
    bounds = [low, *edges]
    labels = [f"{a}" if b - a == 1 else f"{a}-{b - 1}" for a, b in zip(bounds[:-1], bounds[1:])]
    return labels + [f"{edges[-1]}+"]


@dataclass
class EvalResult:
    """What `evaluate` returns. `ranks[target_offsets[i]:target_offsets[i+1]]` are row i's target ranks
    (0-based position in the model's list; -1 = not in the top `cutoff`)."""

    metrics: dict[str, float]
    ks: tuple[int, ...]
    users: np.ndarray
    target_offsets: np.ndarray
    ranks: np.ndarray
    history_lengths: np.ndarray
    target_popularity: np.ndarray | None = None  # per row: training count of its first target
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def cutoff(self) -> int:
        return max(self.ks)

    def __len__(self) -> int:
        return len(self.users)

    def row_metric(self, name: str) -> np.ndarray:
        """Per-row values of `name` (e.g. 'ndcg@10'), in evaluation-row order: the input of paired tests."""
        return row_metric(name, self.ranks, self.target_offsets, self.cutoff)

    def confidence_interval(self, name: str, level: float = 0.95, n_boot: int = 1000, seed: int = 0
                            ) -> tuple[float, float]:
        """Percentile bootstrap interval of the mean of `name` over rows."""
        from semrec.evaluation.significance import bootstrap_mean_ci

        return bootstrap_mean_ci(self.row_metric(name), level=level, n_boot=n_boot, seed=seed)

    # ------------------------------------------------------------------ breakdowns
    def breakdown(self, by: str = "popularity", edges: tuple[int, ...] | None = None,
                  metrics: list[str] | None = None) -> list[dict[str, Any]]:
        """Mean metrics per bucket of target popularity (training count) or history length.

        Returns one dict per non-empty bucket: {"bucket", "rows", metric: value, ...}.
        """
        if by == "popularity":
            if self.target_popularity is None:
                raise ValueError("no target popularity: pass train=... to evaluate() for popularity breakdowns")
            values, edges = self.target_popularity, edges or POPULARITY_EDGES
        elif by == "history_length":
            values, edges = self.history_lengths, edges or HISTORY_EDGES
        else:
            raise ValueError(f"breakdown by {by!r}: use 'popularity' or 'history_length'")
        bucket = np.searchsorted(np.asarray(edges), values, side="right")
        labels = bucket_labels(tuple(edges))
        names = metrics or [f"{m}@{k}" for k in self.ks for m in ("recall", "ndcg")]
        per_row = {m: self.row_metric(m) for m in names}
        counts = np.bincount(bucket, minlength=len(labels))
        sums = {m: np.bincount(bucket, weights=v, minlength=len(labels)) for m, v in per_row.items()}
        return [{"bucket": labels[b], "rows": int(counts[b]), **{m: float(sums[m][b] / counts[b]) for m in names}}
                for b in range(len(labels)) if counts[b]]

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"metrics": self.metrics, "ks": list(self.ks), "rows": len(self), "settings": self.settings,
                             "breakdowns": {"history_length": self.breakdown("history_length")}}
        if self.target_popularity is not None:
            d["breakdowns"]["popularity"] = self.breakdown("popularity")
        return d

    def save(self, path: str | Path) -> Path:
        """Write `result.json` + `ranks.npz` atomically into folder `path`."""
        with atomic_dir(path, "eval") as tmp:
            write_json(tmp / "result.json", self.to_dict())
            arrays = {"users": self.users, "target_offsets": self.target_offsets, "ranks": self.ranks,
                      "history_lengths": self.history_lengths}
            if self.target_popularity is not None:
                arrays["target_popularity"] = self.target_popularity
            np.savez_compressed(tmp / "ranks.npz", **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "EvalResult":
        path = Path(path)
        fix = "re-run `semrec evaluate` on the run"
        info = read_json(path / "result.json")
        if not isinstance(info.get("metrics"), dict) or not isinstance(info.get("ks"), list):
            raise DataError("expected 'metrics' (mapping) and 'ks' (list)", path=path / "result.json", fix=fix)
        a = load_npz(path / "ranks.npz", ("users", "target_offsets", "ranks", "history_lengths"), "evaluation ranks",
                     fix)
        return cls(metrics=info["metrics"], ks=tuple(info["ks"]), users=a["users"], target_offsets=a["target_offsets"],
                   ranks=a["ranks"], history_lengths=a["history_lengths"], target_popularity=a.get("target_popularity"),
                   settings=info.get("settings", {}))

    def summary(self) -> dict[str, float]:
        """The per-row metrics in table order (without coverage)."""
        return {m: self.metrics[m] for m in metric_names(self.ks) if m in self.metrics}
