"""MostPop: recommend the items with the most training interactions, the same list for everyone.

The floor every personalised model must clear; ties are broken by the lower item index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from semrec.data.sequences import Sequences
from semrec.data.splits import EvalSet
from semrec.models.base import ScoringRecommender, register


@dataclass
class MostPopConfig:
    recent: int = 0  # count only each user's last `recent` training items (0 = all)


@register
class MostPop(ScoringRecommender):
    name = "mostpop"
    Config = MostPopConfig

    def __init__(self, n_items: int, config: MostPopConfig | None = None, **overrides):
        super().__init__(n_items, config, **overrides)
        self.counts = torch.zeros(n_items, dtype=torch.float64)

    def fit(self, train: Sequences, valid: EvalSet | None = None) -> "MostPop":
        seqs = train.truncate(self.config.recent) if self.config.recent else train
        counts = np.bincount(seqs.items, minlength=self.n_items).astype(np.float64)
        # deterministic tie-break: equal counts rank by item index (float64 keeps the epsilon < 1 exact)
        self.counts = torch.from_numpy(counts - np.arange(self.n_items) / (2.0 * self.n_items))
        return self

    def score(self, histories: Sequences) -> torch.Tensor:
        return self.counts.unsqueeze(0).expand(len(histories), -1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.counts = state["counts"].double().cpu()
