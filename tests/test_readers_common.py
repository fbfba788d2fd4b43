import gzip

import polars as pl
import pytest

from semrec.data import Dataset
from semrec.data.dataset import _first_appearance
from semrec.data.readers.common import cast_checked, json_text_list, read_lines, split_fields
from semrec.errors import DataError


def test_read_lines_numbers_lines_and_handles_gzip_crlf_and_blanks(tmp_path):
    path = tmp_path / "x.txt.gz"
    path.write_bytes(gzip.compress(b"a\r\n\r\nb c\n  \nd\n"))
    lines, bad = read_lines(path)
    assert lines.rows() == [(1, "a"), (3, "b c"), (5, "d")] and bad == 0


def test_read_lines_encoding_error_or_skip(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"ok\nbad \xff\nok too\n")
    with pytest.raises(DataError, match=r"x.txt, line 2: not valid utf-8 at byte 7"):
        read_lines(path)
    lines, bad = read_lines(path, on_bad_rows="skip")
    assert lines["line"].to_list() == ["ok", "ok too"] and bad == 1
    assert read_lines(path, encoding="latin-1")[0]["line"].to_list()[1] == "bad ÿ"
    with pytest.raises(DataError, match="unknown on_bad_rows"):
        read_lines(path, on_bad_rows="ignore")


def test_split_and_cast_name_the_line_and_field(tmp_path):
    lines = pl.DataFrame({"lineno": [1, 2, 3], "line": ["1::a::5", "2::b", "3::c::x"]})
    df, bad = split_fields(lines, "::", ["user", "item", "rating"], "f.dat", "skip")
    assert bad == 1 and df["item"].to_list() == ["a", "c"]
    with pytest.raises(DataError, match=r"f.dat, line 3, field 'stars': cannot read 'x' as Float64"):
        cast_checked(df, {"rating": pl.Float64}, "f.dat", "error", labels={"rating": "stars"})
    typed, bad = cast_checked(df, {"rating": pl.Float64}, "f.dat", "skip")
    assert typed["rating"].to_list() == [5.0] and bad == 1


def test_json_text_list_accepts_lists_strings_and_nested_paths():
    a = pl.Series("a", ['["x", "y"]', "plain", None, "[Pack of 2] soap"])
    assert json_text_list(a).to_list() == [["x", "y"], ["plain"], None, ["[Pack of 2] soap"]]
    c = pl.Series("c", ['[["A", "B"], ["C"]]', "[]", None])
    assert json_text_list(c, nested=True).to_list() == [["A > B", "C"], [], None]


def test_first_appearance_codes_and_collision_fallback(monkeypatch):
    ids = pl.Series(["b", "a", "b", "c", "a"])
    codes, first = _first_appearance(ids)
    assert codes.to_list() == [0, 1, 0, 2, 1] and first.to_list() == [0, 1, 3]
    # every id hashing to the same value must not merge ids: the exact string path takes over
    monkeypatch.setattr(pl.Series, "hash", lambda self, seed=0: pl.Series([7] * len(self), dtype=pl.UInt64))
    codes, first = _first_appearance(ids)
    assert codes.to_list() == [0, 1, 0, 2, 1] and first.to_list() == [0, 1, 3]


def test_build_with_user_table_keeps_users_without_interactions():
    inter = pl.DataFrame({"user_id": ["u9", "u2"], "item_id": ["a", "b"], "timestamp": [1, 2]})
    users = pl.DataFrame({"user_id": ["u1", "u2"], "age": ["30", "40"]})
    ds = Dataset.build(inter, users=users)
    assert ds.users.rows() == [(0, "u1", "30"), (1, "u2", "40"), (2, "u9", None)]
    assert ds.sequences().to_lists() == [[], [1], [0]]
    empty = Dataset.build(pl.DataFrame(schema={"user_id": pl.Utf8, "item_id": pl.Utf8}), users=users)
    assert empty.counts() == {"users": 2, "items": 0, "interactions": 0, "items_without_interactions": 0}
