"""`semrec recommend RUN_DIR --history "id1,id2,..." -k 10`: top-k items (ids, titles, scores) for one history;
`--query "text"` steers the ranking with words (query-aware models such as user-text)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from semrec.cli.console import out
from semrec.cli.options import Device, Threads, check_device, set_threads
from semrec.errors import ConfigError, DataError
from semrec.io import read_json


def _model_dir(run_dir: Path) -> Path:
    """RUN_DIR/model, or RUN_DIR itself when it is a model folder; an unfinished run is refused."""
    from semrec.training.run import check_run_dir

    if not run_dir.exists() or (run_dir / "split").exists():
        check_run_dir(run_dir)
    for p in (run_dir / "model", run_dir):
        if (p / "config.json").exists() and (p / "model.safetensors").exists():
            return p
    raise DataError("no model found (expected model/config.json + model/model.safetensors)", path=run_dir,
                    fix="pass a run folder written by `semrec train` or a folder written by Recommender.save")


def _dataset_path(run_dir: Path, data: Optional[Path]) -> Path:
    if data is not None:
        return data
    cfg = run_dir / "config.json"
    if cfg.exists():
        src = read_json(cfg).get("data")
        if isinstance(src, str) and src:
            return Path(src)
    raise ConfigError(f"{run_dir} does not say which dataset it was trained on (fix: pass --data DATASET_DIR)")


def check_same_items(run_dir: Path, ds: object) -> None:
    """A run records its dataset's item fingerprint; a dataset whose indices name other items is refused."""
    cfg = run_dir / "config.json"
    recorded = read_json(cfg).get("item_fingerprint") if (run_dir / "model").is_dir() and cfg.exists() else None
    if recorded and recorded != ds.item_fingerprint():  # type: ignore[attr-defined]
        raise DataError("the dataset differs from the one this run was trained on (item fingerprint "
                        f"{ds.item_fingerprint()} vs {recorded})", path=run_dir,  # type: ignore[attr-defined]
                        fix="pass the run's own dataset with --data, or train on this one")


def recommend_ids(run_dir: Path, history: list[str], k: int = 10, data: Optional[Path] = None,
                  exclude_history: bool = False, device: str = "cpu", query: Optional[str] = None,
                  query_weight: Optional[float] = None) -> list[dict]:
    """Top-k for one history of external item ids: [{rank, item_id, title, score}], best first. `query` (a
    query-aware model only) blends the text's vector with the user's, `query_weight` 0 = history, 1 = query."""
    from semrec.data import Dataset, Sequences
    from semrec.models import Recommender

    run_dir = Path(run_dir)
    if not history:
        raise ConfigError("the history is empty (fix: --history ID1,ID2,... with at least one item id)")
    if k < 1:
        raise ConfigError(f"-k {k}: ask for at least one item")
    check_query(query, query_weight)
    model = Recommender.load(_model_dir(run_dir), device=device)
    if query is not None and not getattr(model, "query_aware", False):
        raise ConfigError(f"model {model.name!r} does not take a text query (fix: drop --query, or use a "
                          "query-aware model such as user-text)")
    ds = Dataset.load(_dataset_path(run_dir, data))
    check_same_items(run_dir, ds)
    ids = ds.items["item_id"].to_numpy().astype(str)
    index = dict(zip(ids, range(len(ids))))
    unknown = [h for h in history if h not in index]
    if unknown:
        raise DataError(f"unknown item id(s) {unknown[:5]} in --history", field="item_id",
                        fix=f"use ids from the dataset's item table ({len(ids):,} items, e.g. '{ids[0]}')")
    hist = Sequences.from_lists([[index[h] for h in history]])
    if k > model.n_items:
        raise ConfigError(f"-k {k} exceeds the catalogue size {model.n_items}")
    steer = {} if query is None else {"query": query, "query_weight": query_weight}
    top, scores = model.recommend(hist, k=k, exclude=hist if exclude_history else None, **steer)
    title_col = next((c for c in ("title", "name") if c in ds.items.columns), None)
    titles = ds.items[title_col].to_numpy() if title_col else np.full(len(ids), "", dtype=object)
    rows = []
    for r, (i, s) in enumerate(zip(top[0].tolist(), scores[0].tolist())):
        if i < 0:
            continue
        item_id = ids[i] if i < len(ids) else f"<new item {i}>"
        title = titles[i] if i < len(titles) else ""
        rows.append({"rank": r + 1, "item_id": item_id, "title": "" if title is None else str(title),
                     "score": float(s)})
    return rows


