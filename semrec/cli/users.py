"""`semrec users embed|similar|lookalike|ids fit`, `semrec items embed`, `semrec index build|search`: user and
item vectors out of a trained run, indexes over item vectors, look-alikes and user semantic IDs (semrec.users)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from semrec.cli.console import err, out
from semrec.errors import ConfigError, DataError
from semrec.io import check_output

users_app = typer.Typer(help="User vectors: export, look-alikes, user semantic IDs.", no_args_is_help=True)
items_app = typer.Typer(help="Item vectors of a trained model.", no_args_is_help=True)
index_app = typer.Typer(help="Exact and approximate (faiss) indexes over item vectors.", no_args_is_help=True)
ids_app = typer.Typer(help="User semantic IDs.", no_args_is_help=True)
SPLITS = ("test", "valid", "train", "all")
RESULTS_KIND = "index-results"


def _load(run: Path, data: Optional[Path], device: str):
    """(model, dataset, split or None) of a run folder or a model folder + --data."""
    from semrec.cli.recommend import _dataset_path, _model_dir
    from semrec.data import Dataset, Split
    from semrec.models import Recommender

    model = Recommender.load(_model_dir(run), device=device)
    ds = Dataset.load(_dataset_path(run, data))
    if ds.n_items != model.n_items:
        raise DataError(f"the dataset has {ds.n_items} items but the model was trained on {model.n_items}",
                        path=run, fix="pass the dataset the run was trained on (--data)")
    split = Split.load(run / "split") if (run / "split" / "split.json").exists() else None
    return model, ds, split


def _histories(ds, split, which: str):
    """(histories, user_idx) for --split: the evaluation rows' histories, training sequences, or whole sequences."""
    if which == "all":
        return ds.sequences(), np.arange(ds.n_users)
    if split is None:
        from semrec.data import leave_one_out

        split = leave_one_out(ds)
    if which == "train":
        return split.train, np.arange(len(split.train))
    es = getattr(split, which)
    return es.histories, es.users


