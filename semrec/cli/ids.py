"""`semrec embed` (item vectors) and `semrec ids fit|encode|report|import` (semantic IDs)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from semrec.cli.console import err, out
from semrec.cli.options import Device, Overwrite, Threads, check_device, parse_key_values, set_threads
from semrec.errors import ConfigError, DataError
from semrec.io import read_json, write_json

app = typer.Typer(help="Semantic IDs: fit tokenizers on item vectors, encode new items, inspect codes.",
                  no_args_is_help=True)


class Source(str, enum.Enum):
    text = "text"
    attributes = "attributes"
    precomputed = "precomputed"
    cf = "cf"
    image = "image"


class Collisions(str, enum.Enum):
    append = "append"
    reassign = "reassign"
    none = "none"


def _load_inputs(paths: list[Path], weights: list[float] | None, item_ids: list[str] | None = None
                 ) -> np.ndarray:
    from semrec.features import fuse, load_vectors

    if weights is not None and len(weights) != len(paths):
        raise ConfigError(f"--weights has {len(weights)} value(s) for {len(paths)} vector file(s); give one each")
    vecs = [load_vectors(p, item_ids=item_ids) for p in paths]
    if len({len(v) for v in vecs}) > 1:
        raise DataError(f"vector files have different row counts {[len(v) for v in vecs]}", path=paths[0],
                        fix="embed every source for the same dataset")
    return vecs[0] if len(vecs) == 1 and not weights else fuse(vecs, weights)


def _check_vectors_match(paths: list[Path], dataset_fp: str) -> None:
    """Vector files that say which dataset they were made for must be for this one."""
    from semrec.io import safetensors_metadata

    for p in paths:
        fp = safetensors_metadata(p).get("item_fingerprint") if p.suffix == ".safetensors" else None
        if fp and fp != dataset_fp:
            raise DataError("these vectors were computed for another dataset (item fingerprint differs)", path=p,
                            fix="embed the dataset given with --dataset, or pass the dataset they were made for")


def embed(dataset: Path = typer.Argument(..., help="Dataset folder (from `semrec data import`)."),
          out_path: Path = typer.Option(..., "--out", help="Vectors file to write (.safetensors, row = item_idx)."),
          source: Source = typer.Option("text", help=f"One of {', '.join(s.value for s in Source)}."),
          fields: Optional[str] = typer.Option(None, help="text: comma-separated fields (default: dataset's)."),
          model: Optional[str] = typer.Option(None, help="text: sentence-transformers folder; image: CLIP folder."),
          from_path: Optional[str] = typer.Option(None, "--from", help="precomputed: .npy/.parquet file; cf: run "
                                                  "folder (or its model folder), or 'sppmi' (co-occurrence)."),
          column: Optional[str] = typer.Option(None, help="attributes/image: item column (default attribute_ids "
                                               "/ image_path)."),
          dim: int = typer.Option(64, min=1, help="attributes / sppmi: output dimension."),
          cache: Optional[Path] = typer.Option(Path("runs/cache/text"), help="text: vector cache folder."),
          no_cache: bool = typer.Option(False, "--no-cache", help="text: do not read or write the cache."),
          batch_size: int = typer.Option(128, min=1, help="Encoder batch size."),
          device: Device = "cpu",
          threads: Threads = None,
          overwrite: Overwrite = False,
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
    from semrec.io import check_output_file

    source_name = str(getattr(source, "value", source))
    check_output_file(out_path, "vectors", overwrite)
    check_device(device)
    if out_path.suffix != ".safetensors":
        raise ConfigError(f"--out {out_path}: vectors are written as .safetensors (fix: --out NAME.safetensors)")
    if source_name in ("precomputed", "cf") and not from_path:
        raise ConfigError(f"--source {source_name} needs --from (precomputed: FILE; cf: RUN_DIR or sppmi)")
    if source_name == "image" and not model:
        raise ConfigError("--source image needs --model CLIP_FOLDER")
    if source_name == "text" and not no_cache and cache is not None and cache.exists() and not cache.is_dir():
        raise ConfigError(f"--cache {cache} is a file; the text cache is a folder (fix: another --cache, or "
                          "--no-cache)")
    set_threads(threads)
    ds = Dataset.load(dataset)
    meta = {"dataset": str(dataset), "source": source_name, "rows": "item_idx",
            "item_fingerprint": ds.item_fingerprint()}
    if source_name == "text":
        from semrec.data import item_sentences

        names = [f.strip() for f in fields.split(",") if f.strip()] if fields else (ds.text_fields or None)
        if not names:
            raise ConfigError(f"{dataset} has no text fields (fix: pass --fields title,brand,...)")
        missing = [f for f in names if f not in ds.items.columns]
        if missing:
            raise ConfigError(f"--fields: {missing} are not columns of the item table; available: "
                              f"{[c for c in ds.items.columns if c not in ('item_idx', 'item_id')]}")
        enc = TextEncoder(model=model, batch_size=batch_size, device=device,
                          cache_dir=None if no_cache else str(cache))
        vectors = enc.encode(item_sentences(ds.items, names))
        meta.update(model=enc.model_id, fields=",".join(names))
        err.print(f"text: {enc.stats['encoded']:,} encoded, {enc.stats['cached']:,} from cache "
                  f"({enc.stats['unique']:,} distinct sentences)")
    elif source_name == "attributes":
        col = column or "attribute_ids"
        if col not in ds.items.columns:
            raise DataError(f"item table has no column {col!r}", path=dataset / "items.parquet", field=col,
                            fix="import with the attributes option or pass --column")
        vectors = attribute_vectors(ds.items[col], dim=dim)
    elif source_name == "precomputed":
        vectors = load_vectors(from_path, item_ids=ds.item_ids())
        meta["from"] = from_path
    elif source_name == "cf":
        if from_path == "sppmi":
            vectors = cooccurrence_vectors(leave_one_out(ds).train, ds.n_items, dim=dim)
        else:
            vectors = run_item_vectors(_cf_model_dir(Path(from_path), ds))
        if len(vectors) != ds.n_items:
            raise DataError(f"{len(vectors)} CF vectors for {ds.n_items} items", path=from_path,
                            fix="use a run trained on this dataset")
        meta["from"] = from_path
    else:
        col = column or "image_path"
        if col not in ds.items.columns:
            raise ConfigError(f"--source image needs an item column {col!r} of image file paths (fix: --column)")
        vectors = ImageEncoder(model=model, batch_size=batch_size, device=device).encode(ds.items[col].to_list())
        meta["model"] = model
    save_vectors(out_path, vectors, meta)
    err.print(f"wrote {out_path}: {vectors.shape[0]:,} x {vectors.shape[1]} ({source_name})")


def _cf_model_dir(path: Path, ds: object) -> Path:
    """The model folder of `--from`: a run folder (checked to be trained on this dataset) or a model folder."""
    if (path / "model" / "model.safetensors").exists():
        info = read_json(path / "config.json") if (path / "config.json").exists() else {}
        fp = info.get("item_fingerprint")
        if fp and fp != ds.item_fingerprint():  # type: ignore[attr-defined]
            raise DataError("this run was trained on another dataset (item fingerprint differs)", path=path,
                            fix="pass a run trained on this dataset")
        return path / "model"
    if (path / "model.safetensors").exists():
        return path
    raise DataError("not a run folder or model folder (no model.safetensors)", path=path,
                    fix="pass a folder written by `semrec train` (or its model/ subfolder), or --from sppmi")


@app.command("fit")
def fit(vectors: list[Path] = typer.Argument(..., help="One or more vector files (fused if several)."),
        out_dir: Path = typer.Option(..., "--out", help="Run folder for tokenizer, codes and diagnostics."),
        method: str = typer.Option("rq-kmeans", help="rq-kmeans or rq-vae."),
        levels: int = typer.Option(3, min=1, help="Code levels (before collision handling)."),
        codebook_size: Optional[int] = typer.Option(None, min=2, help="Codes per level (default: from the catalogue "
                                                    "size, at most 256; see docs/semantic_ids.md)."),
        collisions: Collisions = typer.Option("append", help="append (TIGER extra level), reassign or none."),
        weights: Optional[str] = typer.Option(None, help="Fusion weights, comma-separated, one per vector file."),
        cf: Optional[Path] = typer.Option(None, help="rq-vae: CF vectors for the alignment loss."),
        dataset: Optional[Path] = typer.Option(None, help="Dataset folder, to name items by item_id in exports."),
        seed: int = typer.Option(0),
        device: Device = "cpu",
        threads: Threads = None,
        overwrite: Overwrite = False,
        set_: list[str] = typer.Option([], "--set", help="Tokenizer option key=value, e.g. --set epochs=300 "
                                       "--set balanced=true --set cf_weight=0.1."),
        ) -> None:
    """Fit a tokenizer on item vectors and write the collision-free code table.

    Example: semrec ids fit runs/beauty/text.safetensors --out runs/beauty/ids --method rq-kmeans
    """
    from semrec.data import Dataset
    from semrec.features import load_vectors
    from semrec.io import atomic_dir, check_output
    from semrec.semantic_ids import TOKENIZERS, diagnostics
    from semrec.training.config import apply_overrides

    check_output(out_dir, "tokenizer", overwrite)
    check_device(device)
    if method not in TOKENIZERS:
        raise ConfigError(f"unknown --method {method!r}; choose one of {', '.join(sorted(TOKENIZERS))}")
    try:
        w = [float(v) for v in weights.split(",")] if weights else None
    except ValueError:
        raise ConfigError(f"--weights {weights!r}: give comma-separated numbers, one per vector file") from None
    if w is not None and (len(w) != len(vectors) or any(not np.isfinite(x) or x < 0 for x in w)):
        raise ConfigError(f"--weights {weights!r}: give {len(vectors)} finite non-negative number(s), one per file")
    opts = {"n_levels": levels, "collisions": collisions.value, "seed": seed, "device": device}
    if codebook_size is not None:
        opts["codebook_size"] = codebook_size
    overrides = {**opts, **parse_key_values(set_, "--set")}
    apply_overrides(TOKENIZERS[method].Config(), overrides)  # bad options fail before any work
    set_threads(threads)
    ds = Dataset.load(dataset) if dataset else None
    if ds is not None:
        _check_vectors_match([*vectors, *([cf] if cf else [])], ds.item_fingerprint())
    item_ids = ds.item_ids().tolist() if ds is not None else None
    x = _load_inputs(vectors, w, item_ids)
    cf_vec = load_vectors(cf, item_ids=item_ids) if cf is not None else None
    if item_ids is not None and len(item_ids) != len(x):
        raise DataError(f"{len(x)} vectors but {len(item_ids)} items", path=dataset, fix="embed this dataset")
    if cf_vec is not None and len(cf_vec) != len(x):
        raise DataError(f"{len(cf_vec)} CF vectors for {len(x)} items", path=cf, fix="embed the same dataset")
    if "codebook_size" not in overrides and hasattr(TOKENIZERS[method].Config(), "codebook_size"):
        from semrec.semantic_ids.sizing import default_codebook_size

        overrides["codebook_size"] = default_codebook_size(len(x))
        err.print(f"codebook size {overrides['codebook_size']} for {len(x):,} items (set --codebook-size to choose)")
    cfg = apply_overrides(TOKENIZERS[method].Config(), overrides)
    if len(x) < getattr(cfg, "codebook_size", 0):
        raise ConfigError(f"--codebook-size {cfg.codebook_size} exceeds the {len(x)} items to encode "
                          "(fix: a smaller codebook)")
    tok = TOKENIZERS[method](cfg).fit(x, cf_vectors=cf_vec, item_ids=item_ids)
    diag = diagnostics(tok.raw_codes, tok.codes, tok.codebook_sizes, x)
    _warn(diag, bool(getattr(cfg, "balanced", False)))
    with atomic_dir(out_dir, "tokenizer", overwrite=overwrite) as tmp:
        _save_tokenizer(tok, tmp)
        write_json(tmp / "inputs.json", {"vectors": [str(p) for p in vectors], "weights": w,
                                         "cf": str(cf) if cf else None, "dataset": str(dataset) if dataset else None})
        write_json(tmp / "diagnostics.json", diag)
    out.print(_diag_table(diag, f"{method} on {len(x):,} items"))
    err.print(f"wrote {out_dir} (codes.safetensors, codes.parquet, index.json, tokenizer, diagnostics.json)")


def _save_tokenizer(tok: object, folder: Path) -> None:
    """The tokenizer and its code table in every export format, into `folder`."""
    tok.save(folder)  # type: ignore[attr-defined]
    table = tok.table()  # type: ignore[attr-defined]
    table.to_parquet(folder / "codes.parquet")
    table.to_index_json(folder / "index.json")


@app.command("encode")
def encode(run_dir: Path = typer.Argument(..., help="Folder written by `semrec ids fit`."),
           vectors: list[Path] = typer.Argument(..., help="Vectors of the items to encode (same inputs as fit)."),
           out_path: Path = typer.Option(..., "--out", help="Parquet (item_idx, item_id, codes) or .json index."),
           item_ids: Optional[Path] = typer.Option(None, help="Text file, one item id per vector row."),
           add: bool = typer.Option(False, "--add", help="Add the new items to the run's code table."),
           overwrite: Overwrite = False,
           ) -> None:
    """Codes for (new) items from their vectors alone: fitted items keep their code, new ones get free codes.

    Example: semrec ids encode runs/beauty/ids runs/new/text.safetensors --out runs/new/codes.parquet --add
    """
    import shutil

    from semrec.io import atomic_dir, check_output_file
    from semrec.semantic_ids import CodeTable, Tokenizer

    if out_path.suffix not in (".parquet", ".json"):
        raise ConfigError(f"--out {out_path}: write .parquet (item_idx, item_id, codes) or .json (index)")
    check_output_file(out_path, "codes", overwrite) if out_path.suffix == ".parquet" else \
        _check_json_output(out_path, overwrite)
    if (run_dir / "import.json").exists() and not (run_dir / "tokenizer.json").exists():
        raise DataError("an imported code table has no tokenizer, so it cannot encode new items", path=run_dir,
                        fix="encode them with the tool that made the table, then `semrec ids import` it again")
    tok = Tokenizer.load(run_dir)
    info = read_json(run_dir / "inputs.json") if (run_dir / "inputs.json").exists() else {}
    x = _load_inputs(vectors, info.get("weights") if len(vectors) == len(info.get("vectors") or []) else None)
    ids = item_ids.read_text(encoding="utf-8").split() if item_ids else None
    if ids is not None and len(ids) != len(x):
        raise DataError(f"{len(ids)} ids for {len(x)} vectors", path=item_ids, fix="one id per vector row")
    known = int((tok._lookup(x) >= 0).sum())
    codes = tok.encode(x, add=add, item_ids=ids)
    table = CodeTable(codes, tok.table().codebook_sizes, ids)
    table.to_index_json(out_path) if out_path.suffix == ".json" else table.to_parquet(out_path)
    if add:  # rewrite the run folder whole: copy what stays, then the updated tokenizer and tables
        with atomic_dir(run_dir, "tokenizer", overwrite=True) as tmp:
            for p in run_dir.iterdir():
                if p.is_file() and p.name not in ("tokenizer.json", "tokenizer.safetensors", "codes.safetensors",
                                                  "codes.parquet", "index.json", ".semrec.json"):
                    shutil.copy2(p, tmp / p.name)
            _save_tokenizer(tok, tmp)
    err.print(f"wrote {out_path}: {len(x):,} items ({known:,} already in the table, {len(x) - known:,} new)"
              + (f"; table now {len(tok.codes):,} items" if add else ""))


def _check_json_output(path: Path, overwrite: bool) -> None:
    """An index .json may replace only an index .json (item id -> list of codes)."""
    from semrec.io import check_output

    kind = None
    if path.is_file():
        try:
            obj = read_json(path)
            kind = "codes" if all(isinstance(v, list) for v in obj.values()) else None
        except DataError:
            kind = None
    check_output(path, "codes", overwrite, is_file=True, file_kind=kind)


@app.command("report")
def report(run_dir: Path = typer.Argument(..., help="Folder written by `semrec ids fit` or `semrec ids import`."),
           vectors: list[Path] = typer.Option([], "--vectors", help="Vectors for coherence (default: fit inputs)."),
           dataset: Optional[Path] = typer.Option(None, help="Dataset folder: adds identifier-quality numbers "
                                                  "(next-item prefix transitions, CF coherence) from its training "
                                                  "split."),
           ) -> None:
    """Print code diagnostics and write code_usage.png, prefix_sizes.png and diagnostics.json into RUN_DIR.

    Example: semrec ids report runs/beauty/ids --dataset data/beauty
    """
    from semrec.semantic_ids import diagnostics, plot_code_usage, plot_prefix_sizes
    from semrec.semantic_ids.imported import load_code_folder

    raw, final, sizes, _ = load_code_folder(run_dir)
    info = {}
    for name in ("inputs.json", "import.json"):
        if (run_dir / name).exists():
            info = read_json(run_dir / name)
    paths = vectors or [Path(p) for p in info.get("vectors") or []]
    x = None
    if paths and all(Path(p).exists() for p in paths):
        x = _load_inputs(paths, None if vectors else info.get("weights"))
        if len(x) != len(raw):
            err.print(f"{len(x):,} vectors for {len(raw):,} items: coherence skipped", style="yellow")
            x = None
    diag = diagnostics(raw, final, sizes, x)
    if dataset is not None:
        diag["quality"] = _quality(raw, sizes, dataset)
    _warn(diag, _balanced(run_dir))
    write_json(run_dir / "diagnostics.json", diag)
    plot_code_usage(raw, sizes, run_dir / "code_usage.png")
    plot_prefix_sizes(raw, run_dir / "prefix_sizes.png")
    kind = read_json(run_dir / "tokenizer.json").get("tokenizer") if (run_dir / "tokenizer.json").exists() \
        else f"imported ({info.get('format', '?')})"
    out.print(_diag_table(diag, f"{kind} codes in {run_dir}"))
    err.print(f"wrote {run_dir}/diagnostics.json, code_usage.png, prefix_sizes.png")


def _balanced(run_dir: Path) -> bool:
    if not (run_dir / "tokenizer.json").exists():
        return False
    return bool((read_json(run_dir / "tokenizer.json").get("config") or {}).get("balanced"))


def _warn(diag: dict, balanced: bool) -> None:
    """Add `warnings` (oversized / collapsed codebooks, raw collisions) to `diag` and print them."""
    from semrec.semantic_ids.sizing import codebook_warnings

    diag["warnings"] = codebook_warnings(diag, balanced)
    for w in diag["warnings"]:
        err.print(f"warning: {w}", style="yellow")


def _quality(raw: np.ndarray, sizes: list[int], dataset: Path) -> dict:
    """FORGE-style quality numbers of `raw` codes on a dataset's training split (see semantic_ids.quality)."""
    from semrec.data import Dataset, leave_one_out
    from semrec.features.collaborative import cooccurrence_vectors
    from semrec.semantic_ids.quality import quality

    ds = Dataset.load(dataset)
    if ds.n_items != len(raw):
        raise DataError(f"the dataset has {ds.n_items:,} items, the code table {len(raw):,}", path=dataset,
                        fix="pass the dataset the codes were made for")
    train = leave_one_out(ds).train
    return quality(raw, sizes, train, cooccurrence_vectors(train, ds.n_items, dim=64, window=5))


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
    q = d.get("quality")
    if q:
        t.caption += (f"; uniformity per level {', '.join(f'{u:.2f}' for u in q['uniformity'])}; next-item pairs "
                      f"sharing the level-1 code {q['transition_same_prefix'][0]:.1%} (x{q['transition_lift'][0]:.1f} "
                      f"chance), level-1 purity {q['transition_purity'][0]:.1%}; CF coherence lift "
                      f"{q['cf_coherence_lift']:+.3f}")
    return t


from semrec.cli.ids_import import import_table  # noqa: E402  (the `ids import` command)

app.command("import")(import_table)


def register(root: typer.Typer) -> None:
    root.command("embed")(embed)
    root.add_typer(app, name="ids")
