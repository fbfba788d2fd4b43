"""Code tables made by other tools, read into a `CodeTable` aligned with a dataset's `item_idx`.

Formats (chosen by suffix; a folder means semrec's own `codes.safetensors` inside it):
- `index.json` (LETTER / LC-Rec): `{"<item>": ["<a_12>", "<b_3>", ...]}`, token l carries letter l; plain
  integer lists are read too. Keys are item ids of the dataset (or item_idx with `keys="index"`).
- Parquet: an item column (`item_id`, else `item_idx`) and the codes, as one list column (`codes`, `code`,
  `sid`, `semantic_id`) or one integer column per level (`code_0`, `code_1`, ... or `c0`, `c1`, ...).
- `.npy`: an integer (n_items, levels) array, row i = item_idx i (no pickles).
- `.safetensors`: a `codes` tensor (what `CodeTable.save` writes), row i = item_idx i.

Every problem is a DataError naming the file, the item (and line, for JSON) and the fix.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

import numpy as np
import polars as pl

from semrec.errors import DataError
from semrec.semantic_ids.collisions import group_ids
from semrec.semantic_ids.table import CodeTable

LIST_COLUMNS = ("codes", "code", "sid", "semantic_id", "semantic_ids", "tokens")
_LEVEL_COLUMN = re.compile(r"^(?:code|codes|c|level|sid)_?(\d+)$")


def read_code_table(path: str | Path, item_ids: list[str] | np.ndarray | None = None, keys: str = "id",
                    codebook_sizes: list[int] | None = None) -> CodeTable:
    """Read any supported code table; rows follow `item_ids` (a dataset's order) when given.

    `keys`: `id` matches JSON keys / the Parquet item column to `item_ids`; `index` reads them as item_idx.
    `codebook_sizes` overrides the per-level vocabulary (default: the file's metadata, else max code + 1).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "codes.safetensors"
    if not path.exists():
        raise DataError("code table not found", path=path, fix="check the path (index.json, .parquet, .npy, "
                        ".safetensors, or a folder written by `semrec ids fit` / `semrec ids import`)")
    if keys not in ("id", "index"):
        raise DataError(f"keys={keys!r}: use 'id' (dataset item ids) or 'index' (item_idx 0..n-1)")
    ids = None if item_ids is None else [str(i) for i in item_ids]
    suffix = path.suffix.lower()
    if suffix == ".json":
        table = _from_index_json(path, ids, keys)
    elif suffix == ".parquet":
        table = _from_parquet(path, ids, keys)
    elif suffix == ".npy":
        table = _positional(_load_npy(path), path, ids, [])
    elif suffix == ".safetensors":
        codes, sizes, stored = _load_safetensors(path)
        if ids is not None and stored is not None and len(stored) == len(ids) and stored != ids:
            i = next(j for j in range(len(ids)) if stored[j] != ids[j])
            raise DataError(f"row {i} is item {stored[i]!r}, but the dataset's item_idx {i} is {ids[i]!r}", path=path,
                            fix="import with the dataset these codes were made for")
        table = _positional(codes, path, ids, sizes)
    else:
        raise DataError(f"unsupported code table format {path.suffix!r}", path=path,
                        fix="give index.json, .parquet, .npy or .safetensors")
    if codebook_sizes:
        _check_sizes(table.codes, codebook_sizes, path)
        table.codebook_sizes = [int(k) for k in codebook_sizes]
    return table


def check_collision_free(codes: np.ndarray, path: object = None, item_ids: list[str] | None = None) -> None:
    """Raise a DataError naming two items that share a code: a generative model could not tell them apart."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or not len(codes):
        return
    gid, counts = group_ids(codes)
    if counts.max() <= 1:
        return
    clash = np.flatnonzero(counts[gid] > 1)
    first = clash[gid[clash] == gid[clash[0]]][:2]
    name = (lambda i: repr(item_ids[i])) if item_ids is not None else (lambda i: f"item_idx {i}")
    raise DataError(f"{len(clash):,} items share a code with another item ({1 - len(counts) / len(codes):.1%} "
                    f"collisions), e.g. {name(first[0])} and {name(first[1])} both have "
                    f"{codes[first[0]].tolist()}", path=path,
                    fix="make the table collision-free: `semrec ids import TABLE --dataset D --collisions append` "
                        "(one extra level) or `--collisions reassign` (free last-level codes), or `semrec ids fit "
                        "--collisions append`")


# ---------------------------------------------------------------------------- formats
def _check_sizes(codes: np.ndarray, sizes: list[int], path: Path) -> None:
    if len(sizes) != codes.shape[1]:
        raise DataError(f"{len(sizes)} codebook sizes for {codes.shape[1]} levels", path=path,
                        fix="give one size per level")
    over = np.flatnonzero(codes.max(axis=0, initial=-1) >= np.asarray(sizes))
    if len(over):
        l = int(over[0])
        raise DataError(f"level {l} holds code {int(codes[:, l].max())}, outside its codebook size {sizes[l]}",
                        path=path, field=f"level {l}", fix="give codebook sizes larger than every code")


def _check_codes(codes: np.ndarray, path: Path, row_name) -> np.ndarray:
    """Integer, 2-d, non-negative codes (row_name(i) names row i in messages)."""
    if codes.ndim != 2 or codes.shape[1] == 0:
        raise DataError(f"codes must form an (n_items, levels) table, got shape {codes.shape}", path=path,
                        fix="one row of integer codes per item")
    if not np.issubdtype(codes.dtype, np.integer):
        if not np.issubdtype(codes.dtype, np.floating) or not np.isfinite(codes).all() or \
                not np.array_equal(codes, np.round(codes)):
            bad = np.flatnonzero(~np.isfinite(codes).all(axis=1) | (codes != np.round(codes)).any(axis=1)) \
                if np.issubdtype(codes.dtype, np.floating) else np.array([0])
            raise DataError(f"codes must be integers; {row_name(int(bad[0]))} holds "
                            f"{codes[int(bad[0])].tolist()}", path=path, fix="write integer codes (int32/int64)")
    codes = codes.astype(np.int64)
    neg = np.flatnonzero((codes < 0).any(axis=1))
    if len(neg):
        raise DataError(f"{len(neg):,} rows hold negative codes, e.g. {row_name(int(neg[0]))}: "
                        f"{codes[neg[0]].tolist()}", path=path, fix="codes are indices into codebooks (>= 0)")
    return codes


def _load_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        pickled = "pickle" in str(e)
        raise DataError(f"cannot read without pickle ({e})" if pickled else f"not a readable .npy file ({e})",
                        path=path, fix="re-save with np.save(path, codes.astype('int64')) (no object arrays)") \
            from None
    return _check_codes(np.asarray(arr), path, lambda i: f"row {i}")


def _load_safetensors(path: Path) -> tuple[np.ndarray, list[int], list[str] | None]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            names = list(f.keys())
            if not names:
                raise DataError("holds no tensors", path=path, fix="save the codes as a 'codes' tensor")
            codes = f.get_tensor("codes" if "codes" in names else names[0])
            meta = f.metadata() or {}
    except DataError:
        raise
    except Exception as e:  # safetensors raises its own SafetensorError on a bad header
        raise DataError(f"not a readable safetensors file ({str(e)[:120]})", path=path,
                        fix="save with semrec.semantic_ids.CodeTable.save or safetensors.numpy.save_file") from None
    try:
        sizes = [int(v) for v in json.loads(meta.get("codebook_sizes", "[]"))]
        stored = [str(v) for v in json.loads(meta["item_ids"])] if "item_ids" in meta else None
    except (ValueError, TypeError):
        sizes, stored = [], None
    return _check_codes(np.asarray(codes), path, lambda i: f"row {i}"), sizes, stored


def _positional(codes: np.ndarray, path: Path, ids: list[str] | None, sizes: list[int]) -> CodeTable:
    """Row i is item_idx i: the row count must equal the dataset's item count."""
    if ids is not None and len(codes) != len(ids):
        raise DataError(f"{len(codes):,} rows but the dataset has {len(ids):,} items (row i must be item_idx i)",
                        path=path, fix="export one row per item in item_idx order, or use Parquet/index.json "
                        "keyed by item id")
    if sizes:
        _check_sizes(codes, sizes, path)
    return CodeTable(codes, list(sizes), ids)


def _align(keys: list[str], codes: np.ndarray, path: Path, ids: list[str] | None, by: str,
           sizes: list[int], line_of=None) -> CodeTable:
    """Order rows by the dataset's item_idx, from keys that are item ids (`by="id"`) or item_idx values."""
    where = (lambda k: {"line": line_of(k)}) if line_of is not None else (lambda k: {})
    key_s = pl.Series("key", keys, dtype=pl.Utf8)
    dup = key_s.is_duplicated()
    if dup.any():
        k = key_s.filter(dup)[0]
        raise DataError(f"item {k!r} appears more than once", path=path, field=k, **where(k),
                        fix="one row per item")
    if by == "index":
        idx = key_s.cast(pl.Int64, strict=False)
        if idx.is_null().any():
            k = key_s.filter(idx.is_null())[0]
            raise DataError(f"key {k!r} is not an item_idx (an integer)", path=path, field=k, **where(k),
                            fix="use --keys id when the keys are item ids")
        n = len(ids) if ids is not None else len(keys)
        pos = idx.to_numpy()
    else:
        if ids is None:
            return CodeTable(codes, list(sizes), keys)
        n = len(ids)
        lookup = pl.DataFrame({"key": ids, "pos": np.arange(n, dtype=np.int64)})
        pos_s = pl.DataFrame({"key": key_s}).join(lookup, on="key", how="left", maintain_order="left")["pos"]
        if pos_s.is_null().all():
            raise DataError(f"none of the {len(keys):,} items is an item id of the dataset (e.g. {keys[0]!r}; the "
                            f"dataset's ids look like {ids[0]!r})", path=path,
                            fix="import with the dataset these codes were made for, or --keys index when the "
                                "keys are item_idx 0..n-1")
        if pos_s.is_null().any():
            unknown = key_s.filter(pos_s.is_null())
            raise DataError(f"{len(unknown):,} items are not in the dataset, e.g. {unknown[0]!r}", path=path,
                            field=unknown[0], **where(unknown[0]),
                            fix="remove them, or import with the dataset these codes were made for")
        pos = pos_s.to_numpy()
    if ((pos < 0) | (pos >= n)).any():
        k = keys[int(np.flatnonzero((pos < 0) | (pos >= n))[0])]
        raise DataError(f"item_idx {k} is outside 0..{n - 1}", path=path, field=k, **where(k),
                        fix="keys must be item_idx of the dataset")
    if len(pos) != n:
        missing = np.setdiff1d(np.arange(n), pos)
        name = ids[missing[0]] if ids is not None else str(missing[0])
        raise DataError(f"{len(missing):,} of the dataset's {n:,} items have no code, e.g. {name!r}", path=path,
                        fix="every item of the dataset needs a code: encode the missing items with the same "
                            "tool, then import again")
    out = np.empty_like(codes)
    out[pos] = codes
    return CodeTable(out, list(sizes), ids)


def _line_finder(path: Path):
    """Line number of an item's key in a (pretty-printed) JSON file, found only when a message needs it."""
    def line_of(key: str) -> int | None:
        text = path.read_text(encoding="utf-8-sig")
        at = text.find(json.dumps(str(key)) + ":")
        if at < 0:
            at = text.find(json.dumps(str(key)) + " :")
        return text.count("\n", 0, at) + 1 if at >= 0 else None
    return line_of


def _from_index_json(path: Path, ids: list[str] | None, keys: str) -> CodeTable:
    from semrec.io import read_json

    index = read_json(path)
    line_of = _line_finder(path)
    if not index:
        raise DataError("the index holds no items", path=path, fix="pass the index.json your tool wrote")
    names = list(index)
    values = list(index.values())
    not_list = [k for k, v in zip(names, values) if not isinstance(v, list)][:1]
    if not_list:
        k = not_list[0]
        raise DataError(f"item {k!r} maps to {type(index[k]).__name__}, not a list of tokens", path=path, field=k,
                        line=line_of(k), fix='write {"item": ["<a_12>", "<b_3>", ...]}')
    lens = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    if (lens != lens[0]).any() or lens[0] == 0:
        i = int(np.flatnonzero(lens != np.bincount(lens).argmax())[0]) if (lens != lens[0]).any() else 0
        raise DataError(f"item {names[i]!r} has {lens[i]} tokens, most items have {int(np.bincount(lens).argmax())}",
                        path=path, field=names[i], line=line_of(names[i]), fix="every item needs one token per level")
    levels = int(lens[0])
    flat = [t for v in values for t in v]
    try:
        tokens = pl.Series("t", flat, strict=True)
    except (TypeError, pl.exceptions.PolarsError):
        tokens = pl.Series("t", list(map(str, flat)))
        kinds = {type(t).__name__ for t in flat}
        raise DataError(f"tokens mix types {sorted(kinds)}", path=path,
                        fix='use strings like "<a_12>" (LETTER/LC-Rec) or plain integers, not both') from None
    level = np.tile(np.arange(levels), len(values))
    row_of = lambda j: int(j // levels)  # noqa: E731
    if tokens.dtype == pl.Utf8:
        parts = tokens.str.extract_groups(r"^<([a-z])_(\d+)>$")
        letter, number = parts.struct.field("1"), parts.struct.field("2")
        expected = pl.Series([string.ascii_lowercase[l] for l in range(min(levels, 26))])[level % 26] \
            if levels <= 26 else None
        if expected is None:
            raise DataError(f"{levels} levels do not fit the letter prefixes a..z", path=path)
        bad = (letter.is_null() | (letter != expected)).fill_null(True).to_numpy()
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            k = names[row_of(j)]
            raise DataError(f"item {k!r}: token {flat[j]!r} at position {j % levels} is not "
                            f"<{string.ascii_lowercase[j % levels]}_N>", path=path, field=k, line=line_of(k),
                            fix=f'level {j % levels} tokens look like "<{string.ascii_lowercase[j % levels]}_12>"')
        codes = number.cast(pl.Int64).to_numpy().reshape(len(values), levels)
    elif tokens.dtype.is_integer():
        codes = tokens.to_numpy().astype(np.int64).reshape(len(values), levels)
    else:
        j = 0
        raise DataError(f"item {names[0]!r}: tokens of type {tokens.dtype} (e.g. {flat[j]!r})", path=path,
                        field=names[0], line=line_of(names[0]), fix='use strings like "<a_12>" or integers')
    codes = _check_codes(codes, path, lambda i: f"item {names[i]!r}")
    return _align(names, codes, path, ids, keys, [], line_of)


def _from_parquet(path: Path, ids: list[str] | None, keys: str) -> CodeTable:
    from semrec.io import read_parquet

    df = read_parquet(path, "code table")
    item_col = "item_id" if "item_id" in df.columns and keys == "id" else \
        "item_idx" if "item_idx" in df.columns else "item_id" if "item_id" in df.columns else None
    if item_col is None:
        raise DataError(f"no item column among {df.columns}", path=path, field="item_id",
                        fix="add an item_id (dataset item ids) or item_idx (0..n-1) column")
    by = "index" if item_col == "item_idx" else keys
    list_cols = [c for c in LIST_COLUMNS if c in df.columns]
    level_cols = sorted(((int(m.group(1)), c) for c in df.columns if (m := _LEVEL_COLUMN.match(c))))
    if list_cols:
        col = list_cols[0]
        if not isinstance(df.schema[col], (pl.List, pl.Array)):
            raise DataError(f"column {col!r} is {df.schema[col]}, expected a list of integers", path=path, field=col,
                            fix="write the codes as a list column, or one column per level (code_0, code_1, ...)")
        s = df[col]
        if isinstance(s.dtype, pl.Array):
            s = s.cast(pl.List(s.dtype.inner))
        nulls = s.is_null() | s.list.eval(pl.element().is_null()).list.any()
        if nulls.any():
            r = int(np.flatnonzero(nulls.to_numpy())[0])
            raise DataError(f"row {r} (item {df[item_col][r]!r}) has a missing code", path=path, field=col,
                            fix="every item needs a code at every level")
        lens = s.list.len().to_numpy()
        if (lens != lens[0]).any():
            r = int(np.flatnonzero(lens != lens[0])[0])
            raise DataError(f"row {r} (item {df[item_col][r]!r}) has {lens[r]} codes, row 0 has {lens[0]}",
                            path=path, field=col, fix="every item needs one code per level")
        codes = np.asarray(s.explode().to_numpy()).reshape(len(df), int(lens[0]) if len(df) else 0)
    elif level_cols:
        cols = [c for _, c in level_cols]
        if [l for l, _ in level_cols] != list(range(len(cols))) and [l for l, _ in level_cols] != \
                list(range(1, len(cols) + 1)):
            raise DataError(f"level columns {cols} are not numbered consecutively", path=path, field=cols[0],
                            fix="name them code_0, code_1, ...")
        block = df.select(cols)
        if block.null_count().sum_horizontal()[0]:
            r = int(np.flatnonzero(block.select(pl.any_horizontal(pl.all().is_null())).to_series().to_numpy())[0])
            raise DataError(f"row {r} (item {df[item_col][r]!r}) has a missing code", path=path,
                            fix="every item needs a code at every level")
        codes = block.to_numpy()
    else:
        raise DataError(f"no code column among {df.columns}", path=path, field="codes",
                        fix=f"a list column named one of {list(LIST_COLUMNS)}, or code_0, code_1, ... per level")
    codes = _check_codes(np.asarray(codes), path, lambda r: f"row {r} (item {df[item_col][r]!r})")
    sizes: list[int] = []
    try:
        sizes = [int(v) for v in json.loads(pl.read_parquet_metadata(path).get("codebook_sizes", "[]"))]
    except (ValueError, TypeError):
        sizes = []
    if sizes:
        _check_sizes(codes, sizes, path)
    return _align(df[item_col].cast(pl.Utf8).to_list(), codes, path, ids, by, sizes)