@users_app.command("embed")
def users_embed(run: Path = typer.Argument(..., help="Run folder (from `semrec train`) or model folder."),
                out_path: Path = typer.Option(..., "--out", help="Parquet file to write (user_idx, user_id, vector)."),
                data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder (default: the run's)."),
                split: str = typer.Option("test", "--split", help=f"Which histories: {', '.join(SPLITS)} "
                                          "(test: everything before each user's test item; all: whole sequences)."),
                instruction: Optional[str] = typer.Option(None, "--instruction", help="Instruction-aware models: "
                                                          "condition the vectors on this text."),
                pool: str = typer.Option("last", "--pool", help="last: the model's own state (user @ items = its "
                                         "scores); mean / idf-mean: the (idf-weighted) mean of item vectors over the "
                                         "whole history, for probing, segments and look-alikes, not retrieval."),
                pool_source: str = typer.Option("model", "--pool-source", help="What --pool mean/idf-mean averages: "
                                                "model (its item vectors) or text (text-based models' text vectors)."),
                overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing vector file."),
                device: str = typer.Option("cpu", "--device")) -> None:
    """Export one vector per user.

    Example: semrec users embed runs/beauty-sasrec --split test --out runs/beauty-sasrec/users.parquet
    Pooled: semrec users embed runs/ml-user-text --pool idf-mean --pool-source text --out users-pooled.parquet
    (idf popularity is counted over the exported histories themselves.)
    """
    from semrec.users import POOL_SOURCES, POOLS, USER_KIND, export_users, file_kind

    if split not in SPLITS:
        raise ConfigError(f"--split {split!r} is not one of {', '.join(SPLITS)}")
    if pool not in POOLS or pool_source not in POOL_SOURCES:
        raise ConfigError(f"--pool {pool!r} / --pool-source {pool_source!r}: use one of {', '.join(POOLS)} / "
                          f"{', '.join(POOL_SOURCES)}")
    check_output(out_path, USER_KIND, overwrite, is_file=True, file_kind=file_kind(out_path))
    model, ds, sp = _load(run, data, device)
    hist, users = _histories(ds, sp, split)
    ids = ds.users["user_id"].to_numpy().astype(str)[users]
    table = export_users(model, hist, users, ids, out_path, instruction=instruction, overwrite=overwrite,
                         pool=pool, source=pool_source, split=split, run=str(run))
    how = "" if pool == "last" else f", {pool} of {pool_source} item vectors"
    err.print(f"wrote {len(table.ids):,} user vectors ({table.vectors.shape[1]}-d{how}) to {out_path}")


@items_app.command("embed")
def items_embed(run: Path = typer.Argument(..., help="Run folder or model folder."),
                out_path: Path = typer.Option(..., "--out", help="Parquet file to write (item_idx, item_id, vector)."),
                data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder (default: the run's)."),
                overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing vector file."),
                device: str = typer.Option("cpu", "--device")) -> None:
    """Export the model's item vectors (for dot-product models, user @ item = the model's score)."""
    from semrec.users import ITEM_KIND, export_items, file_kind

    check_output(out_path, ITEM_KIND, overwrite, is_file=True, file_kind=file_kind(out_path))
    model, ds, _ = _load(run, data, device)
    table = export_items(model, ds.item_ids().astype(str), out_path, overwrite=overwrite, run=str(run))
    err.print(f"wrote {len(table.ids):,} item vectors ({table.vectors.shape[1]}-d) to {out_path}")


@index_app.command("build")
def index_build(source: Path = typer.Argument(..., help="items.parquet (from `semrec items embed`) or a run folder."),
                out_dir: Path = typer.Option(..., "--out", help="Index folder to write."),
                kind: str = typer.Option("exact", "--kind", help="exact, ivf or hnsw."),
                metric: str = typer.Option("ip", "--metric", help="ip (the model's scores) or cosine."),
                nlist: int = typer.Option(0, "--nlist", help="ivf: lists (0: 4 * sqrt(n))."),
                nprobe: int = typer.Option(16, "--nprobe", help="ivf: lists scanned per query."),
                m: int = typer.Option(32, "--m", help="hnsw: graph degree."),
                ef_search: int = typer.Option(64, "--ef-search", help="hnsw: search beam."),
                data: Optional[Path] = typer.Option(None, "--data", help="Run source: dataset folder."),
                overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing index folder."),
                threads: int = typer.Option(0, "--threads", help="faiss threads (0: faiss default).")) -> None:
    """Build an index over item vectors.

    Example: semrec index build runs/beauty-sasrec/items.parquet --kind hnsw --out runs/beauty-sasrec/index-hnsw
    """
    from semrec.users import ITEM_KIND, IndexConfig, VectorIndex, VectorTable, export_items

    cfg = IndexConfig(kind=kind, metric=metric, nlist=nlist, nprobe=nprobe, m=m, ef_search=ef_search,
                      threads=threads)
    check_output(out_dir, "index", overwrite)
    if source.is_file():
        table = VectorTable.load(source, ITEM_KIND)
    else:
        model, ds, _ = _load(source, data, "cpu")
        table = export_items(model, ds.item_ids().astype(str), run=str(source))
    index = VectorIndex.build(table.vectors, cfg, ids=table.ids, source=str(source), **table.meta)
    index.save(out_dir, overwrite=overwrite)
    err.print(f"{kind} index over {index.size:,} {index.dim}-d vectors written to {out_dir}")


@index_app.command("search")
def index_search(index_dir: Path = typer.Argument(..., help="Folder from `semrec index build`."),
                 users_path: Path = typer.Option(..., "--users", help="users.parquet from `semrec users embed`."),
                 user: list[str] = typer.Option([], "--user", help="Only these user ids (repeatable)."),
                 k: int = typer.Option(10, "-k", "--k"),
                 out_path: Optional[Path] = typer.Option(None, "--out", help="Parquet: user_id, rank, item_id, score."),
                 overwrite: bool = typer.Option(False, "--overwrite")) -> None:
    """Top-k items for users through an index (prints a table, or writes every user's list with --out)."""
    import polars as pl

    from semrec.users import USER_KIND, VectorIndex, VectorTable

    if out_path is not None:
        from semrec.users import file_kind

        check_output(out_path, RESULTS_KIND, overwrite, is_file=True, file_kind=file_kind(out_path))
    index = VectorIndex.load(index_dir)
    users = VectorTable.load(users_path, USER_KIND)
    rows = users.row_of(user) if user else np.arange(len(users.ids))
    top, scores = index.search(users.vectors[rows], k)
    n, kk = top.shape
    frame = pl.DataFrame({"user_id": np.repeat(users.ids[rows], kk), "rank": np.tile(np.arange(1, kk + 1), n),
                          "item_id": np.where(top >= 0, index.ids[np.maximum(top, 0)], "").ravel(),
                          "score": scores.ravel()}).filter(pl.col("item_id") != "")
    if out_path is not None:
        from semrec.io import atomic_path

        with atomic_path(out_path) as tmp:
            frame.write_parquet(tmp, metadata={"semrec_kind": RESULTS_KIND})
        err.print(f"wrote top-{kk} for {n:,} users to {out_path}")
    else:
        out.print(frame.head(50 * kk))


@users_app.command("similar")
def users_similar(users_path: Path = typer.Argument(..., help="users.parquet from `semrec users embed`."),
                  user: str = typer.Argument(..., help="A user id."),
                  k: int = typer.Option(10, "-k", "--k"),
                  as_json: bool = typer.Option(False, "--json")) -> None:
    """The k users most like USER (cosine similarity of user vectors)."""
    from semrec.users import USER_KIND, VectorTable, similar_users

    table = VectorTable.load(users_path, USER_KIND)
    rows, sims = similar_users(table.vectors, table.row_of([user]), k)
    result = [{"rank": r + 1, "user_id": str(table.ids[i]), "similarity": round(float(s), 4)}
              for r, (i, s) in enumerate(zip(rows[0], sims[0]))]
    out.print_json(json.dumps(result)) if as_json else out.print(result)


@users_app.command("lookalike")
def users_lookalike(users_path: Path = typer.Argument(..., help="users.parquet from `semrec users embed`."),
                    seeds: str = typer.Option(..., "--seeds", help="Comma-separated seed user ids, or @FILE with "
                                              "one id per line."),
                    k: int = typer.Option(50, "-k", "--k", help="Users to add to the segment."),
                    method: str = typer.Option("centroid", "--method", help="centroid, max or mean."),
                    out_path: Optional[Path] = typer.Option(None, "--out", help="Parquet: user_id, score."),
                    overwrite: bool = typer.Option(False, "--overwrite")) -> None:
    """Expand a seed segment with the k users most like it."""
    import polars as pl

    from semrec.users import USER_KIND, VectorTable, expand_segment, file_kind

    if out_path is not None:
        check_output(out_path, "segment", overwrite, is_file=True, file_kind=file_kind(out_path))
    ids = (Path(seeds[1:]).read_text().split() if seeds.startswith("@") else
           [s.strip() for s in seeds.split(",") if s.strip()])
    table = VectorTable.load(users_path, USER_KIND)
    rows, scores = expand_segment(table.vectors, table.row_of(ids), k, method)
    frame = pl.DataFrame({"user_id": table.ids[rows].astype(str), "score": scores})
    if out_path is None:
        out.print(frame)
        return
    from semrec.io import atomic_path

    with atomic_path(out_path) as tmp:
        frame.write_parquet(tmp, metadata={"semrec_kind": "segment"})
    err.print(f"wrote {frame.height} look-alike users to {out_path}")


@ids_app.command("fit")
def users_ids_fit(users_path: Path = typer.Argument(..., help="users.parquet from `semrec users embed`."),
                  out_dir: Path = typer.Option(..., "--out", help="Folder: tokenizer/ + user_codes.parquet."),
                  method: str = typer.Option("rq-kmeans", "--method", help="rq-kmeans or rq-vae."),
                  levels: int = typer.Option(3, "--levels"),
                  codebook_size: int = typer.Option(64, "--codebook-size"),
                  collisions: str = typer.Option("append", "--collisions", help="append, reassign or none."),
                  overwrite: bool = typer.Option(False, "--overwrite")) -> None:
    """Quantise user vectors into semantic IDs with an item tokenizer (users sharing a prefix = a segment)."""
    import polars as pl

    from semrec.io import atomic_dir
    from semrec.users import USER_KIND, VectorTable, fit_user_ids

    check_output(out_dir, "user-ids", overwrite)
    table = VectorTable.load(users_path, USER_KIND)
    tok = fit_user_ids(table.vectors, table.ids.tolist(), method, n_levels=levels, codebook_size=codebook_size,
                       collisions=collisions)
    with atomic_dir(out_dir, "user-ids", overwrite=overwrite) as tmp:
        tok.save(tmp / "tokenizer")
        pl.DataFrame({"user_idx": table.idx, "user_id": table.ids.astype(str),
                      "codes": pl.Series(tok.codes).cast(pl.List(pl.Int64))}).write_parquet(tmp / "user_codes.parquet")
    err.print(f"{len(tok.codes):,} user codes ({tok.codes.shape[1]} levels) written to {out_dir}; "
              f"collision rate before handling {tok.fit_stats.get('collision_rate_before', 0):.3f}")


def register(app: typer.Typer) -> None:
    users_app.add_typer(ids_app, name="ids")
    app.add_typer(users_app, name="users")
    app.add_typer(items_app, name="items")
    app.add_typer(index_app, name="index")
