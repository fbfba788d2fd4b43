"""PQ-KMeans: product quantisation into long identifiers of independent digits (RPG / SETRec-style codes).

The item vector is centred, rotated onto its principal axes, and the axes are shared out among `n_levels`
sub-spaces by eigenvalue allocation (each sub-space gets about the same product of variances, the
non-parametric OPQ initialisation of Ge et al. 2013), so every digit carries a similar share of the
information; each sub-space is then clustered by k-means on its own. Digits are independent (no prefix
order), which is what a model that predicts all digits of the next item at once needs. With 16-32 digits of
256 codes, collisions only occur between identical vectors; `collisions="reassign"` moves those to the
nearest free code of the last digit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from semrec.errors import ConfigError
from semrec.semantic_ids.kmeans import kmeans, nearest, sq_distances
from semrec.semantic_ids.tokenizer import Tokenizer, register


@dataclass
class PQKMeansConfig:
    n_levels: int = 32  # digits of every identifier = sub-spaces (named like rq-kmeans levels for `semrec ids fit --levels`)
    codebook_size: int = 256
    n_iter: int = 20  # Lloyd iterations per sub-space
    max_points_per_centroid: int | None = 256
    balanced: bool = False  # cap every code's size in each sub-space
    rotate: bool = True  # PCA rotation + eigenvalue allocation (False: consecutive slices of the raw dims)
    normalize: bool = False  # L2-normalise inputs first
    collisions: str = "reassign"  # reassign (last digit), append (extra digit), none
    seed: int = 0
    device: str = "cpu"


def eigen_allocation(eigvals: np.ndarray, n_parts: int) -> np.ndarray:
    """Sub-space of each (descending) principal axis: greedy, each axis to the non-full part with the smallest
    sum of log-variances, so the parts' variance products stay balanced. Returns (d,) part ids."""
    d = len(eigvals)
    cap = math.ceil(d / n_parts)
    load, size = np.zeros(n_parts), np.zeros(n_parts, dtype=np.int64)
    part = np.empty(d, dtype=np.int64)
    logs = np.log(np.maximum(eigvals, 1e-12))
    for i in range(d):  # d <= a few thousand axes, not items
        free = np.flatnonzero(size < cap)
        j = free[np.argmin(load[free])] if logs[i] > -27 else free[np.argmin(size[free])]
        part[i], load[j], size[j] = j, load[j] + logs[i], size[j] + 1
    return part


@register
class PQKMeans(Tokenizer):
    """`n_levels` independent k-means codebooks over (rotated) sub-spaces of the item vector."""

    name = "pq-kmeans"
    Config = PQKMeansConfig

    def __init__(self, config: PQKMeansConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        if self.config.n_levels < 1 or self.config.codebook_size < 2:
            raise ConfigError("pq-kmeans: n_levels must be >= 1 and codebook_size >= 2")
        self.mean: torch.Tensor | None = None  # (d,)
        self.proj: torch.Tensor | None = None  # (d, n_digits * sub_dim): rotation, zero-padded sub-spaces
        self.codebooks: torch.Tensor | None = None  # (n_digits, K, sub_dim)

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.config.codebook_size] * self.config.n_levels

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.normalize(x, dim=-1) if self.config.normalize else x
        return ((x - self.mean) @ self.proj).view(len(x), self.config.n_levels, -1)

    def _fit(self, x: torch.Tensor, cf: torch.Tensor | None) -> np.ndarray:
        cfg = self.config
        if cfg.n_levels > x.shape[1]:
            raise ConfigError(f"pq-kmeans: {cfg.n_levels} digits for {x.shape[1]}-d vectors "
                              "(fix: n_levels <= the vector dimension)")
        x = torch.nn.functional.normalize(x, dim=-1) if cfg.normalize else x
        self.mean = x.mean(0)
        d, m = x.shape[1], cfg.n_levels
        sub = math.ceil(d / m)
        if cfg.rotate:
            xc = (x - self.mean).double()
            vals, vecs = torch.linalg.eigh(xc.T @ xc / max(len(x) - 1, 1))
            vals, vecs = vals.flip(0).cpu().numpy(), vecs.flip(1).float()
            part = eigen_allocation(vals, m)
        else:
            vecs, part = torch.eye(d, device=x.device), np.arange(d) // sub
        proj = torch.zeros(d, m * sub, device=x.device)
        slot = np.zeros(m, dtype=np.int64)
        for axis, j in enumerate(part):  # place axis `axis` in sub-space j (unused slots stay zero)
            proj[:, j * sub + slot[j]] = vecs[:, axis]
            slot[j] += 1
        self.proj = proj
        z = self._prep(x)  # (n, n_digits, sub_dim); re-normalising a unit vector changes nothing
        books, codes = [], []
        for j in range(m):  # one k-means per digit
            c, a = kmeans(z[:, j].contiguous(), cfg.codebook_size, n_iter=cfg.n_iter, seed=cfg.seed + j,
                          max_points_per_centroid=cfg.max_points_per_centroid, balanced=cfg.balanced)
            books.append(c)
            codes.append(a)
        self.codebooks = torch.stack(books)
        err = sum(float((z[:, j] - self.codebooks[j][codes[j]]).pow(2).sum(1).mean()) for j in range(m))
        self.fit_stats["quantization_error"] = err
        self.fit_stats["variance"] = float((z ** 2).sum((1, 2)).mean())
        return torch.stack(codes, dim=1).cpu().numpy()

    def _quantize(self, x: torch.Tensor, need_last: bool) -> tuple[np.ndarray, np.ndarray | None]:
        z = self._prep(x)
        codes = torch.stack([nearest(z[:, j].contiguous(), self.codebooks[j])[0]
                             for j in range(self.config.n_levels)], 1)
        last = sq_distances(z[:, -1].contiguous(), self.codebooks[-1]).cpu().numpy() if need_last else None
        return codes.cpu().numpy(), last

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "proj": self.proj, "codebooks": self.codebooks}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        dev = self.config.device
        self.mean, self.proj = state["mean"].to(dev), state["proj"].to(dev)
        self.codebooks = state["codebooks"].to(dev)
