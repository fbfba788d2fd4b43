"""`semrec data ...`: import, inspect and split datasets."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from semrec.cli.console import err, out
from semrec.cli.options import Overwrite, parse_key_values
from semrec.data import Dataset, filter_dataset
from semrec.data.readers import READERS
from semrec.data.splits import SPLITS
from semrec.errors import ConfigError, DataError

app = typer.Typer(help="Import, inspect and split datasets.", no_args_is_help=True)


class BadRows(str, enum.Enum):
    error = "error"
    skip = "skip"


class Duplicates(str, enum.Enum):
    keep_all = "keep-all"
    keep_first = "keep-first"
    keep_last = "keep-last"


Format = enum.Enum("Format", {k: k for k in sorted(READERS)}, type=str)  # type: ignore[misc]
SplitKind = enum.Enum("SplitKind", {k.replace("-", "_"): k for k in SPLITS}, type=str)  # type: ignore[misc]


@app.command("import")
def import_(
    format: Format = typer.Argument(..., help=f"Input format: one of {', '.join(sorted(READERS))}."),
    path: Path = typer.Argument(..., help="Main input file or folder of that format."),
    out_dir: Path = typer.Option(..., "--out", help="Dataset folder to write (Parquet + manifest.json)."),
    option: list[str] = typer.Option([], "--option", "-o", help="Reader option key=value (repeatable)."),
    on_bad_rows: BadRows = typer.Option("error", help="'error' stops at the first malformed row; 'skip' counts "
                                        "them."),
    user_k: int = typer.Option(0, min=0, help="Iterative k-core: minimum interactions per user (0 = off)."),
    item_k: int = typer.Option(0, min=0, help="Iterative k-core: minimum interactions per item (0 = off)."),
    min_rating: Optional[float] = typer.Option(None, help="Keep interactions with rating >= this."),
    duplicates: Duplicates = typer.Option("keep-all", help="keep-all, keep-first or keep-last per (user, item)."),
    overwrite: Overwrite = False,
) -> None:
    """Read FORMAT at PATH into a normalised dataset folder.

    Examples:

      semrec data import s3rec ../shared/data/amazon-beauty-s3rec/Beauty.txt --out data/beauty
        -o item_text=../shared/data/amazon-beauty-s3rec/text/Beauty.item.json

      semrec data import s3rec Yelp.txt --out data/yelp -o item_text=Yelp.item.json -o text_key_offset=-1
    """
    from semrec.data.readers.common import check_reader_options
    from semrec.io import check_output

    fmt, dup = _value(format), _value(duplicates)
    check_output(out_dir, "dataset", overwrite)
    if min_rating is not None and not np.isfinite(min_rating):
        raise ConfigError(f"--min-rating {min_rating}: give a finite number")
    opts = check_reader_options(READERS[fmt], parse_key_values(option), fmt)
    ds = READERS[fmt](path, on_bad_rows=_value(on_bad_rows), **opts)
    if user_k or item_k or min_rating is not None or dup != "keep-all":
        ds = filter_dataset(ds, min_rating=min_rating, duplicates=dup, user_k=user_k, item_k=item_k)
        if ds.n_interactions == 0:
            raise DataError(f"no interaction is left after filtering (user_k={user_k}, item_k={item_k}, "
                            f"min_rating={min_rating})", path=path, fix="lower the thresholds")
    ds.save(out_dir, overwrite=overwrite)
    bad = ds.meta.get("bad_rows", 0)
    err.print(f"wrote {out_dir}: {ds}" + (f" (skipped {bad} bad rows)" if bad else ""))


def _value(choice: object) -> str:
    """The string of a typer enum choice (or the string itself)."""
    return str(getattr(choice, "value", choice))


def split_options(kind: str, pairs: list[str], flag: str = "--option") -> dict[str, object]:
    """`key=value` options checked against split function `kind`'s parameters and their types."""
    import inspect
    import typing

    from semrec.training.config import check_value

    fn = SPLITS[kind]
    params = dict(list(inspect.signature(fn).parameters.items())[1:])  # after the dataset
    hints = typing.get_type_hints(fn)
    opts = parse_key_values(pairs, flag)
    for key in opts:
        if key not in params:
            raise ConfigError(f"{flag} {key!r} is not an option of split {kind!r}; allowed: {', '.join(params)}")
        opts[key] = check_value(opts[key], hints.get(key, typing.Any), key)
    missing = [n for n, prm in params.items() if prm.default is inspect.Parameter.empty and n not in opts]
    if missing:
        raise ConfigError(f"split {kind!r} needs {', '.join(f'{flag} {n}=...' for n in missing)}")
    return opts


