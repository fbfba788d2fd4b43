"""MovieLens in its native GroupLens layouts, detected from the folder's files.

- 100K: `u.data` (tab: user, item, rating, time), `u.item` (`|`: id, title, release date, video date, IMDb URL,
  19 genre flags), `u.user` (`|`: id, age, gender, occupation, zip), `u.genre`.
- 1M / 10M: `ratings.dat` (`::`), `movies.dat` (`id::Title (Year)::Genre|Genre`), `users.dat` (1M only).
  A folder with only `movies.dat` / `users.dat` imports as items and users with zero interactions.
- 20M / 25M / 32M / latest: `ratings.csv`, `movies.csv` (quoted titles), `links.csv` (IMDb / TMDb ids).

Items get `title` (year removed), `year` and `genres` (list); users keep their demographics. Files are read as
UTF-8 when valid, else latin-1 (the encoding of the 100K and 1M releases); a UTF-8 file with a few bad bytes
stays UTF-8 (its bad lines are named, or skipped with on_bad_rows="skip").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl

from semrec.data.dataset import Dataset
from semrec.data.readers.common import (build_dataset, cast_checked, check_policy, empty_interactions, read_bytes,
                                        read_lines, reader_meta, split_fields)
from semrec.data.readers.table import TableSource, read_interactions, read_item_table
from semrec.errors import DataError

GENRES_100K = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
               "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
               "War", "Western"]
TEXT_FIELDS = ["title", "year", "genres"]
UTF8_PAIR = re.compile(rb"[\xc2-\xf4][\x80-\xbf]")  # a UTF-8 multi-byte start + continuation (rare in latin-1)


def _delimited(path: Path, separator: str, names: list[str], on_bad_rows: str,
               numeric: dict[str, pl.DataType] | None = None) -> tuple[pl.DataFrame, int]:
    """A headerless `separator`-delimited file as string columns `names` (numeric ones typed), bad-row count."""
    try:
        lines, n_bad = read_lines(path, on_bad_rows="error", encoding="utf-8")
    except DataError as e:
        if "not valid utf-8" not in str(e):
            raise
        # latin-1 only for a file that is not UTF-8 at all; a UTF-8 file with a few bad bytes keeps UTF-8 (its bad
        # lines are named or skipped) instead of having every accent turned into mojibake
        encoding = "utf-8" if UTF8_PAIR.search(read_bytes(path)) else "latin-1"
        lines, n_bad = read_lines(path, on_bad_rows=on_bad_rows, encoding=encoding)
    df, n = split_fields(lines, separator, names, path, on_bad_rows)
    df, m = cast_checked(df, numeric or {}, path, on_bad_rows, required=names[:1])
    return df.drop("lineno"), n_bad + n + m


def _title_year(title: pl.Expr) -> list[pl.Expr]:
    """'Toy Story (1995)' -> title 'Toy Story', year '1995'; titles without a year stay whole."""
    year = title.str.extract(r"\((\d{4})\)\s*$", 1)
    clean = pl.when(year.is_not_null()).then(title.str.replace(r"\s*\(\d{4}\)\s*$", "")).otherwise(title)
    return [clean.str.strip_chars().alias("title"), year.alias("year")]


def _genre_list(genres: pl.Expr) -> pl.Expr:
    return genres.str.split("|").list.eval(pl.element().filter(
        (pl.element() != "") & (pl.element() != "(no genres listed)"))).alias("genres")


def _ratings(df: pl.DataFrame) -> pl.DataFrame:
    return df.select("user_id", "item_id", pl.col("timestamp").cast(pl.Int64), pl.col("rating").cast(pl.Float32))


def _read_100k(folder: Path, on_bad_rows: str) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame | None,
                                                         list[Path], int]:
    data = folder / "u.data"
    inter, bad = _delimited(data, "\t", ["user_id", "item_id", "rating", "timestamp"], on_bad_rows,
                            {"rating": pl.Float32, "timestamp": pl.Int64})
    sources, items, users = [data], None, None
    genres = GENRES_100K
    if (folder / "u.genre").exists():
        g, _ = _delimited(folder / "u.genre", "|", ["genre", "index"], on_bad_rows, {"index": pl.Int64})
        genres = g.sort("index")["genre"].to_list()
        sources.append(folder / "u.genre")
    if (folder / "u.item").exists():
        names = ["item_id", "raw_title", "release_date", "video_release_date", "imdb_url", *genres]
        raw, n = _delimited(folder / "u.item", "|", names, on_bad_rows)
        flags = [pl.when(pl.col(g) == "1").then(pl.lit(g)) for g in genres]
        items = raw.select("item_id", *_title_year(pl.col("raw_title")),
                           pl.concat_list(flags).list.drop_nulls().alias("genres"),
                           "release_date", "imdb_url")
        sources.append(folder / "u.item")
        bad += n
    if (folder / "u.user").exists():
        users, n = _delimited(folder / "u.user", "|", ["user_id", "age", "gender", "occupation", "zip_code"],
                              on_bad_rows)
        sources.append(folder / "u.user")
        bad += n
    return _ratings(inter), items, users, sources, bad


def _read_dat(folder: Path, on_bad_rows: str) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame | None,
                                                       list[Path], int]:
    sources: list[Path] = []
    bad = 0
    inter = empty_interactions(rating=True)  # a metadata-only folder (no ratings.dat) has no interactions
    items = users = None
    if (folder / "ratings.dat").exists():
        raw, bad = _delimited(folder / "ratings.dat", "::", ["user_id", "item_id", "rating", "timestamp"],
                              on_bad_rows, {"rating": pl.Float32, "timestamp": pl.Int64})
        inter = _ratings(raw)
        sources.append(folder / "ratings.dat")
    if (folder / "movies.dat").exists():
        raw, n = _delimited(folder / "movies.dat", "::", ["item_id", "raw_title", "raw_genres"], on_bad_rows)
        items = raw.select("item_id", *_title_year(pl.col("raw_title")), _genre_list(pl.col("raw_genres")))
        sources.append(folder / "movies.dat")
        bad += n
    if (folder / "users.dat").exists():
        users, n = _delimited(folder / "users.dat", "::", ["user_id", "gender", "age", "occupation", "zip_code"],
                              on_bad_rows)
        sources.append(folder / "users.dat")
        bad += n
    return inter, items, users, sources, bad


def _read_csv(folder: Path, on_bad_rows: str) -> tuple[pl.DataFrame, pl.DataFrame | None, None, list[Path], int]:
    sources: list[Path] = [folder / "ratings.csv"]
    src = TableSource(folder / "ratings.csv")
    inter, bad = read_interactions(src, "userId", "movieId", "timestamp", "rating", None, on_bad_rows)
    items = None
    if (folder / "movies.csv").exists():
        raw = read_item_table(folder / "movies.csv", "movieId")
        items = raw.select("item_id", *_title_year(pl.col("title")), _genre_list(pl.col("genres")))
        sources.append(folder / "movies.csv")
        if (folder / "links.csv").exists():
            links = read_item_table(folder / "links.csv", "movieId").rename({"imdbId": "imdb_id",
                                                                             "tmdbId": "tmdb_id"})
            items = items.join(links, on="item_id", how="left", maintain_order="left")
            sources.append(folder / "links.csv")
    return inter, items, None, sources, bad


def read_movielens(path: str | Path, *, name: str | None = None, on_bad_rows: str = "error") -> Dataset:
    """Read a MovieLens release folder (100K, 1M, 10M, 20M, 25M, 32M, latest; layout detected from its files)."""
    check_policy(on_bad_rows)
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        raise DataError("MovieLens folder not found", path=folder, fix="pass the unzipped release folder")
    if (folder / "u.data").exists():
        variant, reader = "100k", _read_100k
    elif (folder / "ratings.csv").exists():
        variant, reader = "csv", _read_csv
    elif any((folder / f).exists() for f in ("ratings.dat", "movies.dat", "users.dat")):
        variant, reader = "dat", _read_dat
    else:
        raise DataError("no MovieLens files here (u.data, ratings.dat, movies.dat, ratings.csv)", path=folder,
                        fix="pass the unzipped GroupLens release folder, e.g. ml-1m/")
    inter, items, users, sources, bad = reader(folder, on_bad_rows)
    options: dict[str, Any] = {"variant": variant, "on_bad_rows": on_bad_rows}
    meta = reader_meta("movielens", sources, options, bad, "unix")
    text = [f for f in TEXT_FIELDS if items is not None and f in items.columns]
    metadata_only = variant == "dat" and not (folder / "ratings.dat").exists()
    return build_dataset(inter, items, path=sources[0], n_bad=bad, allow_empty=metadata_only,
                         expected=f"MovieLens rating lines in {sources[0].name} (user, item, rating, timestamp)",
                         name=name or folder.name, text_fields=text, meta=meta, users=users)
