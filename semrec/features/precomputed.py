"""Precomputed item vectors from `.npy` (MMRec `text_feat.npy` / `image_feat.npy`), safetensors or Parquet files.

`.npy` / `.safetensors`: row i is item_idx i (the MMRec convention); `.npy` is loaded with `allow_pickle=False`.
Parquet: an id column (`item_id` or `item_idx`) and either one list/array column of floats or several float
columns. Rows are aligned by that id, never by their position: a shuffled table gives the same matrix as a
sorted one. A ragged, null or non-finite vector is a DataError naming the file, the row and the item.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from semrec.errors import DataError


def _check(vectors: np.ndarray, path: Path, ids: pl.Series | None = None) -> np.ndarray:
    if vectors.ndim != 2:
        raise DataError(f"expected a 2-d (n_items, dim) array, got shape {vectors.shape}", path=path)
    if not np.issubdtype(vectors.dtype, np.number):
        raise DataError(f"expected numbers, got dtype {vectors.dtype}", path=path)
    vectors = vectors.astype(np.float32, copy=False)
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{int(bad.sum())} row(s) contain NaN/inf, first at row {row}{_item(ids, row)}", path=path,
                        fix="re-export the features or drop those items")
    return vectors


def _item(ids: pl.Series | None, row: int) -> str:
    return f" (item {ids[row]!r})" if ids is not None else ""


def _list_column(col: pl.Series, path: Path, ids: pl.Series | None) -> np.ndarray:
    """A List/Array column of numbers as an (n, dim) matrix; null, ragged or non-numeric rows are named."""
    inner = col.dtype.inner
    if not inner.is_numeric():
        raise DataError(f"column {col.name!r} holds {inner} values, expected numbers", path=path, field=col.name)
    col = col.cast(pl.List(inner))  # a fixed-size Array column takes the same checks
    lengths = col.list.len()
    has_null = (col.is_null() | col.list.eval(pl.element().is_null()).list.any()).fill_null(True)
    if has_null.any():
        row = int(has_null.arg_true()[0])
        raise DataError(f"row {row}{_item(ids, row)} has a missing vector or a null value", path=path,
                        field=col.name, fix="re-export the features with a full vector for every item")
    dim = int(lengths[0]) if len(lengths) else 0
    ragged = lengths != dim
    if ragged.any():
        row = int(ragged.arg_true()[0])
        raise DataError(f"ragged vectors: row {row}{_item(ids, row)} has {lengths[row]} values, row 0 has {dim}",
                        path=path, field=col.name, fix="every vector must have the same length")
    flat = col.explode().cast(pl.Float32).to_numpy()
    return flat.reshape(len(col), dim)


def _parquet(path: Path, column: str | None) -> tuple[np.ndarray, str | None, pl.Series | None]:
    """(vectors in file order, id column name, ids) from a Parquet table."""
    from semrec.data.readers.common import read_parquet_checked  # pyarrow: a corrupted file is an error, not a crash

    df = read_parquet_checked(path)
    id_col = "item_id" if "item_id" in df.columns else ("item_idx" if "item_idx" in df.columns else None)
    ids = df[id_col] if id_col else None
    value_cols = [column] if column is not None else [c for c in df.columns if c != id_col]
    missing = [c for c in value_cols if c not in df.columns]
    if missing:
        raise DataError(f"no column {missing[0]!r}; the file has {df.columns}", path=path, field=missing[0])
    if len(value_cols) == 1 and isinstance(df.schema[value_cols[0]], (pl.List, pl.Array)):
        vectors = _list_column(df[value_cols[0]], path, ids)
    else:
        numeric = [c for c in value_cols if df.schema[c].is_numeric()]
        if not numeric:
            raise DataError("no vector column (a list of floats) or float columns found", path=path,
                            fix="write a column 'vector' of float lists beside 'item_id'")
        vectors = df.select(numeric).to_numpy().astype(np.float32)
    if ids is not None:
        if ids.null_count():
            row = int(ids.is_null().arg_true()[0])
            raise DataError(f"row {row} has no {id_col}", path=path, field=id_col, fix="give every row its id")
        dup = ~ids.is_first_distinct()
        if dup.any():
            row = int(dup.arg_true()[0])
            raise DataError(f"{id_col} {ids[row]!r} appears more than once (again at row {row})", path=path,
                            field=id_col, fix="keep one vector per item")
    return _check(vectors, path, ids), id_col, ids


def load_vectors(path: str | Path, item_ids: list[str] | np.ndarray | None = None,
                 column: str | None = None) -> np.ndarray:
    """Read vectors as (n_items, dim) float32, row = item_idx.

    `item_ids` (a dataset's `item_ids()`) aligns Parquet rows by their `item_id` / `item_idx` column. Without
    it, an `item_idx` column still orders the rows; an `item_id` column needs `item_ids` (a DataError says so).
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=path)
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            pickled = "pickle" in str(e)
            raise DataError(f"cannot read without pickle ({e})" if pickled else f"not a readable .npy file ({e})",
                            path=path, fix="re-save with np.save(path, array.astype('float32')) (no object arrays)") \
                from None
        vectors = _check(arr, path)
        if item_ids is not None and len(item_ids) != len(vectors):
            raise DataError(f"{len(vectors)} rows but the dataset has {len(item_ids)} items (row i must be "
                            "item_idx i)", path=path, fix="export one row per item in item_idx order")
        return vectors
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        try:
            data = load_file(str(path))
        except Exception as e:  # safetensors raises its own SafetensorError (and OSError) on a bad header
            raise DataError(f"not a readable safetensors file ({e})", path=path,
                            fix="re-create it with semrec.features.save_vectors") from None
        key = column or ("vectors" if "vectors" in data else next(iter(data), None))
        if key not in data:
            raise DataError(f"no tensor {key!r}; the file has {sorted(data)}", path=path, field=str(key))
        return _check(data[key], path)
    if path.suffix != ".parquet":
        raise DataError(f"unsupported vector file type {path.suffix!r}", path=path,
                        fix="use .npy (row = item_idx), .safetensors or .parquet")
    vectors, id_col, ids = _parquet(path, column)
    if id_col is None:
        if item_ids is not None and len(vectors) != len(item_ids):
            raise DataError(f"{len(vectors)} rows, {len(item_ids)} items and no item_id column", path=path,
                            field="item_id", fix="add an item_id column")
        return vectors
    if item_ids is None:
        if id_col == "item_id":
            raise DataError("rows are keyed by item_id, and no dataset was given to align them to", path=path,
                            field="item_id", fix="pass the dataset (item_ids=ds.item_ids(), or --dataset DIR), or "
                                                 "write an item_idx column instead")
        want = np.arange(len(ids))
        idx = ids.cast(pl.Int64, strict=False)
        if idx.null_count() or not np.array_equal(np.sort(idx.to_numpy()), want):
            raise DataError(f"item_idx must hold 0..{len(ids) - 1} once each", path=path, field="item_idx",
                            fix="write one row per item with its item_idx")
        return vectors[np.argsort(idx.to_numpy(), kind="stable")]
    key = "item_id" if id_col == "item_id" else "item_idx"
    wanted = (pl.Series(np.asarray(item_ids).astype(str)) if key == "item_id"
              else pl.Series(np.arange(len(item_ids))).cast(pl.Utf8))
    lookup = pl.DataFrame({"item_id": wanted, "pos": np.arange(len(item_ids))})
    rows = pl.DataFrame({"item_id": ids.cast(pl.Utf8), "row": np.arange(len(ids))})
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
                  metadata={"semrec_kind": "vectors", **{k: str(v) for k, v in (metadata or {}).items()}})
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
