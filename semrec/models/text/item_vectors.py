"""Where a text model's item vectors come from: a vectors file (`semrec embed`) or a dataset's text, encoded
through the cached `semrec.features.TextEncoder` (a second run on an unchanged catalogue encodes nothing)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from semrec.errors import ConfigError, DataError

FIX = ("pass --set vectors_path=VECTORS.safetensors (from `semrec embed DATA --out VECTORS.safetensors`) or "
       "--set dataset=DATA_FOLDER (its text fields are encoded and cached)")


def load_item_vectors(n_items: int, vectors_path: str | None = None, dataset: str | None = None,
                      fields: list[str] | None = None, encoder: str | None = None,
                      cache_dir: str | None = "runs/cache/text", device: str = "cpu") -> np.ndarray:
    """(n_items, d) float32 text vectors, row = item_idx; ConfigError naming the `--set` to pass when none given."""
    if vectors_path:
        from semrec.features import load_vectors

        vectors = load_vectors(vectors_path)
        where = vectors_path
    elif dataset:
        from semrec.data import Dataset, item_sentences
        from semrec.features import TextEncoder

        ds = Dataset.load(dataset)
        names = list(fields or ds.text_fields or [])
        if not names:
            raise ConfigError(f"dataset {dataset} has no text fields (fix: --set fields='[\"title\"]')")
        vectors = TextEncoder(model=encoder, cache_dir=cache_dir, device=device).encode(
            item_sentences(ds.items, names))
        where = dataset
    else:
        raise ConfigError(f"text-seq needs item text vectors (fix: {FIX})")
    if len(vectors) != n_items:
        raise DataError(f"{len(vectors)} item vectors but the model has {n_items} items (row i must be item_idx i)",
                        path=where, fix="embed the dataset this model is trained on")
    return np.ascontiguousarray(vectors, dtype=np.float32)


@dataclass
class ItemTextSource:
    """Config fields of a model that reads item text vectors (text-seq, sasrec-align, tiger-prorec): a vectors
    file, or a dataset folder whose text fields are encoded and cached."""

    vectors_path: str | None = None  # (n_items, d) text vectors, row = item_idx (`semrec embed`)
    dataset: str | None = None  # or: dataset folder whose text fields are encoded (cached) at build time
    fields: list[str] | None = None  # text fields to encode (default: the dataset's)
    encoder: str | None = None  # sentence-transformers folder (default: bundled all-MiniLM-L6-v2)

    def item_vectors(self, n_items: int, device: str = "cpu") -> np.ndarray:
        return load_item_vectors(n_items, self.vectors_path, self.dataset, self.fields, self.encoder, device=device)


def load_item_texts(n_items: int, dataset: str | None, fields: list[str] | None = None) -> list[str]:
    """Item sentences (row = item_idx) of a dataset folder, for models that encode text themselves."""
    if not dataset:
        raise ConfigError("text-seq: tune_encoder needs the item text (fix: --set dataset=DATA_FOLDER, or pass "
                          "texts= from Python)")
    from semrec.data import Dataset, item_sentences

    ds = Dataset.load(dataset)
    names = list(fields or ds.text_fields or [])
    if not names:
        raise ConfigError(f"dataset {dataset} has no text fields (fix: --set fields='[\"title\"]')")
    texts = list(item_sentences(ds.items, names))
    if len(texts) != n_items:
        raise DataError(f"{len(texts)} item sentences but the model has {n_items} items", path=dataset)
    return texts


def category_labels(items: pl.DataFrame, field: str, level: int = 1) -> np.ndarray:
    """(n_items,) int64 category of every item (-1 = none): level `level` of a category path.

    Accepts a list column (S3-Rec `[[root, sub, ...]]` or `[root, sub]`) or a comma-separated string (LC-Rec).
    Level 1 skips the shared root (e.g. "Beauty"); an item whose path is shorter uses its deepest level.
    Labels are numbered by first appearance in the item table.
    """
    if field not in items.columns:
        raise DataError(f"item table has no column {field!r}; columns: {items.columns}", field=field,
                        fix="set category_field to a column holding category paths")
    col = items[field]
    dtype = col.dtype
    if isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.List):
        col = col.list.first()
    elif dtype == pl.Utf8:
        col = col.str.split(",")
    elif not isinstance(dtype, pl.List):
        raise DataError(f"column {field!r} has type {dtype}; expected category paths (list or comma string)",
                        field=field)
    path = col.cast(pl.List(pl.Utf8))
    label = (pl.DataFrame({"p": path}).select(
        pl.when(pl.col("p").list.len() > level).then(pl.col("p").list.get(level, null_on_oob=True))
        .otherwise(pl.col("p").list.last()).str.strip_chars().alias("c"))["c"])
    codes = label.cast(pl.Categorical).to_physical().cast(pl.Int64).fill_null(-1).to_numpy()
    uniq = np.unique(codes[codes >= 0])
    remap = np.full(int(codes.max(initial=-1)) + 2, -1, dtype=np.int64)
    remap[uniq] = np.arange(len(uniq))
    return np.where(codes >= 0, remap[codes], -1)


__all__ = ["FIX", "ItemTextSource", "category_labels", "load_item_texts", "load_item_vectors"]