def stats_table(ds: Dataset) -> Table:
    """Counts, sparsity, sequence-length quantiles and text coverage per field."""
    c = ds.counts()
    lengths = ds.sequences().lengths
    table = Table(title=f"dataset {ds.name}", show_header=False)
    for k, v in c.items():
        table.add_row(k.replace("_", " "), f"{v:,}")
    denom = max(c["users"] * c["items"], 1)
    table.add_row("sparsity", f"{1 - c['interactions'] / denom:.5f}")
    if lengths.any():
        q = np.percentile(lengths, [0, 25, 50, 75, 100]).astype(int)
        table.add_row("sequence length min/25/50/75/max", " / ".join(map(str, q)))
        table.add_row("sequence length mean", f"{lengths.mean():.2f}")
    for f in ds.text_fields:
        col = ds.items[f]
        filled = col.list.len() > 0 if col.dtype.is_nested() else col.cast(str).str.strip_chars().str.len_chars() > 0
        table.add_row(f"text coverage: {f}", f"{filled.fill_null(False).mean():.1%}")
    return table


def length_histogram(ds: Dataset, bins: int = 10) -> Table:
    lengths = ds.sequences().lengths
    table = Table(title="sequence lengths")
    if not lengths.any():
        table.add_column("no interactions")
        return table
    edges = np.unique(np.geomspace(max(lengths.min(), 1), lengths.max() + 1, bins + 1).astype(int))
    counts, _ = np.histogram(lengths, bins=edges)
    table.add_column("length")
    table.add_column("users", justify="right")
    table.add_column("")
    top = max(counts.max(), 1)
    for lo, hi, n in zip(edges[:-1], edges[1:], counts):
        table.add_row(f"{lo}-{hi - 1}", f"{n:,}", "█" * int(30 * n / top))
    return table


@app.command()
def inspect(path: Path = typer.Argument(..., help="Dataset folder written by `semrec data import`.")) -> None:
    """Print counts, sparsity, a sequence-length histogram and text coverage per field.

    Example: semrec data inspect data/beauty
    """
    ds = Dataset.load(path)
    out.print(stats_table(ds))
    out.print(length_histogram(ds))


@app.command()
def split(
    path: Path = typer.Argument(..., help="Dataset folder."),
    out_dir: Path = typer.Option(..., "--out", help="Split folder to write (split.npz + split.json)."),
    kind: SplitKind = typer.Option("leave-one-out", help=f"One of {', '.join(SPLITS)}."),
    option: list[str] = typer.Option([], "--option", "-o", help="Split option key=value, e.g. fraction=0.05."),
    overwrite: Overwrite = False,
) -> None:
    """Split a dataset for training and evaluation.

    Examples:

      semrec data split data/beauty --out data/beauty/loo

      semrec data split data/beauty --kind cold-start -o fraction=0.05 --out data/beauty/cold
    """
    from semrec.io import check_output

    name = _value(kind)
    check_output(out_dir, "split", overwrite)
    opts = split_options(name, option)
    try:
        sp = SPLITS[name](Dataset.load(path), **opts)
    except ValueError as e:  # a value outside the split's range (e.g. fraction=2)
        if isinstance(e, DataError):
            raise
        raise ConfigError(f"split {name!r}: {e}") from None
    sp.save(out_dir, overwrite=overwrite)
    err.print(f"wrote {out_dir}: {name}, train users {len(sp.train):,}, valid rows {len(sp.valid):,}, "
              f"test rows {len(sp.test):,}")
