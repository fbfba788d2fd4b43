"""The normalised Dataset every reader produces and every later stage consumes.

Three tables (items, users, interactions) with dense integer indices, plus a manifest that
records where the data came from. Saved as Parquet + `manifest.json`; loads back identically.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from semrec.data.sequences import Sequences
from semrec.errors import DataError
from semrec.io import atomic_dir, read_json, write_json

FORMAT_VERSION = 1
INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def source_record(path: str | Path) -> dict[str, Any]:
    """Provenance of one input file, for the manifest."""
    p = Path(path)
    return {"path": str(p), "bytes": p.stat().st_size, "sha256": file_sha256(p)}


def _sort_by_user_time(inter: pl.DataFrame, n_users: int) -> pl.DataFrame:
    """Stable sort by (user_idx, timestamp). Both keys are packed into one UInt64 when they fit (a single-key
    sort is ~20x faster than a two-key one on 20M rows); ties keep the input row order either way."""
    if inter.height == 0:
        return inter
    t = inter["timestamp"]
    t_min, t_max = t.min(), t.max()
    user_bits = max(int(n_users - 1).bit_length(), 1)
    if t_min is None or t.null_count() or int(t_max) - int(t_min) >= 1 << (64 - user_bits):
        return inter.sort(["user_idx", "timestamp"], maintain_order=True)
    key = (pl.col("user_idx").cast(pl.UInt64) * (1 << (64 - user_bits))
           + (pl.col("timestamp") - t_min).cast(pl.UInt64))
    return inter.sort(key, maintain_order=True)


@dataclass
class Dataset:
    """Items, users and chronologically sorted interactions with dense 0-based indices.

    - `items`: `item_idx` (0..n_items-1, row order), `item_id` (external id, str), attribute columns.
    - `users`: `user_idx` (0..n_users-1, row order), `user_id` (str).
    - `interactions`: `user_idx`, `item_idx`, `timestamp` (int64), optional `rating`; sorted by user,
      then time, ties kept in input order.
    """

    items: pl.DataFrame
    users: pl.DataFrame
    interactions: pl.DataFrame
    name: str = "dataset"
    text_fields: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, interactions: pl.DataFrame, items: pl.DataFrame | None = None, *, name: str = "dataset",
              text_fields: list[str] | None = None, meta: dict[str, Any] | None = None,
              users: pl.DataFrame | None = None) -> "Dataset":
        """Index raw tables: `interactions` has user_id, item_id, [timestamp], [rating]; `items` has item_id + attributes.

        Item order: the item table's row order, then items seen only in interactions (first appearance).
        User order: first appearance in `interactions`; with a `users` table (user_id + attributes, e.g.
        MovieLens demographics) its row order first, so users without interactions are kept too.
        Ties in time keep the input row order.
        """
        missing = [c for c in ("user_id", "item_id") if c not in interactions.columns]
        if missing:
            raise DataError(f"interactions lack column(s) {missing}", field=missing[0],
                            fix="map your columns to user_id and item_id")
        inter = interactions.with_columns(pl.col("user_id").cast(pl.Utf8), pl.col("item_id").cast(pl.Utf8))
        if "timestamp" not in inter.columns:
            inter = inter.with_columns(pl.int_range(pl.len()).over("user_id").cast(pl.Int64).alias("timestamp"))
        inter = inter.with_columns(pl.col("timestamp").cast(pl.Int64))
        if "rating" in inter.columns:
            inter = inter.with_columns(pl.col("rating").cast(pl.Float32))

        if items is None:
            items = pl.DataFrame({"item_id": pl.Series([], dtype=pl.Utf8)})
        if "item_id" not in items.columns:
            raise DataError("item table lacks column 'item_id'", field="item_id")
        items = items.with_columns(pl.col("item_id").cast(pl.Utf8)).unique("item_id", keep="first", maintain_order=True)
        extra = (inter.select("item_id").unique(maintain_order=True)
                 .join(items.select("item_id"), on="item_id", how="anti"))
        items = pl.concat([items, extra], how="diagonal_relaxed") if extra.height else items
        items = items.with_row_index("item_idx").with_columns(pl.col("item_idx").cast(pl.Int64))
        items = items.select(["item_idx", "item_id", *[c for c in items.columns if c not in ("item_idx", "item_id")]])

        seen = inter.select("user_id").unique(maintain_order=True)
        if users is not None:
            if "user_id" not in users.columns:
                raise DataError("user table lacks column 'user_id'", field="user_id")
            users = users.with_columns(pl.col("user_id").cast(pl.Utf8)).unique("user_id", keep="first",
                                                                                 maintain_order=True)
            extra_users = seen.join(users.select("user_id"), on="user_id", how="anti")
            seen = pl.concat([users, extra_users], how="diagonal_relaxed") if extra_users.height else users
        users = seen.with_row_index("user_idx").with_columns(pl.col("user_idx").cast(pl.Int64))
        users = users.select(["user_idx", "user_id", *[c for c in users.columns if c not in ("user_idx", "user_id")]])
        cols = ["user_idx", "item_idx", "timestamp"] + (["rating"] if "rating" in inter.columns else [])
        inter = (inter.join(users.select("user_id", "user_idx"), on="user_id", how="left", maintain_order="left")
                 .join(items.select("item_id", "item_idx"), on="item_id", how="left", maintain_order="left")
                 .select(cols))
        inter = _sort_by_user_time(inter, users.height)
        return cls(items=items, users=users, interactions=inter, name=name,
                   text_fields=list(text_fields or []), meta=dict(meta or {}))

    def reindexed(self, interactions: pl.DataFrame, keep_items: bool = False, **meta: Any) -> "Dataset":
        """A new Dataset from a subset of this one's interactions (indices recomputed)."""
        raw = (interactions.join(self.users.select("user_idx", "user_id"), on="user_idx", maintain_order="left")
               .join(self.items.select("item_idx", "item_id"), on="item_idx", maintain_order="left")
               .drop("user_idx", "item_idx"))
        items = self.items.drop("item_idx")
        if not keep_items:
            items = items.join(raw.select("item_id").unique(), on="item_id", how="semi", maintain_order="left")
        users = None
        if self.users.width > 2:  # keep user attributes (e.g. demographics) of the users that remain
            users = self.users.drop("user_idx").join(raw.select("user_id").unique(), on="user_id", how="semi",
                                                     maintain_order="left")
        return Dataset.build(raw, items, name=self.name, text_fields=self.text_fields,
                             meta={**self.meta, **meta}, users=users)

    # ------------------------------------------------------------------ views
    @property
    def n_users(self) -> int:
        return self.users.height

    @property
    def n_items(self) -> int:
        return self.items.height

    @property
    def n_interactions(self) -> int:
        return self.interactions.height

    def sequences(self) -> Sequences:
        """Chronological item sequence of every user, row i = user_idx i."""
        user = self.interactions["user_idx"].to_numpy()
        lengths = np.bincount(user, minlength=self.n_users)
        return Sequences.from_lengths(lengths, self.interactions["item_idx"].to_numpy())

    def item_ids(self) -> np.ndarray:
        return self.items["item_id"].to_numpy()

    def counts(self) -> dict[str, int]:
        seen = self.interactions["item_idx"].n_unique()
        return {"users": self.n_users, "items": self.n_items, "interactions": self.n_interactions,
                "items_without_interactions": self.n_items - seen}

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, overwrite: bool = True) -> Path:
        """Write items/users/interactions Parquet and manifest.json atomically into `path`."""
        path = Path(path)
        with atomic_dir(path, overwrite=overwrite) as tmp:
            self.items.write_parquet(tmp / "items.parquet")
            self.users.write_parquet(tmp / "users.parquet")
            self.interactions.write_parquet(tmp / "interactions.parquet")
            write_json(tmp / "manifest.json", self.manifest())
        return path

    def manifest(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "name": self.name, "counts": self.counts(),
                "text_fields": self.text_fields, **self.meta}

    @classmethod
    def load(cls, path: str | Path) -> "Dataset":
        path = Path(path)
        manifest_path = path / "manifest.json"
        if not manifest_path.exists():
            raise DataError("not a semrec dataset folder (no manifest.json)", path=path,
                            fix="create one with `semrec data import`")
        manifest = read_json(manifest_path)
        if manifest.get("format_version") != FORMAT_VERSION:
            raise DataError(f"unsupported format_version {manifest.get('format_version')}",
                            path=manifest_path, field="format_version", fix="re-import with this semrec version")
        meta = {k: v for k, v in manifest.items() if k not in ("format_version", "name", "counts", "text_fields")}
        return cls(items=pl.read_parquet(path / "items.parquet"), users=pl.read_parquet(path / "users.parquet"),
                   interactions=pl.read_parquet(path / "interactions.parquet"), name=manifest["name"],
                   text_fields=manifest.get("text_fields", []), meta=meta)

    def __repr__(self) -> str:
        c = self.counts()
        return (f"Dataset({self.name!r}, users={c['users']:,}, items={c['items']:,}, "
                f"interactions={c['interactions']:,})")
