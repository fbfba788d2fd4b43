"""The code table a generative model consumes: int64 (n_items, n_levels), row = item_idx.

Saved as safetensors (+ JSON metadata), exported/imported as Parquet (`item_idx`, `item_id`, `codes`)
and as LETTER-style `index.json` (`{"item": ["<a_12>", "<b_3>", ...]}`).
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from semrec.errors import DataError
from semrec.io import atomic_path, read_json, read_parquet

_TOKEN = re.compile(r"^<([a-z])_(\d+)>$")


@dataclass
class CodeTable:
    """`codes[i]` is the semantic ID of item_idx i; `codebook_sizes[l]` is the vocabulary of level l."""

    codes: np.ndarray
    codebook_sizes: list[int] = field(default_factory=list)
    item_ids: list[str] | None = None

    def __post_init__(self) -> None:
        self.codes = np.ascontiguousarray(self.codes, dtype=np.int64)
        if self.codes.ndim != 2:
            raise DataError(f"code table must be 2-d (n_items, n_levels), got shape {self.codes.shape}")
        if not self.codebook_sizes:
            self.codebook_sizes = (self.codes.max(axis=0) + 1).tolist() if len(self.codes) else []
        if self.item_ids is not None and len(self.item_ids) != len(self.codes):
            raise DataError(f"{len(self.item_ids)} item ids for {len(self.codes)} codes")

    @property
    def n_items(self) -> int:
        return self.codes.shape[0]

    @property
    def n_levels(self) -> int:
        return self.codes.shape[1]

    def is_unique(self) -> bool:
        return len(np.unique(self.codes, axis=0)) == self.n_items

    # ------------------------------------------------------------------ safetensors
    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save_file

        meta = {"codebook_sizes": json.dumps(self.codebook_sizes)}
        if self.item_ids is not None:
            meta["item_ids"] = json.dumps(list(map(str, self.item_ids)))
        with atomic_path(path) as tmp:
            save_file({"codes": self.codes}, str(tmp), metadata=meta)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "CodeTable":
        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise DataError("code table not found", path=path, fix="run `semrec ids fit` first")
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            codes = f.get_tensor("codes")
        ids = json.loads(meta["item_ids"]) if "item_ids" in meta else None
        return cls(codes, json.loads(meta.get("codebook_sizes", "[]")), ids)

    # ------------------------------------------------------------------ Parquet
    def to_frame(self) -> pl.DataFrame:
        ids = self.item_ids if self.item_ids is not None else [str(i) for i in range(self.n_items)]
        return pl.DataFrame({"item_idx": np.arange(self.n_items, dtype=np.int64), "item_id": ids,
                             "codes": pl.Series(self.codes).cast(pl.List(pl.Int64))})

    def to_parquet(self, path: str | Path) -> Path:
        with atomic_path(path) as tmp:
            self.to_frame().write_parquet(tmp, metadata={"codebook_sizes": json.dumps(self.codebook_sizes),
                                                         "semrec_kind": "codes"})
        return Path(path)

    @classmethod
    def from_parquet(cls, path: str | Path) -> "CodeTable":
        path = Path(path)
        df = read_parquet(path, "code table")
        for col in ("item_idx", "codes"):
            if col not in df.columns:
                raise DataError(f"missing column {col!r}", path=path, field=col,
                                fix="write item_idx (int) and codes (list of int) columns")
        df = df.sort("item_idx")
        if not np.array_equal(df["item_idx"].to_numpy(), np.arange(df.height)):
            raise DataError("item_idx must be 0..n-1 without gaps", path=path, field="item_idx")
        lens = df["codes"].list.len().unique()
        if lens.len() != 1:
            raise DataError(f"codes have different lengths {sorted(lens.to_list())}", path=path, field="codes")
        codes = np.asarray(df["codes"].to_list(), dtype=np.int64).reshape(df.height, -1)
        ids = df["item_id"].cast(pl.Utf8).to_list() if "item_id" in df.columns else None
        sizes = json.loads(pl.read_parquet_metadata(path).get("codebook_sizes", "[]"))
        return cls(codes, sizes, ids)

    # ------------------------------------------------------------------ LETTER index.json
    def to_index_json(self, path: str | Path) -> Path:
        """`{"<item_id>": ["<a_12>", "<b_3>", ...]}`, the format LETTER / LC-Rec read."""
        if self.n_levels > 26:
            raise DataError(f"{self.n_levels} levels do not fit the letter prefixes a..z")
        ids = self.item_ids if self.item_ids is not None else [str(i) for i in range(self.n_items)]
        letters = string.ascii_lowercase
        index = {str(i): [f"<{letters[l]}_{c}>" for l, c in enumerate(row)] for i, row in zip(ids, self.codes.tolist())}
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(index) + "\n")
        return Path(path)

    @classmethod
    def from_index_json(cls, path: str | Path, item_ids: list[str] | None = None) -> "CodeTable":
        """Read an index.json; rows follow `item_ids` (a dataset's order) or the file's key order."""
        index = read_json(path)
        keys = list(item_ids) if item_ids is not None else list(index)
        rows = []
        for key in keys:
            if str(key) not in index:
                raise DataError(f"item {key!r} has no entry", path=path, field=str(key))
            toks = index[str(key)]
            row = []
            for l, tok in enumerate(toks):
                m = _TOKEN.match(tok)
                if not m or m.group(1) != string.ascii_lowercase[l]:
                    raise DataError(f"token {tok!r} at position {l} is not <{string.ascii_lowercase[l]}_N>",
                                    path=path, field=str(key))
                row.append(int(m.group(2)))
            rows.append(row)
        if len({len(r) for r in rows}) > 1:
            raise DataError("items have codes of different lengths", path=path)
        return cls(np.asarray(rows, dtype=np.int64).reshape(len(rows), -1), [], [str(k) for k in keys])

