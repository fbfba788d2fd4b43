"""Valid input files of every text format, written from one list of (user, item, time) rows, for the reader
corruption and property tests. `write_format` returns the path to give the reader; `expected` the users (first
appearance) and per-user item sequences every reader must give back."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Callable

from semrec.data import Dataset
from semrec.data.readers import (read_amazon, read_amazon2023, read_lcrec, read_movielens, read_recbole, read_s3rec,
                                 read_table)

Row = tuple[str, int, int]  # user, integer item id, time (increasing per user in file order)


def _grouped(rows: list[Row]) -> dict[str, list[int]]:
    seqs: dict[str, list[int]] = {}
    for u, i, _ in rows:
        seqs.setdefault(u, []).append(i)
    return seqs


def _lines(text_lines: list[str]) -> bytes:
    return ("\n".join(text_lines) + "\n").encode("utf-8")


def _csv_field(v: object) -> str:
    s = str(v)
    return '"' + s.replace('"', '""') + '"' if any(c in s for c in ',"\n') else s


def _content(fmt: str, rows: list[Row]) -> tuple[str, bytes]:
    """(file name, bytes) of the main file of `fmt`."""
    if fmt == "s3rec":
        return "seq.txt", _lines([" ".join([u, *map(str, items)]) for u, items in _grouped(rows).items()])
    if fmt == "table":
        return "log.csv", _lines(["user_id,item_id,timestamp"] + [f"{_csv_field(u)},{i},{t}" for u, i, t in rows])
    if fmt == "table-tsv":
        return "log.tsv", _lines(["user_id\titem_id\ttimestamp"] + [f"{u}\t{i}\t{t}" for u, i, t in rows])
    if fmt == "amazon":
        return "reviews.json", _lines([json.dumps({"reviewerID": u, "asin": str(i), "unixReviewTime": t,
                                                   "overall": 5.0}) for u, i, t in rows])
    if fmt == "amazon2023":
        return "reviews.jsonl", _lines([json.dumps({"user_id": u, "parent_asin": str(i), "asin": f"a{i}",
                                                    "timestamp": t, "rating": 4}) for u, i, t in rows])
    if fmt == "lcrec":
        return "X.inter.json", json.dumps(_grouped(rows), indent=1).encode()
    if fmt == "recbole":
        return "x.inter", _lines(["user_id:token\titem_id:token\ttimestamp:float"]
                                 + [f"{u}\t{i}\t{t}" for u, i, t in rows])
    if fmt == "movielens":
        return "ratings.dat", _lines([f"{u}::{i}::4::{t}" for u, i, t in rows])
    if fmt == "movielens-100k":
        return "u.data", _lines([f"{u}\t{i}\t3\t{t}" for u, i, t in rows])
    raise ValueError(fmt)


READERS: dict[str, Callable[..., Dataset]] = {
    "s3rec": read_s3rec, "table": read_table, "table-tsv": read_table, "amazon": read_amazon,
    "amazon2023": read_amazon2023, "lcrec": read_lcrec, "recbole": read_recbole, "movielens": read_movielens,
    "movielens-100k": read_movielens}
FORMATS = tuple(READERS)
# Characters the user ids may hold in each format (no separator, no blank; S3-Rec and RecBole split on blanks)
USER_ALPHABET = "abcXYZ019_-.é中"


def write_format(fmt: str, folder: Path, rows: list[Row], gz: bool = False, data: bytes | None = None) -> Path:
    """Write `rows` as `fmt` (or the given raw `data` under that format's file name); returns the reader path."""
    name, content = _content(fmt, rows)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    content = content if data is None else data
    path.write_bytes(gzip.compress(content, mtime=0) if gz else content)
    return path


def read_format(fmt: str, path: Path, **kwargs: object) -> Dataset:
    return READERS[fmt](path, **kwargs)


def expected(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    seqs = _grouped(rows)
    return list(seqs), [[str(i) for i in items] for items in seqs.values()]


def observed(ds: Dataset) -> tuple[list[str], list[list[str]]]:
    """Users in index order and each user's item ids in sequence order."""
    ids = ds.items["item_id"].to_list()
    return ds.users["user_id"].to_list(), [[ids[i] for i in seq] for seq in ds.sequences().to_lists()]
