"""RQ-KMeans: residual k-means per level. Level l clusters what levels < l left unexplained, so a code
is coarse-to-fine and items sharing a prefix are close. Optional balanced assignment caps code sizes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from semrec.errors import ConfigError
from semrec.semantic_ids.kmeans import faiss_kmeans, kmeans, nearest, sq_distances
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
    backend: str = "torch"  # torch (any device, balanced) or faiss (CPU, ~2x faster per level, not balanced)
    collisions: str = "append"  # append (TIGER extra level), reassign, none
    seed: int = 0
    device: str = "cpu"


@register
class RQKMeans(Tokenizer):
    name = "rq-kmeans"
    Config = RQKMeansConfig

    def __init__(self, config: RQKMeansConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        if self.config.backend not in ("torch", "faiss"):
            raise ConfigError(f"rq-kmeans: backend={self.config.backend!r} (fix: use 'torch' or 'faiss')")
        if self.config.backend == "faiss" and (self.config.balanced or self.config.device != "cpu"):
            raise ConfigError("rq-kmeans: backend='faiss' runs unbalanced k-means on the CPU only "
                              "(fix: backend='torch' for balanced=True or a GPU device)")
        self.codebooks: torch.Tensor | None = None  # (levels, K, d)
        self._gram = None  # cached (C^T, C C^T, |c|^2) for fast quantisation

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
            if cfg.backend == "faiss":
                c, a = faiss_kmeans(residual, cfg.codebook_size, n_iter=cfg.n_iter, seed=cfg.seed + level,
                                    max_points_per_centroid=cfg.max_points_per_centroid)
            else:
                c, a = kmeans(residual, cfg.codebook_size, n_iter=cfg.n_iter, seed=cfg.seed + level,
                              max_points_per_centroid=cfg.max_points_per_centroid, balanced=cfg.balanced,
                              balance_slack=cfg.balance_slack)
            for s in range(0, len(residual), 65536):  # chunked: no (n, d) temporary
                residual[s:s + 65536] -= c[a[s:s + 65536]]
            books.append(c)
            codes.append(a)
        self.codebooks = torch.stack(books)
        self._gram = None
        self.fit_stats["residual_norm"] = float(residual.norm(dim=1).mean())
        return torch.stack(codes, dim=1).cpu().numpy()

    def _quantize(self, x: torch.Tensor, need_last: bool) -> tuple[np.ndarray, np.ndarray | None]:
        if need_last:
            residual = self._prep(x).clone()
            codes = []
            for c in self.codebooks[:-1]:
                a = nearest(residual, c)[0]
                residual -= c[a]
                codes.append(a)
            last = sq_distances(residual, self.codebooks[-1])
            codes.append(last.argmin(1))
            return torch.stack(codes, 1).cpu().numpy(), last.cpu().numpy()
        return self._quantize_gram(self._prep(x)), None

    def _quantize_gram(self, x: torch.Tensor, chunk: int = 16384) -> np.ndarray:
        """Greedy residual quantisation from one GEMM per chunk: r_l . c = x . c - sum_{j<l} c_j . c.

        Scores against all L*K codewords come from x @ C^T at once; each level then subtracts rows of
        the precomputed codeword Gram matrix for the codes already chosen. Same codes as the residual loop.
        """
        L, K, d = self.codebooks.shape
        if self._gram is None:
            flat = self.codebooks.reshape(L * K, d)
            # score(c) = |c|^2 - 2 r.c; folding -2 and |c|^2 into one addmm leaves one gather-add per level
            self._gram = ((-2.0 * flat).T.contiguous(), (self.codebooks ** 2).sum(-1).reshape(1, L * K),
                          2.0 * (flat @ flat.T))
        neg2_t, sq, gram2 = self._gram
        out = torch.empty(len(x), L, dtype=torch.long, device=x.device)
        for s in range(0, len(x), chunk):
            scores = torch.addmm(sq, x[s:s + chunk], neg2_t)  # (b, L*K): |c|^2 - 2 x.c
            for l in range(L):
                sc = scores[:, l * K:(l + 1) * K]
                for j in range(l):
                    sc = sc + gram2[j * K + out[s:s + chunk, j], l * K:(l + 1) * K]
                out[s:s + chunk, l] = sc.argmin(1)
        return out.cpu().numpy()

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
        self._gram = None
