"""Train/validation/test splits: leave-one-out (the TIGER/P5 protocol), temporal, random, cold-start items."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semrec.data.dataset import Dataset
from semrec.data.sequences import Sequences
from semrec.errors import DataError
from semrec.io import atomic_dir, load_npz, read_json, write_json


@dataclass
class EvalSet:
    """Rows to evaluate: user index, the history a model sees, and the held-out target item(s)."""

    users: np.ndarray
    histories: Sequences
    targets: Sequences

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, rows: np.ndarray) -> "EvalSet":
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        return EvalSet(self.users[rows], self.histories.select(rows), self.targets.select(rows))


@dataclass
class Split:
    """`train[u]` is user u's training sequence; `valid`/`test` are evaluation rows."""

    train: Sequences
    valid: EvalSet
    test: EvalSet
    n_items: int
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    cold_items: np.ndarray | None = None

    def save(self, path: str | Path, overwrite: bool = True) -> None:
        """Arrays as .npz (no pickle) plus split.json."""
        with atomic_dir(path, "split", overwrite=overwrite) as tmp:
            arrays: dict[str, np.ndarray] = {"train_offsets": self.train.offsets, "train_items": self.train.items}
            for name, es in (("valid", self.valid), ("test", self.test)):
                arrays |= {f"{name}_users": es.users, f"{name}_hist_offsets": es.histories.offsets,
                           f"{name}_hist_items": es.histories.items, f"{name}_tgt_offsets": es.targets.offsets,
                           f"{name}_tgt_items": es.targets.items}
            if self.cold_items is not None:
                arrays["cold_items"] = self.cold_items
            np.savez_compressed(tmp / "split.npz", **arrays)
            write_json(tmp / "split.json", {"kind": self.kind, "n_items": self.n_items, "options": self.options})

    @classmethod
    def load(cls, path: str | Path) -> "Split":
        """Read a split folder; missing, truncated or inconsistent arrays are a DataError naming the file."""
        path = Path(path)
        fix = "re-create it with `semrec data split`"
        if not (path / "split.json").is_file():
            raise DataError("not a split folder (no split.json)", path=path,
                            fix="pass a folder written by `semrec data split` (or omit --split)")
        info = read_json(path / "split.json")
        if not isinstance(info.get("n_items"), int) or not isinstance(info.get("kind"), str):
            raise DataError("needs an integer 'n_items' and a string 'kind'", path=path / "split.json", fix=fix)
        keys = ["train_offsets", "train_items"] + [f"{n}_{k}" for n in ("valid", "test") for k in
                                                    ("users", "hist_offsets", "hist_items", "tgt_offsets",
                                                     "tgt_items")]
        a = load_npz(path / "split.npz", tuple(keys), "split arrays", fix)
        try:
            def es(name: str) -> EvalSet:
                return EvalSet(a[f"{name}_users"], Sequences(a[f"{name}_hist_offsets"], a[f"{name}_hist_items"]),
                               Sequences(a[f"{name}_tgt_offsets"], a[f"{name}_tgt_items"]))

            sp = cls(Sequences(a["train_offsets"], a["train_items"]), es("valid"), es("test"), info["n_items"],
                     info["kind"], info.get("options", {}), a.get("cold_items"))
            if any(len(e.users) != len(e.histories) or len(e.users) != len(e.targets) for e in (sp.valid, sp.test)):
                raise ValueError("evaluation rows, histories and targets differ in length")
        except ValueError as e:
            raise DataError(f"inconsistent split arrays: {e}", path=path / "split.npz", fix=fix) from None
        for seqs in (sp.train, sp.valid.histories, sp.valid.targets, sp.test.histories, sp.test.targets):
            if len(seqs.items) and (seqs.items.min() < 0 or seqs.items.max() >= sp.n_items):
                raise DataError(f"item indices outside 0..{sp.n_items - 1}", path=path / "split.npz", fix=fix)
        return sp


def check_fractions(kind: str, **fractions: float) -> None:
    """Split ratios must lie in [0, 1) and leave some training data; a ConfigError names the option."""
    from semrec.errors import ConfigError

    for name, value in fractions.items():
        if not 0.0 <= float(value) < 1.0:
            raise ConfigError(f"split {kind!r}: {name}={value} must be in [0, 1)")
    if sum(float(v) for v in fractions.values()) >= 1.0:
        raise ConfigError(f"split {kind!r}: {' + '.join(fractions)} must stay below 1")


def _single_targets(items: np.ndarray) -> Sequences:
    return Sequences(np.arange(len(items) + 1), items)


def leave_one_out(ds: Dataset, min_length: int = 3) -> Split:
    """Per user: last item = test, second-to-last = validation, the rest = training.

    The test history includes the validation item (as in S3-Rec/P5/TIGER). Users with fewer than
    `min_length` interactions are kept for training only.
    """
    seqs = ds.sequences()
    lengths = seqs.lengths
    eligible = np.flatnonzero(lengths >= min_length)
    train = Sequences.from_lengths(np.where(lengths >= min_length, lengths - 2, lengths),
                                   _drop_tail(seqs, np.where(lengths >= min_length, 2, 0)))
    ev = seqs.select(eligible)
    valid = EvalSet(eligible, ev.slice_tail(10**9, drop_last=2), _single_targets(ev.last(2)))
    test = EvalSet(eligible, ev.slice_tail(10**9, drop_last=1), _single_targets(ev.last(1)))
    return Split(train, valid, test, ds.n_items, "leave-one-out", {"min_length": min_length})


def _drop_tail(seqs: Sequences, drop: np.ndarray) -> np.ndarray:
    keep = np.ones(len(seqs.items), dtype=bool)
    ends = seqs.offsets[1:]
    for k in (1, 2):
        rows = np.flatnonzero(drop >= k)
        keep[ends[rows] - k] = False
    return seqs.items[keep]


