"""Batch recommendations: a file of histories (external ids) in, a Parquet file of top-k ids and scores out.

Input: `.parquet`, `.csv` or `.jsonl` with a `history` column (a list of item ids, or one string of ids joined
by `sep`) and optionally `user_id`. The file is streamed `batch_size` rows at a time and the output is written
row group by row group, so memory is bounded by the batch, not by the file. Output columns: `user_id` (or
`row`), `item_ids` (list, best first), `scores` (list), `unknown` (history ids not in the catalogue).
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from semrec.errors import ConfigError, DataError
from semrec.io import atomic_path, check_output

FILE_KIND = "recommendations"
INPUTS = (".parquet", ".csv", ".jsonl")


def output_kind(path: Path) -> str | None:
    """The semrec kind recorded in a Parquet file's metadata (None when it is not semrec's)."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (pa.ArrowInvalid, OSError):
        return None
    return meta.get(b"semrec_kind", b"").decode() or None


def count_rows(path: Path) -> int | None:
    """Rows in the input, cheaply where the format allows (Parquet footer; lines of CSV/JSONL)."""
    if path.suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as f:
        n = sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 24), b""))
    return n - 1 if path.suffix == ".csv" else n


def read_batches(path: Path, batch_size: int) -> Iterator[pl.DataFrame]:
    """Stream the input `batch_size` rows at a time as DataFrames."""
    if path.suffix == ".parquet":
        pf = pq.ParquetFile(path)
        for rb in pf.iter_batches(batch_size=batch_size):
            yield pl.from_arrow(rb)
    elif path.suffix == ".csv":
        import pyarrow.csv as pcsv

        reader = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=1 << 22),
                               convert_options=pcsv.ConvertOptions(column_types={"user_id": pa.string(),
                                                                                 "history": pa.string()}))
        for rb in reader:
            df = pl.from_arrow(rb)
            for s in range(0, df.height, batch_size):
                yield df.slice(s, batch_size)
    elif path.suffix == ".jsonl":
        with open(path, "rb") as f:
            while True:
                lines = [line for line in (f.readline() for _ in range(batch_size)) if line.strip()]
                if not lines:
                    return
                try:
                    yield pl.read_ndjson(io.BytesIO(b"".join(lines)))
                except pl.exceptions.PolarsError as e:
                    raise DataError(f"unreadable JSON lines ({str(e).splitlines()[0][:200]})", path=path,
                                    fix='one object per line: {"user_id": "u1", "history": ["i1", "i2"]}') from None
    else:
        raise ConfigError(f"--input must be {', '.join(INPUTS)} (got {path.suffix!r})")


def _histories(df: pl.DataFrame, sep: str, path: Path) -> pl.Series:
    if "history" not in df.columns:
        raise DataError(f"no 'history' column (columns: {df.columns})", path=path, field="history",
                        fix="name the column of item ids 'history'")
    h = df["history"]
    if h.dtype == pl.Utf8:
        h = h.fill_null("").str.split(sep).list.eval(pl.element().str.strip_chars()).list.eval(
            pl.element().filter(pl.element() != ""))
    elif isinstance(h.dtype, pl.List):
        h = h.list.eval(pl.element().cast(pl.Utf8))
    else:
        raise DataError(f"'history' must be a list of ids or a string, got {h.dtype}", path=path, field="history")
    return h.fill_null([])


