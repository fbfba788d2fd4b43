"""Instruction tasks for instruction-aware user embeddings (InstructUE-style, sized for a CPU).

A task is an instruction sentence, a set of answer sentences, and a label per training user (or per next
item). The instruction's text vector conditions the user encoder (FiLM, see user_text.py); the conditioned user
vector is trained to be closest to the text vector of the right answer. Tasks come from what a dataset can
answer: the next item's category, the user's most frequent category / brand, and user attributes (gender, age
band, occupation on MovieLens).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from semrec.data.dataset import Dataset
from semrec.errors import DataError

NEXT_ITEM = "Which item will this user choose next?"
# MovieLens age bands (the ML-1M grouping), used for the age task and the probe benchmark
AGE_BANDS = ((0, 18, "under 18"), (18, 25, "18 to 24"), (25, 35, "25 to 34"), (35, 45, "35 to 44"),
             (45, 50, "45 to 49"), (50, 56, "50 to 55"), (56, 200, "56 or older"))


@dataclass
class InstructTask:
    """`per` is 'user' (label[u] for training row u, -1 = unknown), 'next' (label[item] of the next item) or
    'history' (label[item]; the answer is the most frequent label in the history)."""

    name: str
    instruction: str
    answers: list[str]
    labels: np.ndarray
    per: str = "user"

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.per not in ("user", "next", "history"):
            raise DataError(f"task {self.name}: per must be user, next or history, got {self.per!r}")
        if self.labels.size and self.labels.max() >= len(self.answers):
            raise DataError(f"task {self.name}: label {int(self.labels.max())} has no answer sentence")


def _codes(values: pl.Series) -> tuple[np.ndarray, list[str]]:
    """Dense labels (-1 = missing/empty) and the sorted distinct values."""
    vals = values.cast(pl.Utf8).fill_null("").str.strip_chars()
    names = sorted(v for v in vals.unique().to_list() if v and v.lower() != "unknown")
    index = {v: i for i, v in enumerate(names)}
    return np.asarray([index.get(v, -1) for v in vals.to_list()], dtype=np.int64), names


def category_of(items: pl.DataFrame, field: str = "categories", level: int = -1) -> pl.Series:
    """One category string per item: level `level` of its (first) category path (-1 = deepest)."""
    parts = category_paths(items, field).str.split(" > ")
    return parts.list.get(level, null_on_oob=True) if level >= 0 else parts.list.last()


def category_paths(items: pl.DataFrame, field: str = "categories") -> pl.Series:
    """Each item's first category path as 'A > B > C' (S3-Rec lists of paths, or LC-Rec comma strings)."""
    col = items[field]
    while isinstance(col.dtype, pl.List):
        col = col.list.first()
    col = col.cast(pl.Utf8).fill_null("")
    return pl.Series(field, [p if " > " in p else " > ".join(x.strip() for x in p.split(",")) for p in col.to_list()])


def age_band(age: pl.Series) -> pl.Series:
    a = age.cast(pl.Int64, strict=False)
    expr = pl.lit(None, dtype=pl.Utf8)
    for lo, hi, name in reversed(AGE_BANDS):
        expr = pl.when((pl.col("a") >= lo) & (pl.col("a") < hi)).then(pl.lit(name)).otherwise(expr)
    return pl.DataFrame({"a": a}).select(expr.alias("band"))["band"]


def dataset_tasks(ds: Dataset, users: np.ndarray | None = None) -> list[InstructTask]:
    """Every task `ds` can answer. `users` limits the user-attribute labels to those user rows (e.g. a CV
    training fold), so held-out users' attributes never reach training."""
    tasks = []
    if "categories" in ds.items.columns:
        labels, names = _codes(category_of(ds.items))
        tasks.append(InstructTask("next-category", "Which category will the user's next item belong to?",
                                  [f"An item in the category {n}." for n in names], labels, "next"))
        tasks.append(InstructTask("top-category", "Which category does this user buy most often?",
                                  [f"Mostly items in the category {n}." for n in names], labels, "history"))
    if "class" in ds.items.columns:  # MovieLens genres: the first listed genre
        labels, names = _codes(ds.items["class"].list.first())
        tasks.append(InstructTask("top-genre", "Which genre does this user watch most often?",
                                  [f"Mostly {n} movies." for n in names], labels, "history"))
    if "brand" in ds.items.columns:
        labels, names = _codes(ds.items["brand"])
        tasks.append(InstructTask("top-brand", "Which brand does this user buy most often?",
                                  [f"Mostly products by {n}." for n in names], labels, "history"))
    keep = np.ones(ds.n_users, bool) if users is None else np.isin(np.arange(ds.n_users), users)
    attrs = {"gender": ("What is the user's gender?", lambda s: s, {"M": "The user is a man.",
                                                                    "F": "The user is a woman."}),
             "age": ("How old is the user?", age_band, None),
             "occupation": ("What is the user's occupation?", lambda s: s, None)}
    for col, (instruction, fn, wording) in attrs.items():
        if col not in ds.users.columns:
            continue
        labels, names = _codes(fn(ds.users[col]))
        answers = [wording.get(n, n) if wording else (f"The user is {n} years old." if col == "age"
                                                      else f"The user works as: {n}.") for n in names]
        tasks.append(InstructTask(col, instruction, answers, np.where(keep, labels, -1), "user"))
    return tasks


def task_targets(task: InstructTask, rows: np.ndarray, histories: list[np.ndarray], nexts: np.ndarray
                 ) -> np.ndarray:
    """Label of each batch row (-1 = unknown): from the user (rows), the next item, or the history's mode."""
    if task.per == "user":
        return np.where(rows < len(task.labels), task.labels[np.minimum(rows, len(task.labels) - 1)], -1)
    if task.per == "next":
        return np.where(nexts >= 0, task.labels[np.maximum(nexts, 0)], -1)
    out = np.full(len(histories), -1, np.int64)
    for i, h in enumerate(histories):  # histories are <= max_len items: cheap
        lab = task.labels[h]
        lab = lab[lab >= 0]
        if lab.size:
            out[i] = np.bincount(lab).argmax()
    return out
