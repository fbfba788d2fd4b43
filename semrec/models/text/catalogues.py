"""One item table for several catalogues (multi-domain pretraining, UniSRec-style).

Catalogue c's item i becomes item `offsets[c] + i` of the combined table; its text vector is row
`offsets[c] + i`, and its users become rows of the combined training sequences. Items are never merged across
catalogues, even when two catalogues hold the same text (same product sold in two categories): each keeps its
own index, so a model trained on the combined table can be evaluated on any one part with `local_items`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from semrec.data.sequences import Sequences
from semrec.data.splits import EvalSet
from semrec.errors import DataError


@dataclass
class Catalogue:
    """One part: its name, training sequences, optional validation rows, and (n_items, d) text vectors."""

    name: str
    train: Sequences
    vectors: np.ndarray
    valid: EvalSet | None = None


@dataclass
class CombinedCatalogue:
    """The combined table: `train`/`valid` in combined item indices, `vectors` stacked, `offsets[name]` = first row."""

    names: list[str]
    offsets: dict[str, int]
    sizes: dict[str, int]
    train: Sequences
    vectors: np.ndarray
    valid: EvalSet | None

    @property
    def n_items(self) -> int:
        return len(self.vectors)

    def catalogue_of(self, items: np.ndarray) -> np.ndarray:
        """Index into `names` of the catalogue each combined item belongs to."""
        starts = np.array([self.offsets[n] for n in self.names])
        return np.searchsorted(starts, np.asarray(items), side="right") - 1

    def local_items(self, name: str, items: np.ndarray) -> np.ndarray:
        """Combined indices -> indices of catalogue `name` (DataError if an item belongs elsewhere)."""
        items = np.asarray(items)
        local = items - self.offsets[name]
        if items.size and (local.min() < 0 or local.max() >= self.sizes[name]):
            raise DataError(f"items outside catalogue {name!r} (its rows are {self.offsets[name]}.."
                            f"{self.offsets[name] + self.sizes[name] - 1})")
        return local


def _shift(s: Sequences, by: int) -> Sequences:
    return Sequences(s.offsets.copy(), s.items + by)


def combine_catalogues(parts: list[Catalogue]) -> CombinedCatalogue:
    """Stack catalogues into one item table and one set of training users (validation rows too, when all have them)."""
    if not parts:
        raise DataError("combine_catalogues needs at least one catalogue")
    names = [p.name for p in parts]
    if len(set(names)) != len(names):
        raise DataError(f"catalogue names must be distinct, got {names}")
    dims = {p.vectors.shape[1] for p in parts}
    if len(dims) != 1:
        raise DataError(f"catalogues have text vectors of different sizes {sorted(dims)}",
                        fix="encode every catalogue with the same text encoder")
    sizes = {p.name: len(p.vectors) for p in parts}
    starts = np.concatenate([[0], np.cumsum([len(p.vectors) for p in parts])[:-1]]).astype(int)
    offsets = dict(zip(names, starts.tolist()))
    for p in parts:
        if p.train.items.size and p.train.items.max() >= len(p.vectors):
            raise DataError(f"catalogue {p.name!r}: item {int(p.train.items.max())} has no text vector "
                            f"({len(p.vectors)} rows)")
    trains = [_shift(p.train, offsets[p.name]) for p in parts]
    train = Sequences.from_lengths(np.concatenate([t.lengths for t in trains]),
                                   np.concatenate([t.items for t in trains]))
    valid = None
    if all(p.valid is not None for p in parts):
        user_starts = np.concatenate([[0], np.cumsum([len(p.train) for p in parts])[:-1]])
        hs = [_shift(p.valid.histories, offsets[p.name]) for p in parts]
        ts = [_shift(p.valid.targets, offsets[p.name]) for p in parts]
        valid = EvalSet(np.concatenate([p.valid.users + u for p, u in zip(parts, user_starts)]),
                        Sequences.from_lengths(np.concatenate([h.lengths for h in hs]),
                                               np.concatenate([h.items for h in hs])),
                        Sequences.from_lengths(np.concatenate([t.lengths for t in ts]),
                                               np.concatenate([t.items for t in ts])))
    vectors = np.concatenate([np.asarray(p.vectors, dtype=np.float32) for p in parts])
    return CombinedCatalogue(names, offsets, sizes, train, vectors, valid)


__all__ = ["Catalogue", "CombinedCatalogue", "combine_catalogues"]
