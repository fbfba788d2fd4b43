"""`semrec ids import`: another tool's code table (LETTER/LC-Rec index.json, Parquet, .npy) as a semantic-ID
folder that `semrec ids report` and every model's `codes_path=` accept."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Optional

import typer

from semrec.cli.console import err, out
from semrec.cli.options import Overwrite
from semrec.errors import ConfigError


class ImportCollisions(str, enum.Enum):
    none = "none"
    append = "append"
    reassign = "reassign"


class Keys(str, enum.Enum):
    id = "id"
    index = "index"


def import_table(table: Path = typer.Argument(..., help="index.json (LETTER/LC-Rec), .parquet, .npy or .safetensors."),
                 dataset: Path = typer.Option(..., help="Dataset folder the codes belong to (rows = its item_idx)."),
                 out_dir: Path = typer.Option(..., "--out", help="Folder to write (codes.safetensors, ...)."),
                 collisions: ImportCollisions = typer.Option(
                     "none", help="Items sharing a code: none (keep; such a table cannot be trained on), append "
                     "(one extra level numbering them) or reassign (free last-level codes under the prefix)."),
                 keys: Keys = typer.Option("id", help="JSON keys / Parquet item column: dataset item ids, or "
                                           "item_idx (index)."),
                 codebook_sizes: Optional[str] = typer.Option(None, help="Per-level codebook sizes, e.g. "
                                                              "256,256,256 (default: file metadata, else max+1)."),
                 vectors: list[Path] = typer.Option([], "--vectors", help="Item vectors: coherence in the report "
                                                    "and, for reassign, the nearest free code."),
                 overwrite: Overwrite = False,
                 ) -> None:
    """Import another tool's semantic-ID table for DATASET, resolving collisions like `ids fit`.

    Example: semrec ids import Scientific.index.json --dataset data/scientific --out runs/scientific/ids-letter
    """
    import hashlib

    from semrec.cli.ids import _diag_table, _load_inputs, _warn
    from semrec.data import Dataset
    from semrec.io import atomic_dir, check_output, write_json
    from semrec.semantic_ids import diagnostics
    from semrec.semantic_ids.collisions import collision_rate
    from semrec.semantic_ids.imported import resolve_imported, save_imported
    from semrec.semantic_ids.importing import read_code_table

    check_output(out_dir, "codes", overwrite)
    try:
        sizes = [int(v) for v in codebook_sizes.split(",")] if codebook_sizes else None
    except ValueError:
        raise ConfigError(f"--codebook-sizes {codebook_sizes!r}: give comma-separated integers, one per level") \
            from None
    ds = Dataset.load(dataset)
    ids = ds.item_ids().tolist()
    raw = read_code_table(table, ids, keys=keys.value, codebook_sizes=sizes)
    x = _load_inputs(vectors, None, ids) if vectors else None
    final = resolve_imported(raw, collisions.value, x)
    rate = collision_rate(raw.codes)
    info = {"source": str(table), "format": _format(table), "sha256": hashlib.sha256(table.read_bytes()).hexdigest()
            if table.is_file() else None, "dataset": str(dataset), "item_fingerprint": ds.item_fingerprint(),
            "keys": keys.value, "collisions": collisions.value, "collision_rate_before": rate,
            "collision_rate_final": collision_rate(final.codes), "n_items": raw.n_items,
            "levels_before": raw.n_levels, "levels_final": final.n_levels,
            "codebook_sizes": final.codebook_sizes, "vectors": [str(p) for p in vectors] or None, "weights": None}
    diag = diagnostics(raw.codes, final.codes, raw.codebook_sizes, x)
    _warn(diag, False)
    with atomic_dir(out_dir, "codes", overwrite=overwrite) as tmp:
        save_imported(tmp, raw, final, info)
        write_json(tmp / "diagnostics.json", diag)
    out.print(_diag_table(diag, f"imported {info['format']} codes on {raw.n_items:,} items"))
    if info["collision_rate_final"] > 0:
        err.print(f"warning: {rate:.1%} of the codes are shared by several items; `ids report` works, but a model "
                  "cannot train on this table (fix: import again with --collisions append or --collisions reassign)",
                  style="yellow")
    err.print(f"wrote {out_dir} (codes.safetensors, raw_codes.safetensors, codes.parquet, index.json, import.json, "
              "diagnostics.json); train with --set codes_path=" + str(out_dir))


def _format(path: Path) -> str:
    return {".json": "index.json", ".parquet": "parquet", ".npy": "npy", ".safetensors": "safetensors"}.get(
        path.suffix.lower(), "folder" if path.is_dir() else path.suffix)
