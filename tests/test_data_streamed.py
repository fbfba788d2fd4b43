"""Streamed (chunk-by-chunk) import gives exactly the Dataset of the in-memory import."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from semrec.data.readers import read_table
from semrec.data.readers import table as table_reader
from semrec.data.streamed import user_time_order
from semrec.errors import DataError


def _same(a, b) -> None:
    for part in ("items", "users", "interactions"):
        assert_frame_equal(getattr(a, part), getattr(b, part))
    assert (a.name, a.text_fields, a.meta) == (b.name, b.text_fields, b.meta)


def _log(tmp_path, n: int, seed: int, header: str = "user,item,ts,rating"):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n // 5 + 1, n)
    items = rng.zipf(1.3, n) % (n // 3 + 2)
    ts = rng.integers(0, 20, n)  # many ties in time: their file order must be kept
    rating = rng.integers(1, 6, n)
    lines = [header] + [f"u{u},i{i},{t},{r}" for u, i, t, r in zip(users, items, ts, rating)]
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("seed", range(4))
def test_streamed_equals_in_memory(tmp_path, monkeypatch, seed):
    path = _log(tmp_path, 3000, seed)
    (tmp_path / "items.csv").write_text("sku,title\ni7,seven\ni0,zero\nnever,unseen item\ni7,dup\n")
    (tmp_path / "users.csv").write_text("uid,age\nu3,31\nghost,40\n")
    monkeypatch.setattr(table_reader, "STREAM_CHUNK_ROWS", 7 + 97 * seed)
    kw = {"user_col": "user", "item_col": "item", "time_col": "ts", "rating_col": "rating"}
    for extra in ({}, {"items": tmp_path / "items.csv", "item_key": "sku",
                       "users": tmp_path / "users.csv", "user_key": "uid"}):
        want = read_table(path, stream=False, **kw, **extra)
        got = read_table(path, stream=True, **kw, **extra)
        _same(got, want)
    _same(read_table(path, stream=True, user_col="user", item_col="item", time_col=None),
          read_table(path, stream=False, user_col="user", item_col="item", time_col=None))


def test_streamed_bad_row_falls_back_to_the_diagnosing_path(tmp_path, monkeypatch):
    path = _log(tmp_path, 200, 0)
    path.write_text(path.read_text() + "u1,,5,1\n")
    monkeypatch.setattr(table_reader, "STREAM_CHUNK_ROWS", 16)
    kw = {"user_col": "user", "item_col": "item", "time_col": "ts", "rating_col": "rating"}
    with pytest.raises(DataError, match="line 202"):
        read_table(path, stream=True, **kw)
    _same(read_table(path, stream=True, on_bad_rows="skip", **kw),
          read_table(path, stream=False, on_bad_rows="skip", **kw))


def test_user_time_order_is_the_stable_two_key_sort():
    rng = np.random.default_rng(0)
    user, time = rng.integers(0, 50, 5000), rng.integers(-3, 4, 5000)
    want = pl.DataFrame({"u": user, "t": time}).with_row_index().sort(["u", "t"], maintain_order=True)["index"]
    np.testing.assert_array_equal(user_time_order(user, time, 50), want.to_numpy())
    wide = rng.integers(-2**62, 2**62, 5000)  # no room to pack the key: two-key sort
    np.testing.assert_array_equal(user_time_order(user, wide, 50), np.lexsort((wide, user)))


@pytest.mark.parametrize("seed", range(6))
def test_kcore_counts_equal_the_window_filters(seed):
    from semrec.data.filtering import _kcore_windows, kcore

    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 3000))
    inter = pl.DataFrame({"user_idx": rng.integers(0, 300, n), "item_idx": rng.zipf(1.5, n) % 400,
                          "timestamp": rng.integers(0, 9, n)})
    for uk, ik in ((5, 5), (2, 0), (0, 3), (10, 2)):
        assert_frame_equal(kcore(inter, uk, ik), _kcore_windows(inter, uk, ik, "user_idx", "item_idx", 100))
