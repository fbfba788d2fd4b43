"""User and item vectors out of any model with the `UserVectors` interface, written as Parquet with external ids.

`users.parquet`: `user_idx`, `user_id`, `vector` (float32 list); `items.parquet`: `item_idx`, `item_id`, `vector`.
The file's Parquet metadata holds `semrec_kind` (`user-vectors` / `item-vectors`), the model name, the dimension
and `dot_product`, so a later command can check it reads the right file and refuse to overwrite foreign files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from semrec.data.sequences import Sequences
from semrec.errors import ConfigError, DataError
from semrec.io import atomic_path, check_output
from semrec.users.pooling import pooled_user_vectors

USER_KIND, ITEM_KIND = "user-vectors", "item-vectors"


def supports_vectors(model: Any) -> bool:
    """True when `model` has both `embed_users` and `item_embeddings` (SASRec, GRU4Rec, BERT4Rec, tiger-hier,
    text models...); the check is duck-typed so models from any sub-package qualify."""
    return callable(getattr(model, "embed_users", None)) and callable(getattr(model, "item_embeddings", None))


def _require(model: Any) -> None:
    if not supports_vectors(model):
        raise ConfigError(f"model {getattr(model, 'name', type(model).__name__)!r} has no user vectors (fix: use a "
                          "model with embed_users() and item_embeddings(), e.g. sasrec, gru4rec, bert4rec, user-text)")


def user_vectors(model: Any, histories: Sequences, instruction: str | None = None, pool: str = "last",
                 source: str = "model", reference: Sequences | None = None) -> np.ndarray:
    """(n, d) float32 user vectors; `instruction` is passed on to instruction-aware models and refused by others.

    `pool="last"` (default): the model's own state, so `user @ items.T` is its score. `mean` / `idf-mean`: the
    (idf-weighted) mean of the model's item vectors (`source="model"`) or text vectors (`source="text"`) over the
    whole history, for probing, segmentation and look-alikes, not retrieval (see semrec.users.pooling)."""
    _require(model)
    if pool != "last":
        if instruction is not None:
            raise ConfigError(f"an instruction conditions the model's own state, not a pooled vector (fix: drop "
                              f"--instruction or use --pool last, not {pool!r})")
        vecs = pooled_user_vectors(model, histories, pool, source, reference)
    elif source != "model":
        raise ConfigError(f"pool source {source!r} needs a pooled vector (fix: --pool mean or idf-mean)")
    elif instruction is not None:
        if not getattr(model, "instruction_aware", False):
            raise ConfigError(f"model {model.name!r} does not take an instruction (fix: drop --instruction or use an "
                              "instruction-aware model, e.g. user-text with instructions enabled)")
        vecs = model.embed_users(histories, instruction=instruction)
    else:
        vecs = model.embed_users(histories)
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    if vecs.ndim != 2 or len(vecs) != len(histories):
        raise DataError(f"{model.name}.embed_users returned shape {vecs.shape} for {len(histories)} histories")
    return vecs


def item_vectors(model: Any) -> np.ndarray:
    """(n_items, d) float32 item vectors of `model` (row = item_idx)."""
    _require(model)
    vecs = np.ascontiguousarray(model.item_embeddings(), dtype=np.float32)
    if vecs.ndim != 2 or len(vecs) != model.n_items:
        raise DataError(f"{model.name}.item_embeddings returned shape {vecs.shape} for {model.n_items} items")
    return vecs


@dataclass
class VectorTable:
    """Rows of vectors with their dense index and external id; `kind` is USER_KIND or ITEM_KIND."""

    kind: str
    idx: np.ndarray
    ids: np.ndarray
    vectors: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return "user" if self.kind == USER_KIND else "item"

    def row_of(self, external_ids: list[str]) -> np.ndarray:
        """Row numbers of external ids; a DataError names the first unknown one."""
        lookup = dict(zip(self.ids.astype(str).tolist(), range(len(self.ids))))
        missing = [i for i in external_ids if str(i) not in lookup]
        if missing:
            raise DataError(f"unknown {self.key} id(s) {missing[:5]}", field=f"{self.key}_id",
                            fix=f"use ids from the {self.key}_id column ({len(self.ids):,} rows, e.g. {self.ids[0]!r})")
        return np.asarray([lookup[str(i)] for i in external_ids], dtype=np.int64)

    def to_frame(self) -> pl.DataFrame:
        d = self.vectors.shape[1]
        return pl.DataFrame({f"{self.key}_idx": self.idx.astype(np.int64), f"{self.key}_id": self.ids.astype(str),
                             "vector": pl.Series(self.vectors).cast(pl.Array(pl.Float32, d))})

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write Parquet atomically; an existing file is replaced only if it is a vector file of the same kind."""
        path = Path(path)
        check_output(path, self.kind, overwrite, is_file=True, file_kind=file_kind(path))
        meta = {"semrec_kind": self.kind, "dim": str(self.vectors.shape[1]),
                **{k: json.dumps(v) for k, v in self.meta.items()}}
        with atomic_path(path) as tmp:
            self.to_frame().write_parquet(tmp, metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path, kind: str | None = None) -> "VectorTable":
        path = Path(path)
        found = file_kind(path)
        if found not in (USER_KIND, ITEM_KIND) or (kind is not None and found != kind):
            raise DataError(f"not a semrec {kind or 'vector'} file (kind {found!r})", path=path,
                            fix="pass a file written by `semrec users embed` / `semrec items embed`")
        meta = pl.read_parquet_metadata(path)
        df = pl.read_parquet(path)
        key = "user" if found == USER_KIND else "item"
        vecs = df["vector"].to_numpy().astype(np.float32, copy=False).reshape(df.height, -1)
        extra = {k: json.loads(v) for k, v in meta.items() if k not in ("semrec_kind", "dim", "ARROW:schema")}
        return cls(found, df[f"{key}_idx"].to_numpy(), df[f"{key}_id"].to_numpy(), np.ascontiguousarray(vecs), extra)


