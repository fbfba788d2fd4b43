"""An imported code table as a semrec semantic-ID folder: what `semrec ids import` writes and `ids report` /
`codes_path=` read.

The folder holds `codes.safetensors` (final codes, the table models train on), `raw_codes.safetensors` (the
table as read), `codes.parquet`, `index.json`, `import.json` (source, format, collision handling) and
`diagnostics.json`. There is no tokenizer: new items are encoded by the tool that made the table.

Collisions are resolved like `ids fit` does: `append` numbers the items sharing a code on one extra level;
`reassign` moves them to free last-level codes under the same prefix. An imported table has no codewords, so
the distance to a last-level codeword is estimated from item vectors when given (an item's residual is its
vector minus the mean of its prefix group; codeword k is the mean residual of the items holding k), else
every free code is equally near and the free codes are taken in ascending order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from semrec.errors import DataError
from semrec.semantic_ids.collisions import collision_rate, group_ids, resolve
from semrec.semantic_ids.table import CodeTable

MODES = ("none", "append", "reassign")


class _LastDistances:
    """(n, K) distances to estimated last-level codewords, computed only for the rows `reassign` reads."""

    def __init__(self, codes: np.ndarray, k: int, vectors: np.ndarray | None):
        self.shape = (len(codes), k)
        self.vectors = None
        if vectors is not None:
            v = np.asarray(vectors, dtype=np.float64)
            gid, counts = group_ids(codes[:, :-1])
            means = np.zeros((len(counts), v.shape[1]))
            np.add.at(means, gid, v)
            self.residual = v - (means / counts[:, None])[gid]
            last = codes[:, -1]
            sums = np.zeros((k, v.shape[1]))
            np.add.at(sums, last, self.residual)
            held = np.bincount(last, minlength=k)
            self.codewords = sums / np.maximum(held, 1)[:, None]
            self.vectors = v

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        if self.vectors is None:
            return np.zeros((len(rows), self.shape[1]))
        r = self.residual[rows]
        return (r * r).sum(1)[:, None] - 2 * r @ self.codewords.T + (self.codewords ** 2).sum(1)[None, :]


def resolve_imported(table: CodeTable, mode: str, vectors: np.ndarray | None = None) -> CodeTable:
    """Collision-free final table from an imported raw table (`none` keeps the codes as they are)."""
    if mode not in MODES:
        raise DataError(f"unknown collision mode {mode!r}", fix=f"use one of {', '.join(MODES)}")
    raw = table.codes
    sizes = list(table.codebook_sizes)
    if mode == "none" or collision_rate(raw) == 0:
        return CodeTable(raw, sizes, table.item_ids)
    if vectors is not None and len(vectors) != len(raw):
        raise DataError(f"{len(vectors):,} vectors for {len(raw):,} items", fix="pass vectors of the same dataset")
    last = _LastDistances(raw, sizes[-1], vectors) if mode == "reassign" else None
    final = resolve(raw, mode, last)
    if mode == "append":
        sizes = sizes + [int(final[:, -1].max()) + 1]
    return CodeTable(final, sizes, table.item_ids)


def save_imported(folder: Path, raw: CodeTable, final: CodeTable, info: dict[str, Any]) -> None:
    """Write every file of an imported-codes folder into `folder` (the caller makes it atomic)."""
    from semrec.io import write_json

    final.save(folder / "codes.safetensors")
    raw.save(folder / "raw_codes.safetensors")
    final.to_parquet(folder / "codes.parquet")
    if final.n_levels <= 26:
        final.to_index_json(folder / "index.json")
    write_json(folder / "import.json", info)


def load_code_folder(folder: str | Path) -> tuple[np.ndarray, np.ndarray, list[int], list[str] | None]:
    """(raw codes, final codes, raw codebook sizes, item ids) of a `semrec ids fit` or `ids import` folder."""
    folder = Path(folder)
    if (folder / "tokenizer.json").exists():
        from semrec.semantic_ids.tokenizer import Tokenizer

        tok = Tokenizer.load(folder)
        return tok.raw_codes, tok.codes, list(tok.codebook_sizes), tok.item_ids
    if not (folder / "codes.safetensors").exists():
        raise DataError("not a semantic-ID folder (no tokenizer.json or codes.safetensors)", path=folder,
                        fix="pass a folder written by `semrec ids fit` or `semrec ids import`")
    final = CodeTable.load(folder / "codes.safetensors")
    raw = CodeTable.load(folder / "raw_codes.safetensors") if (folder / "raw_codes.safetensors").exists() else final
    if raw.n_items != final.n_items:
        raise DataError(f"raw_codes.safetensors has {raw.n_items:,} rows, codes.safetensors {final.n_items:,}",
                        path=folder, fix="import the table again")
    return raw.codes, final.codes, list(raw.codebook_sizes), final.item_ids
