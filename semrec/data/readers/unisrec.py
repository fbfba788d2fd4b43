"""RecBole sequential-benchmark files with the split given (UniSRec, VQ-Rec, LLMRank releases).

`X.{train,valid,test}.inter` are typed-header TSVs `user_id:token  item_id_list:token_seq  item_id:token`: one
row per prediction (history -> next item). Train rows are every prefix of the training part (UniSRec), valid
and test rows are each user's second-to-last and last item. `item_id_list` may be capped (UniSRec caps it at
50 items), so full sequences are rebuilt from the targets: the first row's history, then the target of every
row in time order (train rows by history length, then valid, then test). Without a train file (LLMRank Games)
that is the valid row's history plus the valid and test targets. Every row is checked against the rebuilt
sequence, so the given split is exactly `leave_one_out` of the result.

Item text: `X.item` (RecBole atomic, `item_id` = the index used in the .inter files) or `X.text`
(`item_id:token` = external id, e.g. ASIN) with `X.item2index` (`external<TAB>index`). `X.user2index` names users.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from semrec.data.dataset import Dataset
from semrec.data.readers.common import build_dataset, check_policy, reader_meta
from semrec.data.readers.recbole import read_atomic
from semrec.errors import DataError

PARTS = ("train", "valid", "test")


def _stem_files(path: Path) -> tuple[Path, str]:
    """(folder, stem) from a folder holding one X.test.inter, or from any X.<part>.inter file."""
    if path.is_dir():
        found = sorted(path.glob("*.test.inter"))
        if len(found) != 1:
            raise DataError(f"expected exactly one *.test.inter file in the folder, found {len(found)}", path=path,
                            fix="pass the X.test.inter file itself")
        path = found[0]
    if not path.exists():
        raise DataError("file not found", path=path, fix="pass a folder with X.test.inter or the file itself")
    for part in PARTS:
        if path.name.endswith(f".{part}.inter"):
            return path.parent, path.name.removesuffix(f".{part}.inter")
    raise DataError("expected a file named X.train.inter, X.valid.inter or X.test.inter", path=path,
                    fix="pass the folder of a UniSRec/RecBole sequential-benchmark release")


def _read_rows(path: Path, part: int, on_bad_rows: str) -> pl.DataFrame:
    df, kinds, _ = read_atomic(path, on_bad_rows=on_bad_rows, text_seq_fields=[])
    need = {"user_id", "item_id_list", "item_id"}
    if not need <= set(kinds):
        raise DataError(f"header needs {sorted(need)}, has {list(kinds)}", path=path, line=1,
                        fix="use the sequential-benchmark .inter files (user_id, item_id_list, item_id)")
    return df.select(pl.col("user_id").cast(pl.Utf8), pl.col("item_id_list").alias("hist"),
                     pl.col("item_id").cast(pl.Utf8).alias("target"), pl.lit(part).alias("part"),
                     pl.col("lineno"), pl.lit(str(path)).alias("file"))


def _rebuild(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows (user_id, hist, target, part, lineno) -> interactions (user_id, item_id) in time order, checked."""
    # time order of a user's rows: part, then history length, then (same length: capped rows) file order reversed
    rows = rows.with_columns(pl.col("hist").list.len().alias("hlen"))
    rows = rows.sort(["user_id", "part", "hlen", "lineno"], descending=[False, False, False, True],
                     maintain_order=True)
    rows = rows.with_columns(pl.int_range(pl.len()).over("user_id").alias("k"))
    first = rows.filter(pl.col("k") == 0)
    prefix = (first.select("user_id", pl.col("hist").alias("item_id")).explode("item_id")
              .with_columns(pl.int_range(pl.len()).over("user_id").alias("pos")))
    n0 = first.select("user_id", pl.col("hlen").alias("n0"))
    targets = rows.join(n0, on="user_id").select("user_id", pl.col("target").alias("item_id"),
                                                 (pl.col("n0") + pl.col("k")).alias("pos"))
    seq = pl.concat([prefix, targets.with_columns(pl.col("pos").cast(prefix["pos"].dtype))])
    # check: the last history item of every row is the item just before its target in the rebuilt sequence
    check = (rows.join(n0, on="user_id").filter(pl.col("hlen") > 0)
             .select("user_id", "file", "lineno", pl.col("hist").list.last().alias("last"),
                     (pl.col("n0") + pl.col("k") - 1).alias("pos"))
             .join(seq.rename({"item_id": "prev"}), on=["user_id", "pos"], how="left")
             .filter(pl.col("prev").is_null() | (pl.col("prev") != pl.col("last"))))
    if check.height:
        bad = check.row(0, named=True)
        raise DataError(f"row of user {bad['user_id']!r} does not continue that user's sequence (history ends with "
                        f"{bad['last']!r}, the rebuilt sequence has {bad['prev']!r} there)", path=bad["file"],
                        line=int(bad["lineno"]), fix="pass train/valid/test files of one release (one split)")
    return seq.sort(["user_id", "pos"]).select("user_id", "item_id")