def file_kind(path: str | Path) -> str | None:
    """`semrec_kind` from a Parquet file's metadata, or None (missing, not Parquet, or not semrec's)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return pl.read_parquet_metadata(path).get("semrec_kind")
    except Exception:  # not a Parquet file at all: a foreign file, which check_output refuses
        return None


def export_users(model: Any, histories: Sequences, user_idx: np.ndarray, user_ids: np.ndarray,
                 path: str | Path | None = None, instruction: str | None = None, overwrite: bool = False,
                 pool: str = "last", source: str = "model", reference: Sequences | None = None,
                 **meta: Any) -> VectorTable:
    """User vectors with ids as a VectorTable; written to `path` when given (check the path before calling).
    Pooled vectors (`pool` mean / idf-mean) are marked `dot_product: false`: they are not the model's scores."""
    vecs = user_vectors(model, histories, instruction, pool, source, reference)
    dot = bool(getattr(model, "dot_product", False)) and pool == "last"
    table = VectorTable(USER_KIND, np.asarray(user_idx), np.asarray(user_ids).astype(str), vecs,
                        {"model": model.name, "dot_product": dot, "instruction": instruction, "pool": pool,
                         "pool_source": source, **meta})
    if path is not None:
        table.save(path, overwrite=overwrite)
    return table


def export_items(model: Any, item_ids: np.ndarray, path: str | Path | None = None, overwrite: bool = False,
                 **meta: Any) -> VectorTable:
    """Item vectors with ids as a VectorTable; written to `path` when given."""
    vecs = item_vectors(model)
    if len(item_ids) != len(vecs):
        raise DataError(f"{len(item_ids)} item ids for {len(vecs)} item vectors",
                        fix="pass the dataset the model was trained on (--data)")
    table = VectorTable(ITEM_KIND, np.arange(len(vecs)), np.asarray(item_ids).astype(str), vecs,
                        {"model": model.name, "dot_product": bool(getattr(model, "dot_product", False)), **meta})
    if path is not None:
        table.save(path, overwrite=overwrite)
    return table
