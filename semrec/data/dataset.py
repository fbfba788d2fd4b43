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
from semrec.io import atomic_dir, read_json, read_parquet, write_json

FORMAT_VERSION = 1


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


def _first_appearance(ids: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(code of every value, numbered by first appearance; row of each code's first appearance).

    Hashes the ids to u64 first (about twice as fast as hashing strings twice on 20M rows) and checks every row
    against its code's first value, so a hash collision can never merge two ids: then exact string keys are used.
    """
    def codes_of(keys: pl.Series) -> tuple[pl.Series, pl.Series]:
        frame = pl.DataFrame({"k": keys}).with_row_index("row")
        first = frame.unique("k", keep="first", maintain_order=True).with_row_index("code")
        codes = frame.select("k").join(first.select("k", "code"), on="k", how="left", maintain_order="left")
        return codes["code"].cast(pl.Int64), first["row"]

    if ids.null_count() == 0:
        codes, first_rows = codes_of(ids.hash(seed=0x5E3EC))
        if (ids == ids.gather(first_rows).gather(codes)).all():
            return codes, first_rows
    return codes_of(ids)


def _index_table(table: pl.DataFrame, ids: pl.Series, kind: str) -> tuple[pl.DataFrame, pl.Series]:
    """Table rows first (their order), then ids seen only in `ids` (first appearance); returns the indexed
    table (`<kind>_idx`, `<kind>_id`, attributes) and the index of every value of `ids`."""
    key = f"{kind}_id"
    codes, first_rows = _first_appearance(pl.concat([table[key], ids.alias(key)], rechunk=False))
    n = table.height
    extra_rows = first_rows.filter(first_rows >= n) - n
    if len(extra_rows):
        table = pl.concat([table, ids.gather(extra_rows).alias(key).to_frame()], how="diagonal_relaxed")
    table = table.with_row_index(f"{kind}_idx").with_columns(pl.col(f"{kind}_idx").cast(pl.Int64))
    table = table.select([f"{kind}_idx", key, *[c for c in table.columns if c not in (f"{kind}_idx", key)]])
    return table, codes.slice(n)


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
        items, item_idx = _index_table(items, inter["item_id"], "item")
        if users is not None:
            if "user_id" not in users.columns:
                raise DataError("user table lacks column 'user_id'", field="user_id")
            users = users.with_columns(pl.col("user_id").cast(pl.Utf8)).unique("user_id", keep="first",
                                                                                 maintain_order=True)
        else:
            users = pl.DataFrame({"user_id": pl.Series([], dtype=pl.Utf8)})
        users, user_idx = _index_table(users, inter["user_id"], "user")
        rest = ["timestamp"] + (["rating"] if "rating" in inter.columns else [])
        inter = pl.DataFrame([user_idx.alias("user_idx"), item_idx.alias("item_idx")]).hstack(inter.select(rest))
        inter = _sort_by_user_time(inter, users.height)
        return cls(items=items, users=users, interactions=inter, name=name,
                   text_fields=list(text_fields or []), meta=dict(meta or {}))

    def reindexed(self, interactions: pl.DataFrame, keep_items: bool = False, **meta: Any) -> "Dataset":
        """A new Dataset from a subset of this one's interactions (indices recomputed, orders kept).

        Same result as rebuilding from the ids: items keep their order (all of them with `keep_items`), users
        keep the user table's order when it has attributes, else their first appearance in `interactions`.
        Works on the integer indices only, so filtering 20M interactions never rehashes id strings.
        """
        old_user = interactions["user_idx"].to_numpy()
        old_item = interactions["item_idx"].to_numpy()
        item_keep = (np.arange(self.n_items) if keep_items
                     else np.flatnonzero(np.bincount(old_item, minlength=self.n_items)))
        user_keep = (np.flatnonzero(np.bincount(old_user, minlength=self.n_users)) if self.users.width > 2
                     else interactions["user_idx"].unique(maintain_order=True).to_numpy())
        user_map = np.full(self.n_users, -1, dtype=np.int64)
        user_map[user_keep] = np.arange(len(user_keep))
        item_map = np.full(self.n_items, -1, dtype=np.int64)
        item_map[item_keep] = np.arange(len(item_keep))
        items = self.items[item_keep].with_columns(pl.int_range(len(item_keep), dtype=pl.Int64).alias("item_idx"))
        users = self.users[user_keep].with_columns(pl.int_range(len(user_keep), dtype=pl.Int64).alias("user_idx"))
        rest = ["timestamp"] + (["rating"] if "rating" in interactions.columns else [])
        inter = pl.DataFrame({"user_idx": user_map[old_user], "item_idx": item_map[old_item]}).hstack(
            interactions.select(rest))
        return Dataset(items=items, users=users, interactions=_sort_by_user_time(inter, len(user_keep)),
                       name=self.name, text_fields=list(self.text_fields), meta={**self.meta, **meta})

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
        with atomic_dir(path, "dataset", overwrite=overwrite) as tmp:
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
        """Read a dataset folder; a missing, corrupt or mis-shaped part is a DataError naming the file."""
        path = Path(path)
        fix = "re-import it with `semrec data import`"
        if not path.is_dir():
            raise DataError("dataset folder not found" if not path.exists() else "is a file, expected a dataset "
                            "folder", path=path, fix="pass the folder written by `semrec data import`")
        manifest_path = path / "manifest.json"
        if not manifest_path.exists():
            raise DataError("not a semrec dataset folder (no manifest.json)", path=path,
                            fix="create one with `semrec data import`")
        manifest = read_json(manifest_path)
        if manifest.get("format_version") != FORMAT_VERSION:
            raise DataError(f"unsupported format_version {manifest.get('format_version')!r}",
                            path=manifest_path, field="format_version", fix="re-import with this semrec version")
        name, text_fields = manifest.get("name", path.name), manifest.get("text_fields", [])
        if not isinstance(name, str) or not isinstance(text_fields, list):
            raise DataError("'name' must be a string and 'text_fields' a list", path=manifest_path, fix=fix)
        meta = {k: v for k, v in manifest.items() if k not in ("format_version", "name", "counts", "text_fields")}
        items = read_parquet(path / "items.parquet", "item table", {"item_idx": "int", "item_id": "str"}, fix)
        users = read_parquet(path / "users.parquet", "user table", {"user_idx": "int", "user_id": "str"}, fix)
        inter = read_parquet(path / "interactions.parquet", "interaction table",
                             {"user_idx": "int", "item_idx": "int", "timestamp": "int"}, fix)
        ds = cls(items=items, users=users, interactions=inter, name=name, text_fields=text_fields, meta=meta)
        ds._check_indices(path, fix)
        return ds

    def _check_indices(self, path: Path, fix: str) -> None:
        """Indices must be dense and in range, or every later stage indexes out of bounds."""
        for table, col, n in ((self.items, "item_idx", self.n_items), (self.users, "user_idx", self.n_users)):
            if table[col].null_count() or not np.array_equal(table[col].to_numpy(), np.arange(n)):
                raise DataError(f"{col} of the {col[:4]} table is not 0..{n - 1} in order", path=path, fix=fix)
        for col, n in (("user_idx", self.n_users), ("item_idx", self.n_items)):
            c = self.interactions[col]
            if c.null_count() or (len(c) and (c.min() < 0 or c.max() >= n)):
                raise DataError(f"interactions.{col} has values outside 0..{n - 1}",
                                path=path / "interactions.parquet", field=col, fix=fix)
        missing = [f for f in self.text_fields if f not in self.items.columns]
        if missing:
            raise DataError(f"text_fields {missing} are not columns of the item table", path=path / "manifest.json",
                            field="text_fields", fix=fix)

    def item_fingerprint(self) -> str:
        """A short hash of the item ids in index order: what a model's item indices mean.

        Runs record it, so a model is never applied to a dataset whose indices name other items.
        """
        joined = "\x1f".join(self.items["item_id"].cast(pl.Utf8).fill_null("").to_list())
        return hashlib.sha256(joined.encode()).hexdigest()[:16]

    def fingerprint(self) -> str:
        """A short hash of the whole dataset (item ids and interactions), recorded for provenance."""
        h = hashlib.sha256(self.item_fingerprint().encode())
        for col in ("user_idx", "item_idx"):
            h.update(np.ascontiguousarray(self.interactions[col].to_numpy(), dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        c = self.counts()
        return (f"Dataset({self.name!r}, users={c['users']:,}, items={c['items']:,}, "
                f"interactions={c['interactions']:,})")