def recommend_file(engine: Any, input_path: str | Path, out: str | Path, k: int = 20, exclude_seen: bool = False,
                   batch_size: int = 4096, sep: str = ",", overwrite: bool = False, progress: bool = True
                   ) -> dict[str, Any]:
    """Write top-k recommendations for every history of `input_path` to Parquet `out`; returns counts and timing."""
    from semrec.serving.engine import Query

    input_path, out = Path(input_path), Path(out)
    if out.suffix != ".parquet":
        raise ConfigError(f"--out must be a .parquet file (got {out.name!r})")
    if not input_path.is_file():
        raise DataError("input file not found", path=input_path)
    check_output(out, FILE_KIND, overwrite, is_file=True, file_kind=output_kind(out) if out.exists() else None)
    if k < 1 or batch_size < 1:
        raise ConfigError("--k and --batch-size must be >= 1")
    cat = engine.catalogue
    ids = pl.Series("item_id", cat.ids, dtype=pl.Utf8)
    mapping = pl.DataFrame({"item_id": ids, "idx": np.arange(len(ids), dtype=np.int64)})
    id_array = np.asarray(cat.ids, dtype=object)
    schema = pa.schema([("user_id", pa.string()), ("item_ids", pa.list_(pa.string())),
                        ("scores", pa.list_(pa.float32())), ("unknown", pa.list_(pa.string()))],
                       metadata={"semrec_kind": FILE_KIND, "k": str(k), "model": engine.model.name,
                                 "exclude_seen": json.dumps(exclude_seen)})
    total = count_rows(input_path)
    t0, rows, unknown_total, start = time.perf_counter(), 0, 0, 0
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema) as writer, \
            tqdm(total=total, desc="recommend", unit="user", disable=not progress) as bar:
        for df in read_batches(input_path, batch_size):
            hist = _histories(df, sep, input_path)
            users = (df["user_id"].cast(pl.Utf8) if "user_id" in df.columns
                     else pl.Series(np.arange(start, start + df.height)).cast(pl.Utf8))
            long = pl.DataFrame({"row": np.arange(df.height), "item_id": hist}).explode("item_id").drop_nulls(
                "item_id").join(mapping, on="item_id", how="left", maintain_order="left")
            known = long.filter(pl.col("idx").is_not_null())
            lengths = np.bincount(known["row"].to_numpy(), minlength=df.height)
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            flat = known["idx"].to_numpy()
            queries = [Query(flat[offsets[j]:offsets[j + 1]], k, exclude_seen) for j in range(df.height)]
            results = engine.recommend(queries)
            unk = long.filter(pl.col("idx").is_null()).group_by("row").agg(pl.col("item_id"))
            unknown = pl.DataFrame({"row": np.arange(df.height)}).join(unk, on="row", how="left",
                                                                        maintain_order="left")["item_id"]
            unknown_total += int(unknown.list.len().fill_null(0).sum())
            n_out = np.asarray([len(r.items) for r in results])
            rec_ids = np.concatenate([r.items for r in results]) if len(results) else np.zeros(0, np.int64)
            rec_scores = np.concatenate([r.scores for r in results]).astype(np.float32) if len(results) else \
                np.zeros(0, np.float32)
            off = pa.array(np.concatenate([[0], np.cumsum(n_out)]).astype(np.int32))
            table = pa.table({"user_id": users.to_arrow(),
                              "item_ids": pa.ListArray.from_arrays(off, pa.array(id_array[rec_ids], pa.string())),
                              "scores": pa.ListArray.from_arrays(off, pa.array(rec_scores, pa.float32())),
                              "unknown": unknown.fill_null([]).cast(pl.List(pl.Utf8)).to_arrow()}, schema=schema)
            writer.write_table(table)
            rows += df.height
            start += df.height
            bar.update(df.height)
    wall = time.perf_counter() - t0
    return {"rows": rows, "unknown_ids": unknown_total, "wall_s": round(wall, 3),
            "users_per_s": round(rows / wall, 1) if wall > 0 else None, "out": str(out)}


def batch_command(run_dir: Path, input_path: Path | None, out: Path | None, *, k: int, data: Path | None,
                  exclude_seen: bool, device: str, overwrite: bool, batch_size: int, history: str | None) -> None:
    """`semrec recommend RUN --input FILE --out FILE.parquet`: check the options, load the run, write the file."""
    from semrec.cli.console import err
    from semrec.serving.engine import Engine

    if history is not None:
        raise ConfigError("--history is for one user; --input/--out recommend for a whole file (use one or the other)")
    if input_path is None or out is None:
        raise ConfigError("batch recommendations need both --input FILE and --out FILE.parquet")
    if out.suffix != ".parquet":
        raise ConfigError(f"--out must be a .parquet file (got {out.name!r})")
    if k < 1 or batch_size < 1:
        raise ConfigError("--k and --batch-size must be >= 1")
    check_output(out, FILE_KIND, overwrite, is_file=True, file_kind=output_kind(out) if out.exists() else None)
    engine = Engine.from_run(run_dir, data=data, device=device)
    info = recommend_file(engine, input_path, out, k=k, exclude_seen=exclude_seen, batch_size=batch_size,
                          overwrite=overwrite)
    err.print(f"wrote {out}: {info['rows']:,} users in {info['wall_s']:.1f}s ({info['users_per_s']:,} users/s); "
              f"{info['unknown_ids']:,} unknown history ids ignored")
