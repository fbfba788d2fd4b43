"""LC-Rec / LETTER JSON: `X.inter.json` `{user: [item, ...]}` (chronological) and `X.item.json` `{item: {field: ...}}`.

This is the layout of the LC-Rec, LETTER and CollisionGenRec releases (e.g. `Scientific`, `Instruments`,
`Arts`, `Yelp`). Ids are the JSON keys as strings; list order is the time order (no timestamps). The
`X.index.json` semantic-ID files of those repositories are not data and are ignored.
"""

from __future__ import annotations

from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from semrec.data.dataset import Dataset
from semrec.data.readers.common import (build_dataset, check_policy, normalise_text_columns, read_json_object,
                                        reader_meta)
from semrec.errors import DataError

NON_TEXT_KEYS = {"asin", "item_id", "id", "imUrl", "image", "images"}


def _locate(path: Path) -> Path:
    if path.is_dir():
        found = sorted(path.glob("*.inter.json"))
        if len(found) != 1:
            raise DataError(f"expected exactly one *.inter.json in the folder, found {len(found)}", path=path,
                            fix="pass the .inter.json file itself")
        return found[0]
    return path


def read_lcrec(path: str | Path, *, item_text: str | Path | None = None, name: str | None = None,
               on_bad_rows: str = "error") -> Dataset:
    """Read `X.inter.json` (or a folder holding one); item text from `item_text` or `X.item.json` beside it."""
    check_policy(on_bad_rows)
    inter_path = _locate(Path(path))
    stem = inter_path.name.removesuffix(".inter.json") if inter_path.name.endswith(".inter.json") \
        else inter_path.stem
    seqs = read_json_object(inter_path)
    bad_users = [u for u, v in seqs.items() if not isinstance(v, list)]
    if bad_users and on_bad_rows == "error":
        u = bad_users[0]
        raise DataError(f"user {u!r} maps to {str(seqs[u])[:60]!r}, expected a list of item ids",
                        path=inter_path, field=u, fix="correct that entry or pass --on-bad-rows skip")
    users = [u for u, v in seqs.items() if isinstance(v, list)]
    flat = list(chain.from_iterable(seqs[u] for u in users))
    lengths = np.array([len(seqs[u]) for u in users], dtype=np.int64)
    user_of_row = np.repeat(np.arange(len(users)), lengths)
    # ids must be JSON integers or strings: polars would otherwise turn true into 1 and 2.5 into '2.5' silently
    ok = np.fromiter((type(i) in (int, str) for i in flat), dtype=bool, count=len(flat))
    if not ok.all() and on_bad_rows == "error":
        row = int(np.flatnonzero(~ok)[0])
        user = users[user_of_row[row]]
        raise DataError(f"user {user!r} has item id {flat[row]!r:.40}; item ids must be integers or strings",
                        path=inter_path, field=user, fix="correct that entry or pass --on-bad-rows skip")
    item_ids = pl.Series("item_id", [str(i) for i in flat], dtype=pl.Utf8)
    inter = pl.DataFrame({"user_id": pl.Series(users, dtype=pl.Utf8).gather(user_of_row),
                          "item_id": item_ids}).filter(pl.Series(ok))
    n_bad = len(bad_users) + int((~ok).sum())

    item_path = Path(item_text) if item_text is not None else inter_path.with_name(f"{stem}.item.json")
    sources: list[Path] = [inter_path]
    items, text_fields = None, []
    if item_text is not None or item_path.exists():
        table = read_json_object(item_path)
        bad_items = [k for k, v in table.items() if not isinstance(v, dict)]
        if bad_items:
            raise DataError(f"item {bad_items[0]!r} maps to {type(table[bad_items[0]]).__name__}, expected an "
                            "object of fields", path=item_path, field=bad_items[0], fix="correct that entry")
        # A whole-file JSON object {id: {field: value}} has no vectorised reader: json parses it, then each field
        # becomes one column (a pass per field over the item dicts, not per-row frame building).
        rows = list(table.values())
        fields = list(dict.fromkeys(f for r in rows for f in r))
        attrs = normalise_text_columns(pl.DataFrame({f: [r.get(f) for r in rows] for f in fields}, strict=False),
                                       item_path)
        items = pl.concat([pl.DataFrame({"item_id": list(table)}, schema={"item_id": pl.Utf8}),
                           attrs.drop("item_id", strict=False)], how="horizontal")
        text_fields = [f for f in fields if f not in NON_TEXT_KEYS]
        sources.append(item_path)
        unknown = inter.join(items.select("item_id"), on="item_id", how="anti")["item_id"].unique()
        if len(unknown):
            raise DataError(f"{len(unknown)} item id(s) in {inter_path.name} have no entry here, e.g. "
                            f"{unknown[0]!r}", path=item_path, fix="use the item file of the same dataset")
    options: dict[str, Any] = {"item_text": str(item_path) if items is not None else None,
                               "on_bad_rows": on_bad_rows}
    meta = reader_meta("lcrec", sources, options, n_bad, "order")
    return build_dataset(inter, items, path=inter_path, n_bad=n_bad, name=name or stem,
                         expected="a JSON object {user: [item, ...]} (LC-Rec X.inter.json)", text_fields=text_fields,
                         meta=meta)
