"""Item-vector indexes for maximum-inner-product retrieval: exact (batched matmul + top-k) and approximate
(faiss IVF-Flat and HNSW), saved as folders so a served model can load one without rebuilding.

```
INDEX/index.json          kind, metric, dim, size, parameters, model and dataset provenance
INDEX/ids.parquet         item_idx, item_id of every row (row = item_idx for exported models)
INDEX/vectors.safetensors exact: the item vectors        INDEX/index.faiss  ivf/hnsw: faiss's own binary format
```
Scores are inner products (the model's own scores for dot-product models); `metric="cosine"` normalises both sides.
HNSW answers inner-product queries through the standard reduction to Euclidean search (Bachrach et al. 2014: one
extra item coordinate that equalises norms, 0 for queries), which keeps its graph navigable for unnormalised vectors.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from semrec.data.sequences import Sequences
from semrec.errors import ConfigError, DataError
from semrec.io import atomic_dir, read_json, write_json

INDEX_KINDS = ("exact", "ivf", "hnsw")


@dataclass
class IndexConfig:
    """`nlist` 0: 4 * sqrt(n) lists (faiss guidance); `nprobe` lists scanned per query; HNSW graph degree `m`,
    build beam `ef_construction`, search beam `ef_search`. `threads` 0 leaves faiss's own setting."""

    kind: str = "exact"
    metric: str = "ip"  # ip | cosine
    nlist: int = 0
    nprobe: int = 16
    train_points: int = 256  # IVF k-means is trained on at most this many points per list
    m: int = 32
    ef_construction: int = 80
    ef_search: int = 64
    batch_size: int = 1024  # exact: queries per matmul
    threads: int = 0
    seed: int = 0
    max_norm: float = 0.0  # hnsw + ip: set by build; items get an extra coordinate sqrt(max_norm^2 - |x|^2)

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ConfigError(f"index kind {self.kind!r} is not one of {', '.join(INDEX_KINDS)}")
        if self.metric not in ("ip", "cosine"):
            raise ConfigError(f"index metric {self.metric!r} is not 'ip' or 'cosine'")
        if min(self.nprobe, self.m, self.ef_construction, self.ef_search, self.batch_size, self.train_points) < 1:
            raise ConfigError("index: nprobe, m, ef_construction, ef_search, batch_size, train_points must be >= 1")


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class VectorIndex:
    """Build with `VectorIndex.build(vectors, config)`, query with `search(queries, k, exclude)`."""

    def __init__(self, config: IndexConfig, vectors: np.ndarray | None, faiss_index: Any, ids: np.ndarray,
                 info: dict[str, Any] | None = None):
        self.config, self.vectors, self.faiss_index, self.ids = config, vectors, faiss_index, ids
        self.info = dict(info or {})

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        if self.vectors is not None:
            return int(self.vectors.shape[1])
        return int(self.faiss_index.d) - (1 if self.config.kind == "hnsw" else 0)

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, vectors: np.ndarray, config: IndexConfig | None = None, ids: np.ndarray | None = None,
              **info: Any) -> "VectorIndex":
        """Index `vectors` (row = item_idx); `ids` are external item ids (default: the row numbers)."""
        cfg = config or IndexConfig()
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if x.ndim != 2 or not len(x):
            raise DataError(f"index needs a non-empty (n, d) matrix, got shape {x.shape}")
        if cfg.metric == "cosine":
            x = _normalize(x)
        ids = np.arange(len(x)).astype(str) if ids is None else np.asarray(ids).astype(str)
        if len(ids) != len(x):
            raise DataError(f"{len(ids)} ids for {len(x)} vectors")
        if cfg.kind == "exact":
            return cls(cfg, x, None, ids, info)
        faiss = _faiss(cfg)
        if cfg.kind == "ivf":
            nlist = cfg.nlist or max(1, int(4 * math.sqrt(len(x))))
            nlist = min(nlist, len(x))
            quantizer = faiss.IndexFlatIP(x.shape[1])
            index = faiss.IndexIVFFlat(quantizer, x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(cfg.seed)
            sample = x[rng.choice(len(x), min(len(x), nlist * cfg.train_points), replace=False)]
            index.cp.seed = cfg.seed
            index.train(sample)
            index.add(x)
            index.nprobe = min(cfg.nprobe, nlist)
            cfg = IndexConfig(**{**asdict(cfg), "nlist": nlist})
        else:
            norms = np.linalg.norm(x, axis=1)
            cfg = IndexConfig(**{**asdict(cfg), "max_norm": float(norms.max())})
            x = np.concatenate([x, np.sqrt(np.maximum(cfg.max_norm ** 2 - norms ** 2, 0))[:, None]], 1)
            index = faiss.IndexHNSWFlat(x.shape[1], cfg.m, faiss.METRIC_L2)
            index.hnsw.efConstruction = cfg.ef_construction
            index.add(np.ascontiguousarray(x, dtype=np.float32))
            index.hnsw.efSearch = cfg.ef_search
        return cls(cfg, None, index, ids, info)

    # ------------------------------------------------------------------ search
    def search(self, queries: np.ndarray, k: int = 10, exclude: Sequences | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k row numbers (= item_idx) and scores per query, best first; rows in `exclude[i]` are skipped.
        Approximate indexes may return fewer than k rows (padded with -1 / -inf)."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise DataError(f"queries have shape {q.shape}; this index holds {self.dim}-d vectors",
                            fix="embed users with the model the index was built from")
        if exclude is not None and len(exclude) != len(q):
            raise ConfigError(f"exclude has {len(exclude)} rows but there are {len(q)} queries")
        if self.config.metric == "cosine":
            q = _normalize(q)
        k = min(int(k), self.size)
        if self.vectors is not None:
            return self._exact(q, k, exclude)
        extra = int(exclude.lengths.max(initial=0)) if exclude is not None else 0
        _faiss(self.config)
        if self.config.kind == "hnsw":  # Euclidean search on (q, 0): score = (|q|^2 + max_norm^2 - dist^2) / 2
            qa = np.ascontiguousarray(np.concatenate([q, np.zeros((len(q), 1), np.float32)], 1))
            dist, rows = self.faiss_index.search(qa, min(k + extra, self.size))
            scores = ((q ** 2).sum(1, keepdims=True) + self.config.max_norm ** 2 - dist) / 2
        else:
            scores, rows = self.faiss_index.search(q, min(k + extra, self.size))
        scores = np.where(rows < 0, -np.inf, scores).astype(np.float32)
        if exclude is not None and extra:
            keys = np.repeat(np.arange(len(q)), exclude.lengths) * (self.size + 1) + exclude.items
            hit = np.isin(np.arange(len(q))[:, None] * (self.size + 1) + rows, keys) & (rows >= 0)
            scores = np.where(hit, -np.inf, scores)
            order = np.argsort(-scores, axis=1, kind="stable")
            rows, scores = np.take_along_axis(rows, order, 1), np.take_along_axis(scores, order, 1)
            rows = np.where(np.isfinite(scores), rows, -1)
        return rows[:, :k].astype(np.int64), scores[:, :k]

    def _exact(self, q: np.ndarray, k: int, exclude: Sequences | None) -> tuple[np.ndarray, np.ndarray]:
        table = torch.from_numpy(self.vectors)
        ids, vals = np.empty((len(q), k), np.int64), np.empty((len(q), k), np.float32)
        bs = self.config.batch_size
        for s in range(0, len(q), bs):
            scores = torch.from_numpy(q[s:s + bs]) @ table.T
            if exclude is not None:
                ex = exclude.select(np.arange(s, min(s + bs, len(q))))
                r = torch.from_numpy(np.repeat(np.arange(len(ex)), ex.lengths))
                scores = scores.index_put((r, torch.from_numpy(ex.items)), torch.tensor(-math.inf))
            top = torch.topk(scores, k, dim=1)
            ids[s:s + bs], vals[s:s + bs] = top.indices.numpy(), top.values.numpy()
        return ids, vals

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the index folder atomically (kind marker `index`)."""
        with atomic_dir(path, "index", overwrite=overwrite) as tmp:
            write_json(tmp / "index.json", {"config": asdict(self.config), "dim": self.dim, "size": self.size,
                                            **self.info})
            pl.DataFrame({"item_idx": np.arange(self.size, dtype=np.int64), "item_id": self.ids}).write_parquet(
                tmp / "ids.parquet")
            if self.vectors is not None:
                from safetensors.numpy import save_file

                save_file({"vectors": self.vectors}, str(tmp / "vectors.safetensors"))
            else:
                _faiss(self.config).write_index(self.faiss_index, str(tmp / "index.faiss"))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "VectorIndex":
        path = Path(path)
        info = read_json(path / "index.json")
        cfg = IndexConfig(**info.pop("config"))
        for key in ("dim", "size"):
            info.pop(key, None)
        ids = pl.read_parquet(path / "ids.parquet")["item_id"].to_numpy().astype(str)
        if cfg.kind == "exact":
            from safetensors.numpy import load_file

            return cls(cfg, load_file(str(path / "vectors.safetensors"))["vectors"], None, ids, info)
        faiss = _faiss(cfg)
        index = faiss.read_index(str(path / "index.faiss"))
        if cfg.kind == "ivf":
            index.nprobe = cfg.nprobe
        else:
            index.hnsw.efSearch = cfg.ef_search
        return cls(cfg, None, index, ids, info)


def _faiss(cfg: IndexConfig) -> Any:
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        raise ConfigError("approximate indexes need faiss (fix: pip install faiss-cpu, or use --kind exact)") from None
    if cfg.threads:
        faiss.omp_set_num_threads(cfg.threads)
    return faiss


def recall_overlap(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean |approx top-k ∩ exact top-k| / k over queries: how much of the exact answer an ANN index keeps."""
    k = exact.shape[1]
    hits = (approx[:, :, None] == exact[:, None, :]).any(-1).sum(1)
    return float(hits.mean() / k)