def _items(folder: Path, stem: str, on_bad_rows: str) -> tuple[pl.DataFrame | None, list[str], list[Path],
                                                                  dict[str, str] | None]:
    """Item table keyed by the .inter index (item_id), its text fields, sources, and index -> external id."""
    item_path, text_path, index_path = (folder / f"{stem}.item", folder / f"{stem}.text",
                                        folder / f"{stem}.item2index")
    if item_path.exists():
        df, kinds, _ = read_atomic(item_path, on_bad_rows=on_bad_rows, text_seq_fields=None)
        if "item_id" not in kinds:
            raise DataError(f"no item_id column; header has {list(kinds)}", path=item_path, line=1)
        table = df.drop("lineno").with_columns(pl.col("item_id").cast(pl.Utf8))
        return table, [c for c in table.columns if c != "item_id"], [item_path], None
    if text_path.exists():
        if not index_path.exists():
            raise DataError(f"{text_path.name} is keyed by external ids but {index_path.name} is missing",
                            path=index_path, fix="copy the item2index file of the same release beside it")
        df, kinds, _ = read_atomic(text_path, on_bad_rows=on_bad_rows, text_seq_fields=["text"])
        index = pl.read_csv(index_path, separator="\t", has_header=False, new_columns=["external", "index"],
                            schema_overrides={"external": pl.Utf8, "index": pl.Utf8}, quote_char=None)
        table = (index.join(df.drop("lineno").rename({"item_id": "external"}), on="external", how="left",
                            maintain_order="left")
                 .with_columns(pl.col("index").cast(pl.Int64)).sort("index"))
        missing = table.filter(pl.col("text").is_null())
        if missing.height:
            raise DataError(f"{missing.height} item(s) of {index_path.name} have no text, e.g. "
                            f"{missing['external'][0]!r}", path=text_path, fix="use the files of one release")
        mapping = dict(zip(table["index"].cast(pl.Utf8).to_list(), table["external"].to_list()))
        return (table.select(pl.col("external").alias("item_id"), "text"), ["text"], [text_path, index_path],
                mapping)
    return None, [], [], None


def read_unisrec(path: str | Path, *, name: str | None = None, on_bad_rows: str = "error") -> Dataset:
    """Read a folder (or one X.<part>.inter file) of a UniSRec/VQ-Rec/LLMRank release into one Dataset.

    Item order = the release's item index (so `leave_one_out` reproduces the given split row for row);
    users keep their index order, named by `X.user2index` when present.
    """
    check_policy(on_bad_rows)
    folder, stem = _stem_files(Path(path))
    files = {p: folder / f"{stem}.{p}.inter" for p in PARTS}
    if not files["test"].exists():
        raise DataError("no test file", path=files["test"], fix="the release must include X.test.inter")
    parts = [_read_rows(f, i, on_bad_rows) for i, (p, f) in enumerate(files.items()) if f.exists()]
    rows = pl.concat(parts)
    inter = _rebuild(rows)
    # users in index order (numeric tokens sort numerically)
    inter = inter.with_columns(pl.col("user_id").cast(pl.Int64, strict=False).alias("_u")).sort(
        "_u", "user_id", maintain_order=True, nulls_last=True).drop("_u")
    items, text_fields, sources, mapping = _items(folder, stem, on_bad_rows)
    if mapping is not None:
        unknown = inter.filter(~pl.col("item_id").is_in(list(mapping)))
        if unknown.height:
            raise DataError(f"item index {unknown['item_id'][0]!r} is not in {stem}.item2index",
                            path=folder / f"{stem}.item2index", fix="use the files of one release")
        inter = inter.with_columns(pl.col("item_id").replace_strict(mapping))
    elif items is not None:
        items = items.with_columns(pl.col("item_id").cast(pl.Int64, strict=False).alias("_i")).sort(
            "_i", nulls_last=True, maintain_order=True).drop("_i")
    users = None
    user_index = folder / f"{stem}.user2index"
    if user_index.exists():
        idx = pl.read_csv(user_index, separator="\t", has_header=False, new_columns=["external", "index"],
                          schema_overrides={"external": pl.Utf8, "index": pl.Utf8}, quote_char=None)
        umap = dict(zip(idx["index"].to_list(), idx["external"].to_list()))
        inter = inter.with_columns(pl.col("user_id").replace(umap))
        sources.append(user_index)
        users = idx.with_columns(pl.col("index").cast(pl.Int64)).sort("index").select(
            pl.col("external").alias("user_id")).filter(pl.col("user_id").is_in(inter["user_id"].unique().to_list()))
    options: dict[str, Any] = {"on_bad_rows": on_bad_rows, "parts": [p for p, f in files.items() if f.exists()]}
    meta = reader_meta("unisrec", [f for f in files.values() if f.exists()] + sources, options, 0, "order",
                       given_split="leave-one-out (the valid/test rows are each user's last two items)")
    return build_dataset(inter, items, path=files["test"], expected="UniSRec/RecBole sequential rows (user_id, "
                         "item_id_list, item_id)", n_bad=0, users=users, name=name or stem, text_fields=text_fields,
                         meta=meta)