def _split_by_mask(ds: Dataset, bucket: np.ndarray, kind: str, options: dict[str, Any]) -> Split:
    """bucket per interaction: 0 train, 1 valid, 2 test. Valid/test rows are users with such items."""
    inter = ds.interactions
    user = inter["user_idx"].to_numpy()
    item = inter["item_idx"].to_numpy()

    def seqs_where(mask: np.ndarray) -> Sequences:
        return Sequences.from_lengths(np.bincount(user[mask], minlength=ds.n_users), item[mask])

    train = seqs_where(bucket == 0)
    train_valid = seqs_where(bucket <= 1)

    def evalset(b: int, hist: Sequences) -> EvalSet:
        tg = seqs_where(bucket == b)
        rows = np.flatnonzero((tg.lengths > 0) & (hist.lengths > 0))
        return EvalSet(rows, hist.select(rows), tg.select(rows))

    return Split(train, evalset(1, train), evalset(2, train_valid), ds.n_items, kind, options)


def temporal_split(ds: Dataset, valid_time: int, test_time: int) -> Split:
    """Global cut-off: interactions before `valid_time` train, [valid_time, test_time) validate, the rest test."""
    ts = ds.interactions["timestamp"].to_numpy()
    bucket = np.where(ts < valid_time, 0, np.where(ts < test_time, 1, 2))
    return _split_by_mask(ds, bucket, "temporal", {"valid_time": valid_time, "test_time": test_time})


def random_split(ds: Dataset, valid: float = 0.1, test: float = 0.1, seed: int = 0) -> Split:
    """Each interaction goes to train/valid/test at random with the given ratios."""
    check_fractions("random", valid=valid, test=test)
    r = np.random.default_rng(seed).random(ds.n_interactions)
    bucket = np.where(r < test, 2, np.where(r < test + valid, 1, 0))
    return _split_by_mask(ds, bucket, "random", {"valid": valid, "test": test, "seed": seed})


def cold_start_split(ds: Dataset, fraction: float = 0.05, seed: int = 0, min_length: int = 3) -> Split:
    """Leave-one-out where a random `fraction` of items never appears in training or any history.

    Cold items keep their text in the item table, so content-based models can still score them.
    Evaluation rows whose target is cold measure cold-start quality (`EvalSet.subset(split.is_cold(...))`).
    """
    check_fractions("cold-start", fraction=fraction)
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(ds.n_items, size=int(round(fraction * ds.n_items)), replace=False))
    is_cold = np.zeros(ds.n_items, dtype=bool)
    is_cold[cold] = True
    # cold items may be targets (last / second to last) but are removed from everything a model trains on
    base = leave_one_out(ds, min_length)

    def strip(s: Sequences) -> Sequences:
        keep = ~is_cold[s.items]
        rows = np.repeat(np.arange(len(s)), s.lengths)
        return Sequences.from_lengths(np.bincount(rows[keep], minlength=len(s)), s.items[keep])

    return Split(strip(base.train), EvalSet(base.valid.users, strip(base.valid.histories), base.valid.targets),
                 EvalSet(base.test.users, strip(base.test.histories), base.test.targets), ds.n_items,
                 "cold-start", {"fraction": fraction, "seed": seed, "min_length": min_length}, cold)


def mmrec_split(ds: Dataset, valid: float = 0.1, test: float = 0.1, min_length: int = 3) -> Split:
    """The MMRec protocol (FREEDOM, LIRDRec, ...): each user's chronological sequence is cut 8:1:1.

    Per user with n >= `min_length` interactions: the last max(1, round(test * n)) items are test targets, the
    max(1, round(valid * n)) before them validation targets, the rest training (shorter users train only).
    Rows hold all of a user's targets, and both histories are the training part: the model never sees validation
    items (as in MMRec). Evaluate with exclude_history=True to rank all items except the user's training items.
    """
    check_fractions("mmrec", valid=valid, test=test)
    seqs = ds.sequences()
    n = seqs.lengths
    eligible = n >= min_length
    n_test = np.where(eligible, np.maximum(1, np.floor(test * n + 0.5)), 0).astype(np.int64)
    n_valid = np.where(eligible, np.maximum(1, np.floor(valid * n + 0.5)), 0).astype(np.int64)
    users = np.repeat(np.arange(len(seqs)), n)
    from_end = n[users] - (np.arange(len(seqs.items)) - seqs.offsets[users])  # 1 = the user's last item
    bucket = np.where(from_end <= n_test[users], 2, np.where(from_end <= (n_test + n_valid)[users], 1, 0))

    def part(b: int) -> Sequences:
        return Sequences.from_lengths(np.bincount(users[bucket == b], minlength=len(seqs)), seqs.items[bucket == b])

    train, rows = part(0), np.flatnonzero(eligible)
    hist = train.select(rows)
    return Split(train, EvalSet(rows, hist, part(1).select(rows)), EvalSet(rows, hist, part(2).select(rows)),
                 ds.n_items, "mmrec", {"valid": valid, "test": test, "min_length": min_length,
                                       "protocol": "mmrec-8-1-1"})


def targets_are_cold(es: EvalSet, cold_items: np.ndarray, n_items: int) -> np.ndarray:
    """Boolean mask of evaluation rows whose (first) target item is cold."""
    is_cold = np.zeros(n_items, dtype=bool)
    is_cold[cold_items] = True
    return is_cold[es.targets.items[es.targets.offsets[:-1]]]


SPLITS = {"leave-one-out": leave_one_out, "temporal": temporal_split, "random": random_split,
          "cold-start": cold_start_split, "mmrec": mmrec_split}

