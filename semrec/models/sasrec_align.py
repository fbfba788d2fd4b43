"""SASRec whose item table also learns the items' text: PRORec's stage 1, cross-modality knowledge alignment
(Progressive Collaborative and Semantic Knowledge Fusion for Generative Recommendation, 2025), sized for a CPU.

PRORec observes that concatenating text and collaborative vectors before quantising them lets the text dominate
the codes ("semantic domination"). Its first stage therefore moves semantic knowledge INTO the collaborative
embeddings while they are trained: here SASRec `ce`'s next-item loss plus a symmetric in-batch InfoNCE term that
pulls each batch item's ID vector toward a learned projection of its (frozen) text vector. The resulting item
table (`item_embeddings()`) is a collaborative space that agrees with the text where the data allow; semantic
IDs are built from it (benchmarks/generative.py `--codes text+aligned`), and the trained model is the
collaborative teacher of stage 2 (`tiger-prorec`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from semrec.errors import ConfigError
from semrec.models.base import register
from semrec.models.layers import PAD, info_nce
from semrec.models.sasrec import SASRec, SASRecConfig, SASRecModule
from semrec.models.text.item_vectors import ItemTextSource


@dataclass
class TextAlignedSASRecConfig(SASRecConfig, ItemTextSource):
    """SASRec `ce` (dropout 0.3, as benchmarked here) plus the alignment term; text vectors come from
    `vectors_path` or `dataset` (encoded and cached), or `vectors=` from Python."""

    loss: str = "ce"
    dropout: float = 0.3
    align_weight: float = 0.1  # weight of the ID-text InfoNCE term beside the next-item loss
    align_temperature: float = 0.07

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.align_weight < 0 or self.align_temperature <= 0:
            raise ConfigError("sasrec-align: align_weight must be >= 0 and align_temperature > 0")


class TextAlignedSASRecModule(SASRecModule):
    """SASRec's network plus a text projection; the text table is a non-persistent buffer (training input only,
    so a saved model holds no copy of the catalogue's text vectors)."""

    def __init__(self, n_items: int, cfg: TextAlignedSASRecConfig, d_text: int):
        super().__init__(n_items, cfg)
        self.text_proj = nn.Linear(d_text, cfg.hidden)
        self.register_buffer("text", torch.zeros(n_items, d_text), persistent=False)


@register
class TextAlignedSASRec(SASRec):
    """SASRec `ce` with its ID table aligned to the items' text vectors (PRORec stage 1)."""

    name = "sasrec-align"
    Config = TextAlignedSASRecConfig

    def __init__(self, n_items: int, config: TextAlignedSASRecConfig | None = None,
                 vectors: np.ndarray | None = None, **overrides: Any):
        super().__init__(n_items, config, **overrides)
        self._vectors = None if vectors is None else np.ascontiguousarray(vectors, dtype=np.float32)
        self._d_text: int | None = None if vectors is None else int(vectors.shape[1])

    def _load_vectors(self) -> np.ndarray:
        return self.config.item_vectors(self.n_items, device=self.train_config.device)

    def build_module(self) -> nn.Module:
        if self._d_text is None:  # not when loading: the projection's size is in the saved extra state
            self._vectors = self._load_vectors()
            self._d_text = int(self._vectors.shape[1])
        net = TextAlignedSASRecModule(self.n_items, self.config, self._d_text)
        if self._vectors is not None:
            with torch.no_grad():
                net.text.copy_(torch.from_numpy(self._vectors))
        return net

    def extra_state(self) -> dict[str, Any]:
        return {"d_text": self._d_text}

    @classmethod
    def from_extra(cls, n_items: int, config: Any, extra: dict[str, Any], device: str = "cpu") -> TextAlignedSASRec:
        model = cls(n_items, config)
        model._d_text = int(extra["d_text"])
        return model.build(device)

    def fit(self, train, valid=None) -> TextAlignedSASRec:
        if self.module is not None and self._vectors is None and self.config.align_weight:  # a loaded model
            self._vectors = self._load_vectors()
            self.module.text.copy_(torch.from_numpy(self._vectors))
        return super().fit(train, valid)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = super().loss(batch)
        if not self.config.align_weight:
            return loss
        net = self.module
        tokens = torch.unique(torch.cat([batch["inputs"].flatten(), batch["targets"].flatten()]))
        tokens = tokens[tokens != PAD]  # distinct items: no hidden positives among the in-batch negatives
        return loss + self.config.align_weight * info_nce(net.item_emb(tokens), net.text_proj(net.text[tokens - 1]),
                                                         self.config.align_temperature)


__all__ = ["TextAlignedSASRec", "TextAlignedSASRecConfig"]
