"""Precomputed item vectors from `.npy` (MMRec `text_feat.npy` / `image_feat.npy`) or Parquet files.

`.npy`: row i is item_idx i (the MMRec convention); loaded with `allow_pickle=False`.
Parquet: an id column (`item_id` or `item_idx`) and either one list/array column of floats or several
float columns; rows are aligned to a dataset's items by that id.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from semrec.errors import DataError


def _check(vectors: np.ndarray, path: Path) -> np.ndarray:
    if vectors.ndim != 2:
        raise DataError(f"expected a 2-d (n_items, dim) array, got shape {vectors.shape}", path=path)
    if not np.issubdtype(vectors.dtype, np.number):
        raise DataError(f"expected numbers, got dtype {vectors.dtype}", path=path)
    vectors = vectors.astype(np.float32, copy=False)
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        raise DataError(f"{int(bad.sum())} row(s) contain NaN/inf, first at row {int(np.flatnonzero(bad)[0])}",
                        path=path, fix="re-export the features or drop those items")
    return vectors


def load_vectors(path: str | Path, item_ids: list[str] | np.ndarray | None = None,
                 column: str | None = None) -> np.ndarray:
    """Read vectors; with `item_ids` (a dataset's `item_ids()`), Parquet rows are reordered to match."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=path)
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise DataError(f"cannot read without pickle ({e})", path=path,
                            fix="re-save with np.save(path, array.astype('float32')) (no object arrays)") from None
        vectors = _check(arr, path)
        if item_ids is not None and len(item_ids) != len(vectors):
            raise DataError(f"{len(vectors)} rows but the dataset has {len(item_ids)} items (row i must be "
                            "item_idx i)", path=path, fix="export one row per item in item_idx order")
        return vectors
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        data = load_file(str(path))
        key = column or ("vectors" if "vectors" in data else next(iter(data)))
        return _check(data[key], path)
    if path.suffix != ".parquet":
        raise DataError(f"unsupported vector file type {path.suffix!r}", path=path,
                        fix="use .npy (row = item_idx), .safetensors or .parquet")
    df = pl.read_parquet(path)
    id_col = "item_id" if "item_id" in df.columns else ("item_idx" if "item_idx" in df.columns else None)
    value_cols = [c for c in df.columns if c != id_col]
    if column is not None:
        value_cols = [column]
    if len(value_cols) == 1 and isinstance(df.schema[value_cols[0]], (pl.List, pl.Array)):
        vectors = np.asarray(df[value_cols[0]].to_list(), dtype=np.float32)
    else:
        numeric = [c for c in value_cols if df.schema[c].is_numeric()]
        if not numeric:
            raise DataError("no vector column (a list of floats) or float columns found", path=path,
                            fix="write a column 'vector' of float lists beside 'item_id'")
        vectors = df.select(numeric).to_numpy().astype(np.float32)
    vectors = _check(vectors, path)
    if item_ids is None:
        return vectors
    if id_col is None:
        if len(vectors) != len(item_ids):
            raise DataError(f"{len(vectors)} rows, {len(item_ids)} items and no item_id column", path=path,
                            field="item_id", fix="add an item_id column")
        return vectors
    ids = df[id_col].cast(pl.Utf8)
    lookup = pl.DataFrame({"item_id": pl.Series(np.asarray(item_ids).astype(str)),
                           "pos": np.arange(len(item_ids))})
    rows = pl.DataFrame({"item_id": ids, "row": np.arange(len(ids))}).unique("item_id", keep="first")
    joined = lookup.join(rows, on="item_id", how="left", maintain_order="left")
    missing = joined.filter(pl.col("row").is_null())
    if missing.height:
        raise DataError(f"{missing.height} dataset item(s) have no vector, e.g. {missing['item_id'][0]!r}",
                        path=path, field=id_col, fix="export vectors for every item (or filter the dataset)")
    return vectors[joined["row"].to_numpy()]


def save_vectors(path: str | Path, vectors: np.ndarray, metadata: dict[str, str] | None = None) -> Path:
    """Write (n_items, dim) float32 vectors as safetensors (`vectors`), atomically; row = item_idx."""
    from safetensors.numpy import save_file

    from semrec.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({"vectors": np.ascontiguousarray(vectors, dtype=np.float32)}, str(tmp),
                  metadata={k: str(v) for k, v in (metadata or {}).items()})
    return path


def load_item_features(path: str | Path, n_items: int, item_ids: list[str] | np.ndarray | None = None
                       ) -> np.ndarray:
    """(n_items, dim) float32 features for a catalogue of `n_items`, from `.npy`/`.safetensors`/`.parquet`
    (via `load_vectors`) or a raw row-major float32 file (MMRec/MISSRec `*.feat*`, no header: dim = bytes /
    4 / n_items). A file whose row count is not the catalogue's is rejected, naming both counts."""
    path = Path(path)
    if not path.exists():
        raise DataError("feature file not found", path=path, fix="pass an existing file (row i = item_idx i)")
    if path.suffix in (".npy", ".safetensors", ".parquet"):
        vectors = load_vectors(path, item_ids if path.suffix == ".parquet" else None)
    else:
        size = path.stat().st_size
        if size == 0 or size % (4 * n_items):
            raise DataError(f"{size} bytes is not a whole number of float32 rows for {n_items} items",
                            path=path, fix="a raw feature file must hold n_items x dim float32 values, row = item_idx")
        vectors = _check(np.fromfile(path, dtype=np.float32).reshape(n_items, -1), path)
    if len(vectors) != n_items:
        raise DataError(f"{len(vectors)} feature rows but the catalogue has {n_items} items", path=path,
                        fix="export one row per item in item_idx order")
    return vectors
