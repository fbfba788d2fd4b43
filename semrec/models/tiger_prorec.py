"""PRORec's stage 2, in-modality knowledge distillation (Progressive Collaborative and Semantic Knowledge Fusion
for Generative Recommendation, 2025), on the two-level generative model `tiger-hier`, sized for a CPU.

Stage 1 (`sasrec-align`) puts semantic knowledge into a collaborative model. Stage 2 makes the generative model
itself carry both kinds of knowledge, not only its codes: beside the code-level cross-entropy, the user state at
every position is distilled (a) toward the frozen collaborative teacher's state at the same cell of the same
window (SASRec / sasrec-align read as in their own training, where that state is trained to predict the next
item: what a strong ID model knows about this user) and (b) toward the text vector of the item that comes next
(what the item is). Each is a symmetric in-batch InfoNCE through its own linear projection, so neither
space has to match the student's scale. Decoding, codes and everything after training are tiger-hier's; the
teacher is only read while training and is not saved with the model.

This is our reading of the paper's two stages, not a port of its code: the projections, the InfoNCE form and
the next-item text target are choices made here and recorded in every result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from semrec.data.sequences import Sequences
from semrec.errors import ConfigError
from semrec.models.base import Recommender, register
from semrec.models.layers import info_nce
from semrec.models.teacher import load_teacher, teacher_states
from semrec.models.text.item_vectors import ItemTextSource
from semrec.models.tiger_hier import TigerHier, TigerHierConfig, TigerHierNet
from semrec.models.tiger_layers import item_codes


@dataclass
class TigerProRecConfig(TigerHierConfig, ItemTextSource):
    """tiger-hier plus the two distillation terms. The teacher is a saved sasrec / sasrec-align model folder
    (or `teacher=` from Python); text vectors come from `vectors_path` / `dataset` (or `vectors=`)."""

    teacher_path: str | None = None
    collab_weight: float = 0.1  # state -> teacher state
    semantic_weight: float = 0.1  # state -> next item's text vector
    distill_temperature: float = 0.07

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.collab_weight < 0 or self.semantic_weight < 0 or self.distill_temperature <= 0:
            raise ConfigError("tiger-prorec: collab_weight and semantic_weight must be >= 0, "
                              "distill_temperature > 0")


class TigerProRecNet(TigerHierNet):
    """tiger-hier's network plus the projections of the user state into the teacher's and the text space."""

    def __init__(self, cfg: TigerProRecConfig, vocab_sizes: list[int], n_items: int, d_collab: int, d_text: int):
        super().__init__(cfg, vocab_sizes, n_items)
        self.to_collab = nn.Linear(cfg.d_model, d_collab) if d_collab else None
        self.to_text = nn.Linear(cfg.d_model, d_text) if d_text else None


@register
class TigerProRec(TigerHier):
    """tiger-hier trained with PRORec's in-modality distillation from a collaborative teacher and item text."""

    name = "tiger-prorec"
    Config = TigerProRecConfig

    def __init__(self, n_items: int, config: TigerProRecConfig | None = None, codes: np.ndarray | None = None,
                 codebook_sizes: list[int] | None = None, vectors: np.ndarray | None = None,
                 teacher: Recommender | None = None, **overrides: Any):
        super().__init__(n_items, config, codes, codebook_sizes, **overrides)
        self.teacher = teacher
        self._vectors = None if vectors is None else torch.from_numpy(np.asarray(vectors, dtype=np.float32))
        self._dims: tuple[int, int] | None = None  # (teacher state size, text size); from extra state when loaded

    def _resolve(self) -> tuple[int, int]:
        cfg = self.config
        if cfg.collab_weight:
            self.teacher = load_teacher(self.teacher, cfg.teacher_path, self.n_items, self.name)
        if cfg.semantic_weight and self._vectors is None:
            self._vectors = torch.from_numpy(cfg.item_vectors(self.n_items))
        d_collab = int(self.teacher.config.hidden) if cfg.collab_weight else 0
        return d_collab, int(self._vectors.shape[1]) if cfg.semantic_weight else 0

    def build_module(self) -> nn.Module:
        if self._dims is None:
            self._dims = self._resolve()
        return TigerProRecNet(self.config, self.vocab_sizes, self.n_items, *self._dims)

    def extra_state(self) -> dict[str, Any]:
        return super().extra_state() | {"d_collab": self._dims[0], "d_text": self._dims[1]}

    def restore_extra(self, extra: dict[str, Any]) -> None:
        self._dims = (int(extra["d_collab"]), int(extra["d_text"]))

    def fit(self, train: Sequences, valid=None) -> TigerProRec:
        if self.module is not None:
            self._resolve()  # a loaded model trained further: the teacher and text are not saved with it
        return super().fit(train, valid)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        net, cfg, items = self.module, self.config, batch["items"]
        loss, state, has = net.code_loss(item_codes(self.codes_on(items.device), items), items)
        tau = cfg.distill_temperature
        if cfg.collab_weight:
            teacher = teacher_states(self.teacher, items[:, :-1])[has]
            loss = loss + cfg.collab_weight * info_nce(net.to_collab(state), teacher, tau)
        if cfg.semantic_weight:
            if self._vectors.device != items.device:
                self._vectors = self._vectors.to(items.device)  # once, not at every step
            nxt = items[:, 1:][has]
            loss = loss + cfg.semantic_weight * info_nce(net.to_text(state), self._vectors[nxt], tau, ids=nxt)
        return loss


__all__ = ["TigerProRec", "TigerProRecConfig"]