def check_query(query: Optional[str], query_weight: Optional[float]) -> None:
    """--query must hold some text; --query-weight only means something with a query, and lies in [0, 1]."""
    if query is not None and not query.strip():
        raise ConfigError("--query is empty (fix: --query \"waterproof boots for winter\", or drop it)")
    if query_weight is not None:
        if query is None:
            raise ConfigError("--query-weight needs --query TEXT")
        if not 0.0 <= query_weight <= 1.0:
            raise ConfigError(f"--query-weight {query_weight} is outside [0, 1] (0: history only, 1: query only)")


def register(app: typer.Typer) -> None:
    @app.command()
    def recommend(run_dir: Path = typer.Argument(..., help="Run folder (from `semrec train`) or model folder."),
                  history: Optional[str] = typer.Option(None, "--history", help="Comma-separated item ids, oldest first."),
                  k: int = typer.Option(10, "-k", "--k", min=1, help="How many items to return."),
                  data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder (default: the run's)."),
                  exclude_history: bool = typer.Option(False, "--exclude-history", help="Never return history items."),
                  device: Device = "cpu",
                  threads: Threads = None,
                  as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
                  input_path: Optional[Path] = typer.Option(None, "--input", help="Batch: histories file (.parquet, "
                                                            ".csv, .jsonl; columns history [, user_id])."),
                  out_path: Optional[Path] = typer.Option(None, "--out", help="Batch: recommendations .parquet."),
                  overwrite: bool = typer.Option(False, "--overwrite", help="Batch: replace an earlier --out."),
                  batch_size: int = typer.Option(4096, "--batch-size", min=1, help="Batch: histories per step."),
                  query: Optional[str] = typer.Option(None, "--query", help="Steer with words, e.g. \"waterproof "
                                                      "boots for winter\" (query-aware models: user-text)."),
                  query_weight: Optional[float] = typer.Option(None, "--query-weight", help="Blend of query and "
                                                               "history, 0..1 (default: the model's query_weight)."),
                  ) -> None:
        """Recommend the next items for one user history, or (--input/--out) for every history in a file.

        Example: semrec recommend runs/beauty-tiger --history "B004756YJA,B00BQYWEK8" -k 10

        Batch: semrec recommend runs/beauty-sasrec --input histories.parquet --k 20 --exclude-history --out recs.parquet

        Steered (user-text): semrec recommend runs/beauty-user-text --history "B004756YJA" --query "waterproof mascara"
        """
        from rich.table import Table

        check_device(device)
        set_threads(threads)
        check_query(query, query_weight)
        if input_path is not None or out_path is not None:  # batch path: semrec.serving.batch
            if query is not None:
                raise ConfigError("--query works with --history (one user); batch files take no query yet")
            from semrec.serving.batch import batch_command

            batch_command(run_dir, input_path, out_path, k=k, data=data, exclude_seen=exclude_history,
                          device=device, overwrite=overwrite, batch_size=batch_size, history=history)
            return
        if history is None:
            raise ConfigError("pass --history ID1,ID2,... (one user) or --input FILE --out FILE.parquet (batch)")

        items = [h.strip() for h in history.split(",") if h.strip()]
        rows = recommend_ids(run_dir, items, k=k, data=data, exclude_history=exclude_history, device=device,
                             query=query, query_weight=query_weight)
        if as_json:
            out.print_json(json.dumps(rows))
            return
        steer = "" if query is None else f" steered by {query!r}"
        table = Table(title=f"top {k} after {len(items)} item(s){steer}")
        for col, just in (("rank", "right"), ("item_id", "left"), ("title", "left"), ("score", "right")):
            table.add_column(col, justify=just)
        for r in rows:
            table.add_row(str(r["rank"]), r["item_id"], r["title"][:70], f"{r['score']:.4f}")
        out.print(table)
