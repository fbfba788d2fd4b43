"""Fusion of several vectors per item (text, image, CF, attributes) into one.

- `fuse`: weighted normalised concatenation. Each block is L2-normalised and scaled by sqrt(w / sum w),
  so the fused vector has unit length and its cosine is the weighted mean of the per-source cosines.
- `FusionProjection`: a learned linear map per source into a shared space, trained with a symmetric
  in-batch InfoNCE loss between sources (CLIP-style), so the output keeps what the sources agree on.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from semrec.errors import ConfigError
from semrec.io import atomic_dir
from semrec.models.layers import info_nce


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise unit length; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _check_rows(vectors: Sequence[np.ndarray]) -> int:
    if not vectors:
        raise ConfigError("nothing to fuse: pass at least one (n_items, dim) array")
    n = {len(v) for v in vectors}
    if len(n) != 1:
        raise ConfigError(f"vector sources have different row counts {sorted(n)}; all must be row = item_idx")
    return n.pop()


def fuse(vectors: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """(n_items, sum dims) weighted normalised concatenation."""
    _check_rows(vectors)
    w = np.ones(len(vectors)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(w) != len(vectors) or (w < 0).any() or w.sum() == 0:
        raise ConfigError(f"weights {list(w)} must be one non-negative number per source, not all zero")
    w = np.sqrt(w / w.sum())
    return np.concatenate([l2_normalize(v) * np.float32(wi) for v, wi in zip(vectors, w)], axis=1)


@dataclass
class FusionConfig:
    dim: int = 64
    epochs: int = 50
    batch_size: int = 512
    lr: float = 1e-3
    temperature: float = 0.07
    seed: int = 0
    device: str = "cpu"


class FusionProjection:
    """Learned fusion: `fit(sources)` then `transform(sources)` -> (n_items, dim) unit vectors."""

    def __init__(self, config: FusionConfig | None = None, **overrides: Any):
        self.config = dataclasses.replace(config or FusionConfig(), **overrides)
        self.projections: torch.nn.ModuleList | None = None

    def _build(self, dims: list[int]) -> None:
        # no bias: a missing source (zero vector) projects to zero and so does not move the fused vector
        self.projections = torch.nn.ModuleList([torch.nn.Linear(d, self.config.dim, bias=False) for d in dims])

    def fit(self, vectors: Sequence[np.ndarray]) -> "FusionProjection":
        n = _check_rows(vectors)
        if len(vectors) < 2:
            raise ConfigError("a learned fusion needs at least two sources (e.g. text and cf)")
        cfg = self.config
        g = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self._build([v.shape[1] for v in vectors])
        self.projections.to(cfg.device)
        xs = [torch.from_numpy(l2_normalize(v)).to(cfg.device) for v in vectors]
        opt = torch.optim.Adam(self.projections.parameters(), lr=cfg.lr)
        for _ in range(cfg.epochs):
            perm = torch.randperm(n, generator=g).to(cfg.device)
            for start in range(0, n, cfg.batch_size):
                idx = perm[start:start + cfg.batch_size]
                z = [p(x[idx]) for p, x in zip(self.projections, xs)]
                loss = z[0].new_zeros(())
                for i in range(len(z)):
                    for j in range(i + 1, len(z)):
                        loss = loss + info_nce(z[i], z[j], cfg.temperature)
                opt.zero_grad()
                loss.backward()
                opt.step()
        return self

    @torch.no_grad()
    def project(self, vectors: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each source's unit-length projection into the shared space (zero rows stay zero)."""
        if self.projections is None:
            raise ConfigError("FusionProjection is not fitted (fix: call fit first or load a saved one)")
        _check_rows(vectors)
        if len(vectors) != len(self.projections):
            raise ConfigError(f"fitted on {len(self.projections)} sources, got {len(vectors)}")
        dev = self.config.device
        return [F.normalize(p(torch.from_numpy(l2_normalize(v)).to(dev)), dim=-1).cpu().numpy()
                for p, v in zip(self.projections, vectors)]

    def transform(self, vectors: Sequence[np.ndarray]) -> np.ndarray:
        """(n_items, dim) unit vectors: the normalised sum of the sources' projections."""
        return l2_normalize(sum(self.project(vectors)))

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        with atomic_dir(path, "fusion") as tmp:
            dims = [p.in_features for p in self.projections]
            (tmp / "config.json").write_text(json.dumps({"kind": "fusion-projection", "in_dims": dims,
                                                         "config": dataclasses.asdict(self.config)}, indent=2))
            save_file({k: v.contiguous() for k, v in self.projections.state_dict().items()},
                      str(tmp / "model.safetensors"))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "FusionProjection":
        from safetensors.torch import load_file

        from semrec.io import read_json

        info = read_json(Path(path) / "config.json")
        obj = cls(FusionConfig(**info["config"]))
        obj._build(info["in_dims"])
        obj.projections.load_state_dict(load_file(str(Path(path) / "model.safetensors")))
        obj.projections.to(obj.config.device)
        return obj
