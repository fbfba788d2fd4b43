"""RQ-KMeans: residual k-means per level. Level l clusters what levels < l left unexplained, so a code
is coarse-to-fine and items sharing a prefix are close. Optional balanced assignment caps code sizes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from semrec.semantic_ids.kmeans import kmeans, nearest, sq_distances
from semrec.semantic_ids.tokenizer import Tokenizer, register


@dataclass
class RQKMeansConfig:
    n_levels: int = 3
    codebook_size: int = 256
    n_iter: int = 20  # Lloyd iterations per level
    max_points_per_centroid: int | None = 256  # fit each level on a sample of this many points per code
    balanced: bool = False  # cap every code at ceil(n / K * (1 + balance_slack)) items
    balance_slack: float = 0.0
    normalize: bool = False  # L2-normalise inputs first
    collisions: str = "append"  # append (TIGER extra level), reassign, none
    seed: int = 0
    device: str = "cpu"


@register
class RQKMeans(Tokenizer):
    name = "rq-kmeans"
    Config = RQKMeansConfig

    def __init__(self, config: RQKMeansConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.codebooks: torch.Tensor | None = None  # (levels, K, d)

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.config.codebook_size] * self.config.n_levels

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x, dim=-1) if self.config.normalize else x

    def _fit(self, x: torch.Tensor, cf: torch.Tensor | None) -> np.ndarray:
        cfg = self.config
        residual = self._prep(x).clone()
        books, codes = [], []
        for level in tqdm(range(cfg.n_levels), desc="rq-kmeans levels", disable=len(x) < 100_000):
            c, a = kmeans(residual, cfg.codebook_size, n_iter=cfg.n_iter, seed=cfg.seed + level,
                          max_points_per_centroid=cfg.max_points_per_centroid, balanced=cfg.balanced,
                          balance_slack=cfg.balance_slack)
            residual -= c[a]
            books.append(c)
            codes.append(a)
        self.codebooks = torch.stack(books)
        self.fit_stats["residual_norm"] = float(residual.norm(dim=1).mean())
        return torch.stack(codes, dim=1).cpu().numpy()

    def _quantize(self, x: torch.Tensor, need_last: bool) -> tuple[np.ndarray, np.ndarray | None]:
        residual = self._prep(x).clone()
        codes = []
        for level, c in enumerate(self.codebooks):
            if need_last and level == len(self.codebooks) - 1:
                last = sq_distances(residual, c)
                codes.append(last.argmin(1))
                return torch.stack(codes, 1).cpu().numpy(), last.cpu().numpy()
            a = nearest(residual, c)[0]
            residual -= c[a]
            codes.append(a)
        return torch.stack(codes, 1).cpu().numpy(), None

    def _last_distances(self, x: torch.Tensor, raw: torch.Tensor) -> np.ndarray:
        residual = self._prep(x).clone()
        raw = raw.to(residual.device)
        for level in range(len(self.codebooks) - 1):
            residual -= self.codebooks[level][raw[:, level]]
        return sq_distances(residual, self.codebooks[-1]).cpu().numpy()

    def reconstruct(self, codes: np.ndarray) -> np.ndarray:
        """Sum of the codewords of each raw code (the vector the code stands for)."""
        idx = torch.from_numpy(np.asarray(codes)[:, :len(self.codebooks)]).to(self.codebooks.device)
        return sum(self.codebooks[l][idx[:, l]] for l in range(idx.shape[1])).cpu().numpy()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"codebooks": self.codebooks}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.codebooks = state["codebooks"]
