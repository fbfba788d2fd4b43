"""Broken inputs (issue 13, items 3/4 for readers): truncated and corrupted gzip, a .gz name on plain text,
binary garbage, pickles (refused, never unpickled), Parquet mix-ups, and `-o` reader options of the wrong name
or type. Every one is a DataError / ConfigError naming the file or option, for every reader."""

from __future__ import annotations

import gzip
import os
import pickle
import random

import polars as pl
import pytest

from semrec.data.readers import READERS as ALL_READERS
from semrec.data.readers import read_table
from semrec.data.readers.common import check_reader_options
from semrec.errors import ConfigError, DataError
from tests.reader_files import FORMATS, expected, observed, read_format, write_format

ROWS = [("u1", 3, 10), ("u2", 1, 5), ("u1", 2, 11), ("u3", 3, 1), ("u2", 7, 6), ("u1", 1, 12)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_gzip_content_is_detected_by_its_bytes(tmp_path, fmt):
    path = write_format(fmt, tmp_path, ROWS, gz=True)
    assert observed(read_format(fmt, path)) == expected(ROWS)


@pytest.mark.parametrize("fmt,name", [("s3rec", "seq.txt.gz"), ("table", "log.csv.gz"), ("table-tsv", "log.tsv.gz"),
                                      ("amazon", "reviews.json.gz"), ("amazon2023", "reviews.jsonl.gz")])
def test_plain_text_under_a_gz_name_still_reads(tmp_path, fmt, name):
    plain = write_format(fmt, tmp_path / "a", ROWS)
    path = tmp_path / name
    path.write_bytes(plain.read_bytes())
    assert observed(read_format(fmt, path)) == expected(ROWS)


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_gzip_is_named(tmp_path, fmt):
    path = write_format(fmt, tmp_path, ROWS * 20, gz=True)
    data = path.read_bytes()
    for cut in (len(data) - 4, len(data) // 2, 12):
        path.write_bytes(data[:cut])
        with pytest.raises(DataError, match=r"truncated gzip stream .*fix: re-download the file or re-compress"):
            read_format(fmt, path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_corrupted_gzip_is_named(tmp_path, fmt):
    path = write_format(fmt, tmp_path, ROWS * 20, gz=True)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"(corrupted|truncated) gzip stream"):
        read_format(fmt, path)
    path.write_bytes(b"\x1f\x8b" + b"this only starts like gzip\n" * 3)  # gzip magic, then plain text
    with pytest.raises(DataError, match=r"gzip stream"):
        read_format(fmt, path)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("policy", ["error", "skip"])
def test_binary_garbage_is_a_data_error(tmp_path, fmt, policy):
    rnd = random.Random(7)
    high = bytes(rnd.randrange(0x80, 0x100) for _ in range(3000))  # never valid UTF-8, no NUL
    path = write_format(fmt, tmp_path, ROWS, data=high)
    with pytest.raises(DataError):
        read_format(fmt, path, on_bad_rows=policy)
    path = write_format(fmt, tmp_path, ROWS, data=bytes(rnd.randrange(256) for _ in range(3000)))
    with pytest.raises(DataError, match=r"binary data \(a NUL byte|not valid utf-8|expected"):
        read_format(fmt, path, on_bad_rows=policy)


class _Trap:
    """Unpickling this creates a folder: the test fails if any reader ever unpickles."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickles_are_refused_and_never_unpickled(tmp_path, fmt, protocol):
    marker = tmp_path / "unpickled"
    data = pickle.dumps({"rows": [_Trap(str(marker))], "user_id": "u1"}, protocol=protocol)
    for gz in (False, True):
        path = write_format(fmt, tmp_path / f"gz{gz}", ROWS, data=data, gz=gz)
        with pytest.raises(DataError, match=r"this is a Python pickle, expected .*; semrec never unpickles files"):
            read_format(fmt, path, on_bad_rows="skip")
    assert not marker.exists()


def test_table_parquet_mixups_and_corrupt_parquet(tmp_path):
    df = pl.DataFrame({"user_id": ["a", "b"] * 50, "item_id": ["x", "y"] * 50, "timestamp": list(range(100))})
    df.write_parquet(tmp_path / "log.csv")
    with pytest.raises(DataError, match=r"log.csv: this is a Parquet file, expected a CSV/TSV file \(fix: read it "
                                        r"with the 'table' format \(name it .parquet\)\)"):
        read_table(tmp_path / "log.csv")
    (tmp_path / "log.parquet").write_text("user_id,item_id\na,b\n")
    with pytest.raises(DataError, match=r"log.parquet: not a Parquet file \(it does not start with PAR1\)"):
        read_table(tmp_path / "log.parquet")
    df.write_parquet(tmp_path / "good.parquet")
    good = (tmp_path / "good.parquet").read_bytes()
    rnd = random.Random(0)
    outcomes = set()
    for trial in range(40):  # byte flips anywhere after the magic: never a traceback (polars may even panic)
        bad = bytearray(good)
        for _ in range(3):
            bad[rnd.randrange(4, len(good) - 4)] = rnd.randrange(256)
        path = tmp_path / f"bad{trial}.parquet"
        path.write_bytes(bytes(bad))
        try:
            ds = read_table(path)
            outcomes.add("read")
            assert ds.counts()["interactions"] == 100
        except DataError as e:
            outcomes.add("error")
            assert str(e).startswith(str(path))
    assert "error" in outcomes


def test_check_reader_options_names_key_type_and_allowed_keys():
    s3rec = ALL_READERS["s3rec"]
    assert check_reader_options(s3rec, {"text_key_offset": -1, "item_text": 12, "name": 2023}, "s3rec") == \
        {"text_key_offset": -1, "item_text": "12", "name": "2023"}
    assert check_reader_options(ALL_READERS["amazon"], {"meta_fields": "title,brand", "python_literal": "True"}) == \
        {"meta_fields": ["title", "brand"], "python_literal": True}
    assert check_reader_options(ALL_READERS["table"], {"time_col": None, "has_header": False,
                                                       "columns": ["a", "b"]}) == \
        {"time_col": None, "has_header": False, "columns": ["a", "b"]}
    allowed = ("allowed options: item_text (path or null), attributes (path or null), text_key_offset (integer), "
               "name (string or null)")
    with pytest.raises(ConfigError) as e:
        check_reader_options(s3rec, {"text_key_offset": "x"}, "s3rec")
    assert str(e.value) == f"option 'text_key_offset' of format 's3rec' expects integer, got str 'x'; {allowed}"
    with pytest.raises(ConfigError) as e:
        check_reader_options(s3rec, {"offset": 1}, "s3rec")
    assert str(e.value) == f"unknown option 'offset' for format 's3rec'; {allowed}"
    with pytest.raises(ConfigError, match=r"'has_header' of format 'table' expects true/false, got str 'no'"):
        check_reader_options(ALL_READERS["table"], {"has_header": "no"}, "table")
    with pytest.raises(ConfigError, match=r"'meta_fields' .* expects list of strings or null, got list \[1, \{\}\]"):
        check_reader_options(ALL_READERS["amazon"], {"meta_fields": [1, {}]}, "amazon")
    with pytest.raises(ConfigError, match=r"use --on-bad-rows"):
        check_reader_options(ALL_READERS["table"], {"on_bad_rows": "skip"})
    with pytest.raises(ConfigError, match=r"'text_key_offset' .* expects integer, got bool True"):
        check_reader_options(s3rec, {"text_key_offset": True})


@pytest.mark.parametrize("fmt", sorted(ALL_READERS))
def test_every_reader_declares_checkable_options(fmt):
    """Every registered reader (also ones added later) has keyword-only, type-hinted options the check can read."""
    with pytest.raises(ConfigError, match=r"unknown option 'no_such_option' .*allowed options: .*name \(string or "
                                          r"null\)"):
        check_reader_options(ALL_READERS[fmt], {"no_such_option": 1}, fmt)
    assert check_reader_options(ALL_READERS[fmt], {"name": "x"}, fmt) == {"name": "x"}


def test_gzip_helper_does_not_hide_valid_multimember_files(tmp_path):
    """Concatenated gzip members (what `cat a.gz b.gz` writes) are one valid stream, read whole."""
    first, second = write_format("s3rec", tmp_path / "a", ROWS[:3]), write_format("s3rec", tmp_path / "b", ROWS[3:])
    path = tmp_path / "seq.txt"
    path.write_bytes(gzip.compress(first.read_bytes()) + gzip.compress(second.read_bytes()))
    assert read_format("s3rec", path).counts()["interactions"] == len(ROWS)


@pytest.mark.parametrize("fmt", ["s3rec", "amazon", "table", "lcrec"])
def test_gzip_inside_gzip_is_named(tmp_path, fmt):
    path = write_format(fmt, tmp_path, ROWS, gz=True)
    path.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(DataError, match=r"this is gzip inside gzip \(compressed twice\)"):
        read_format(fmt, path)
