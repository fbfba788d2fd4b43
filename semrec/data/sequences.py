"""Variable-length integer sequences stored flat (CSR): one array of items plus row offsets.

This is how histories, targets and training sequences travel between stages: no Python lists of
arrays, cheap slicing, and one call to turn a batch into a padded tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sequences:
    """`items[offsets[i]:offsets[i+1]]` is sequence i (oldest first)."""

    offsets: np.ndarray  # int64, len n+1, offsets[0] == 0
    items: np.ndarray  # int64 item indices

    def __post_init__(self) -> None:
        object.__setattr__(self, "offsets", np.asarray(self.offsets, dtype=np.int64))
        object.__setattr__(self, "items", np.asarray(self.items, dtype=np.int64))
        if self.offsets.ndim != 1 or len(self.offsets) == 0 or self.offsets[0] != 0:
            raise ValueError("offsets must be a 1-d array starting at 0")
        if self.offsets[-1] != len(self.items):
            raise ValueError("offsets[-1] must equal len(items)")

    @classmethod
    def from_lists(cls, seqs: list[list[int]] | list[np.ndarray]) -> "Sequences":
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        items = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]) if seqs else np.zeros(0, np.int64)
        return cls(offsets, items)

    @classmethod
    def from_lengths(cls, lengths: np.ndarray, items: np.ndarray) -> "Sequences":
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(offsets, items)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.items[self.offsets[i]:self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def to_lists(self) -> list[list[int]]:
        return [self[i].tolist() for i in range(len(self))]

    def select(self, rows: np.ndarray) -> "Sequences":
        """The sequences at `rows`, in that order (vectorised gather)."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        starts = self.offsets[rows]
        new_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=new_offsets[1:])
        # index of every output element in self.items
        idx = np.repeat(starts - new_offsets[:-1], lengths) + np.arange(new_offsets[-1])
        return Sequences(new_offsets, self.items[idx])

    def truncate(self, max_len: int) -> "Sequences":
        """Keep the last `max_len` items of every sequence."""
        return self.slice_tail(max_len)

    def slice_tail(self, max_len: int, drop_last: int = 0) -> "Sequences":
        """Drop the last `drop_last` items, then keep at most the last `max_len` of what remains."""
        ends = self.offsets[1:] - drop_last
        starts = np.maximum(self.offsets[:-1], ends - max_len)
        lengths = np.maximum(ends - starts, 0)
        new_offsets = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(lengths, out=new_offsets[1:])
        idx = np.repeat(starts - new_offsets[:-1], lengths) + np.arange(new_offsets[-1])
        return Sequences(new_offsets, self.items[idx])

    def last(self, n: int = 1) -> np.ndarray:
        """The item `n` positions from the end of each sequence (n=1: the last item)."""
        if np.any(self.lengths < n):
            raise ValueError(f"some sequences are shorter than {n}")
        return self.items[self.offsets[1:] - n]

    def to_padded(self, max_len: int | None = None, pad: int = -1, left: bool = True) -> np.ndarray:
        """A (n, max_len) array of the last `max_len` items per row; padding on the left by default."""
        lengths = self.lengths
        width = int(lengths.max(initial=0)) if max_len is None else max_len
        seqs = self.slice_tail(width)
        lengths = seqs.lengths
        out = np.full((len(seqs), width), pad, dtype=np.int64)
        rows = np.repeat(np.arange(len(seqs)), lengths)
        pos_in_row = np.arange(len(seqs.items)) - np.repeat(seqs.offsets[:-1], lengths)
        cols = pos_in_row + (width - np.repeat(lengths, lengths) if left else 0)
        out[rows, cols] = seqs.items
        return out
