"""`semrec embed` (item vectors) and `semrec ids fit|encode|report` (semantic IDs)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from semrec.cli.console import err, out
from semrec.cli.options import parse_key_values
from semrec.errors import ConfigError, DataError
from semrec.io import read_json, write_json

app = typer.Typer(help="Semantic IDs: fit tokenizers on item vectors, encode new items, inspect codes.",
                  no_args_is_help=True)
SOURCES = ("text", "attributes", "precomputed", "cf", "image")


def _load_inputs(paths: list[Path], weights: list[float] | None) -> np.ndarray:
    from semrec.features import fuse, load_vectors

    vecs = [load_vectors(p) for p in paths]
    return vecs[0] if len(vecs) == 1 and not weights else fuse(vecs, weights)


def embed(dataset: Path = typer.Argument(..., help="Dataset folder (from `semrec data import`)."),
          out_path: Path = typer.Option(..., "--out", help="Vectors file to write (.safetensors, row = item_idx)."),
          source: str = typer.Option("text", help=f"One of {', '.join(SOURCES)}."),
          fields: Optional[str] = typer.Option(None, help="text: comma-separated fields (default: dataset's)."),
          model: Optional[str] = typer.Option(None, help="text: sentence-transformers folder; image: CLIP folder."),
          from_path: Optional[str] = typer.Option(None, "--from", help="precomputed: .npy/.parquet file; cf: run "
                                                  "folder with model.safetensors, or 'sppmi' (co-occurrence)."),
          column: Optional[str] = typer.Option(None, help="attributes/image: item column (default attribute_ids "
                                               "/ image_path)."),
          dim: int = typer.Option(64, help="attributes / sppmi: output dimension."),
          cache: Optional[Path] = typer.Option(Path("runs/cache/text"), help="text: vector cache folder."),
          no_cache: bool = typer.Option(False, "--no-cache", help="text: do not read or write the cache."),
          batch_size: int = typer.Option(128, help="Encoder batch size."),
          device: str = typer.Option("cpu", help="torch device for encoders."),
          ) -> None:
    """Compute item vectors for every item of DATASET (row = item_idx) and save them as safetensors.

    Examples:

      semrec embed data/beauty --out runs/beauty/text.safetensors --fields title,categories,brand

      semrec embed data/beauty --source cf --from runs/beauty-sasrec-ce --out runs/beauty/cf.safetensors

      semrec embed data/beauty --source attributes --column attribute_ids --dim 64 --out runs/beauty/attr.safetensors
    """
    from semrec.data import Dataset, leave_one_out
    from semrec.features import (ImageEncoder, TextEncoder, attribute_vectors, cooccurrence_vectors, load_vectors,
                                 run_item_vectors, save_vectors)

    ds = Dataset.load(dataset)
    meta = {"dataset": str(dataset), "source": source, "rows": "item_idx"}
    if source == "text":
        from semrec.data import item_sentences

        names = fields.split(",") if fields else (ds.text_fields or None)
        if not names:
            raise ConfigError(f"{dataset} has no text fields (fix: pass --fields title,brand,...)")
        enc = TextEncoder(model=model, batch_size=batch_size, device=device,
                          cache_dir=None if no_cache else str(cache))
        vectors = enc.encode(item_sentences(ds.items, names))
        meta.update(model=enc.model_id, fields=",".join(names))
        err.print(f"text: {enc.stats['encoded']:,} encoded, {enc.stats['cached']:,} from cache "
                  f"({enc.stats['unique']:,} distinct sentences)")
    elif source == "attributes":
        col = column or "attribute_ids"
        if col not in ds.items.columns:
            raise DataError(f"item table has no column {col!r}", path=dataset / "items.parquet", field=col,
                            fix="import with the attributes option or pass --column")
        vectors = attribute_vectors(ds.items[col], dim=dim)
    elif source == "precomputed":
        if not from_path:
            raise ConfigError("--source precomputed needs --from FILE (.npy row = item_idx, or .parquet)")
        vectors = load_vectors(from_path, item_ids=ds.item_ids())
        meta["from"] = from_path
    elif source == "cf":
        if not from_path:
            raise ConfigError("--source cf needs --from RUN_DIR (a trained model) or --from sppmi")
        if from_path == "sppmi":
            vectors = cooccurrence_vectors(leave_one_out(ds).train, ds.n_items, dim=dim)
        else:
            vectors = run_item_vectors(from_path)
        if len(vectors) != ds.n_items:
            raise DataError(f"{len(vectors)} CF vectors for {ds.n_items} items", path=from_path,
                            fix="use a run trained on this dataset")
        meta["from"] = from_path
    elif source == "image":
        col = column or "image_path"
        if col not in ds.items.columns or not model:
            raise ConfigError(f"--source image needs --model CLIP_FOLDER and an item column {col!r} of file paths")
        vectors = ImageEncoder(model=model, batch_size=batch_size, device=device).encode(ds.items[col].to_list())
        meta["model"] = model
    else:
        raise ConfigError(f"unknown --source {source!r}; choose one of {', '.join(SOURCES)}")
    save_vectors(out_path, vectors, meta)
    err.print(f"wrote {out_path}: {vectors.shape[0]:,} x {vectors.shape[1]} ({source})")


@app.command("fit")
def fit(vectors: list[Path] = typer.Argument(..., help="One or more vector files (fused if several)."),
        out_dir: Path = typer.Option(..., "--out", help="Run folder for tokenizer, codes and diagnostics."),
        method: str = typer.Option("rq-kmeans", help="rq-kmeans or rq-vae."),
        levels: int = typer.Option(3, help="Code levels (before collision handling)."),
        codebook_size: int = typer.Option(256, help="Codes per level."),
        collisions: str = typer.Option("append", help="append (TIGER extra level), reassign or none."),
        weights: Optional[str] = typer.Option(None, help="Fusion weights, comma-separated, one per vector file."),
        cf: Optional[Path] = typer.Option(None, help="rq-vae: CF vectors for the alignment loss."),
        dataset: Optional[Path] = typer.Option(None, help="Dataset folder, to name items by item_id in exports."),
        seed: int = typer.Option(0),
        device: str = typer.Option("cpu"),
        set_: list[str] = typer.Option([], "--set", help="Tokenizer option key=value, e.g. --set epochs=300 "
                                       "--set balanced=true --set cf_weight=0.1."),
        ) -> None:
    """Fit a tokenizer on item vectors and write the collision-free code table.

    Example: semrec ids fit runs/beauty/text.safetensors --out runs/beauty/ids --method rq-kmeans
    """
    from semrec.data import Dataset
    from semrec.features import load_vectors
    from semrec.semantic_ids import TOKENIZERS, diagnostics

    if method not in TOKENIZERS:
        raise ConfigError(f"unknown --method {method!r}; choose one of {', '.join(sorted(TOKENIZERS))}")
    w = [float(v) for v in weights.split(",")] if weights else None
    x = _load_inputs(vectors, w)
    cf_vec = load_vectors(cf) if cf is not None else None
    item_ids = Dataset.load(dataset).item_ids().tolist() if dataset else None
    if item_ids is not None and len(item_ids) != len(x):
        raise DataError(f"{len(x)} vectors but {len(item_ids)} items", path=dataset, fix="embed this dataset")
    opts = {"n_levels": levels, "codebook_size": codebook_size, "collisions": collisions, "seed": seed,
            "device": device, **parse_key_values(set_, "--set")}
    tok = TOKENIZERS[method](**opts).fit(x, cf_vectors=cf_vec, item_ids=item_ids)
    tok.save(out_dir)
    table = tok.table()
    table.to_parquet(out_dir / "codes.parquet")
    table.to_index_json(out_dir / "index.json")
    write_json(out_dir / "inputs.json", {"vectors": [str(p) for p in vectors], "weights": w,
                                         "cf": str(cf) if cf else None, "dataset": str(dataset) if dataset else None})
    diag = diagnostics(tok.raw_codes, tok.codes, tok.codebook_sizes, x)
    write_json(out_dir / "diagnostics.json", diag)
    out.print(_diag_table(diag, f"{method} on {len(x):,} items"))
    err.print(f"wrote {out_dir} (codes.safetensors, codes.parquet, index.json, tokenizer, diagnostics.json)")


@app.command("encode")
def encode(run_dir: Path = typer.Argument(..., help="Folder written by `semrec ids fit`."),
           vectors: list[Path] = typer.Argument(..., help="Vectors of the items to encode (same inputs as fit)."),
           out_path: Path = typer.Option(..., "--out", help="Parquet (item_idx, item_id, codes) or .json index."),
           item_ids: Optional[Path] = typer.Option(None, help="Text file, one item id per vector row."),
           add: bool = typer.Option(False, "--add", help="Add the new items to the run's code table."),
           ) -> None:
    """Codes for (new) items from their vectors alone: fitted items keep their code, new ones get free codes.

    Example: semrec ids encode runs/beauty/ids runs/new/text.safetensors --out runs/new/codes.parquet --add
    """
    from semrec.semantic_ids import CodeTable, Tokenizer

    tok = Tokenizer.load(run_dir)
    info = read_json(run_dir / "inputs.json") if (run_dir / "inputs.json").exists() else {}
    x = _load_inputs(vectors, info.get("weights"))
    ids = item_ids.read_text().split() if item_ids else None
    if ids is not None and len(ids) != len(x):
        raise DataError(f"{len(ids)} ids for {len(x)} vectors", path=item_ids)
    known = int((tok._lookup(x) >= 0).sum())
    codes = tok.encode(x, add=add, item_ids=ids)
    table = CodeTable(codes, tok.table().codebook_sizes, ids)
    table.to_index_json(out_path) if out_path.suffix == ".json" else table.to_parquet(out_path)
    if add:
        tok.save(run_dir)
        tok.table().to_parquet(run_dir / "codes.parquet")
        tok.table().to_index_json(run_dir / "index.json")
    err.print(f"wrote {out_path}: {len(x):,} items ({known:,} already in the table, {len(x) - known:,} new)"
              + (f"; table now {len(tok.codes):,} items" if add else ""))


@app.command("report")
def report(run_dir: Path = typer.Argument(..., help="Folder written by `semrec ids fit`."),
           vectors: list[Path] = typer.Option([], "--vectors", help="Vectors for coherence (default: fit inputs)."),
           ) -> None:
    """Print code diagnostics and write code_usage.png, prefix_sizes.png and diagnostics.json into RUN_DIR.

    Example: semrec ids report runs/beauty/ids
    """
    from semrec.semantic_ids import Tokenizer, diagnostics, plot_code_usage, plot_prefix_sizes

    tok = Tokenizer.load(run_dir)
    info = read_json(run_dir / "inputs.json") if (run_dir / "inputs.json").exists() else {}
    paths = vectors or [Path(p) for p in info.get("vectors", [])]
    x = None
    if paths and all(Path(p).exists() for p in paths):
        x = _load_inputs(paths, None if vectors else info.get("weights"))
        if len(x) != len(tok.raw_codes):
            err.print(f"{len(x):,} vectors for {len(tok.raw_codes):,} items: coherence skipped", style="yellow")
            x = None
    diag = diagnostics(tok.raw_codes, tok.codes, tok.codebook_sizes, x)
    write_json(run_dir / "diagnostics.json", diag)
    plot_code_usage(tok.raw_codes, tok.codebook_sizes, run_dir / "code_usage.png")
    plot_prefix_sizes(tok.raw_codes, run_dir / "prefix_sizes.png")
    out.print(_diag_table(diag, f"{tok.name} codes in {run_dir}"))
    err.print(f"wrote {run_dir}/diagnostics.json, code_usage.png, prefix_sizes.png")


def _diag_table(d: dict, title: str) -> Table:
    t = Table(title=title)
    t.add_column("level")
    for col in ("used", "utilisation", "entropy", "perplexity", "top share", "max group"):
        t.add_column(col, justify="right")
    for l, k in enumerate(d["codebook_sizes"]):
        t.add_row(str(l + 1), f"{round(d['utilization'][l] * k)}/{k}", f"{d['utilization'][l]:.1%}",
                  f"{d['entropy'][l]:.3f}", f"{d['perplexity'][l]:.1f}", f"{d['largest_code_share'][l]:.2%}",
                  f"{d['largest_group_per_prefix'][l]:,}")
    t.caption = (f"max group = most items sharing a prefix of that length. items {d['n_items']:,}; "
                 f"collision rate before {d['collision_rate_before']:.2%} "
                 f"({d['colliding_items_before']:,} items), final {d['collision_rate_final']:.2%}; "
                 f"{d['final_levels']} levels" + (f" (disambiguation size {d['disambiguation_size']})"
                                                  if d["disambiguation_size"] else ""))
    if "coherence" in d:
        per = ", ".join(f"{c:.3f}" for c in d["coherence_per_level"])
        t.caption += f"; coherence per prefix length {per} vs random pairs {d['coherence_random']:.3f}"
    return t


def register(root: typer.Typer) -> None:
    root.command("embed")(embed)
    root.add_typer(app, name="ids")
