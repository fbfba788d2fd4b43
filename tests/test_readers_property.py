"""Property tests for every text reader (issue 13): generated valid files round-trip (users, items, order), and
random corruption (truncation, byte flips, inserted garbage lines, plain or gzip) only ever ends in a DataError
or in a dataset that is honest about what it read, never in another exception and never in silent garbage."""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semrec.errors import DataError
from tests.reader_files import FORMATS, USER_ALPHABET, Row, observed, read_format, write_format

# 50 examples keep the default suite fast; SEMREC_PROPERTY_EXAMPLES=2000 searches harder
SETTINGS = settings(max_examples=int(os.environ.get("SEMREC_PROPERTY_EXAMPLES", 50)), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
GROUPED = {"s3rec", "lcrec"}  # formats that store whole sequences (no timestamps): order is the file's order


@st.composite
def logs(draw: st.DrawFn) -> tuple[list[Row], list[Row]]:
    """(rows in time order with strictly increasing times, the same rows in a random file order)."""
    users = draw(st.lists(st.text(USER_ALPHABET, min_size=1, max_size=5), min_size=1, max_size=6, unique=True))
    pairs = draw(st.lists(st.tuples(st.sampled_from(users), st.integers(0, 10**12)), min_size=1, max_size=25))
    rows = [(u, i, 1000 + 7 * t) for t, (u, i) in enumerate(pairs)]
    return rows, draw(st.permutations(rows))


def _expect(fmt: str, rows: list[Row], file_rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """Users by first appearance in the file; each user's items in time order."""
    order = rows if fmt in GROUPED else file_rows
    users = list(dict.fromkeys(u for u, _, _ in order))
    by_time = sorted(rows, key=lambda r: r[2])
    return users, [[str(i) for v, i, _ in by_time if v == u] for u in users]


def _dialect(data: bytes, bom: bool, crlf: bool, blanks: bytes = b" ") -> bytes:
    data = data.replace(b" ", blanks)
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    return (b"\xef\xbb\xbf" if bom else b"") + data


def _raw(fmt: str, rows: list[Row]) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        return write_format(fmt, Path(d), rows).read_bytes()


@SETTINGS
@given(fmt=st.sampled_from(FORMATS), log=logs(), gz=st.booleans(), bom=st.booleans(), crlf=st.booleans(),
       blanks=st.sampled_from([b" ", b"\t", b"  ", b" \t "]))
def test_valid_files_round_trip(fmt, log, gz, bom, crlf, blanks):
    rows, shuffled = log
    file_rows = rows if fmt in GROUPED else shuffled
    # S3-Rec separates fields by any blanks; the other formats keep their own separators
    data = _dialect(_raw(fmt, file_rows), bom, crlf, blanks if fmt == "s3rec" else b" ")
    with tempfile.TemporaryDirectory() as d:
        ds = read_format(fmt, write_format(fmt, Path(d), file_rows, gz=gz, data=data))
    assert observed(ds) == _expect(fmt, rows, file_rows)
    assert ds.meta["bad_rows"] == 0


corruptions = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
    st.tuples(st.just("garbage"), st.floats(0, 1), st.sampled_from(
        [b"qxzk", b"\xff\xfe\xfa garbage", b"zz\x00\x01binary", b"\x80\x04\x95pickle-like"])),
)


def _corrupt(data: bytes, how: tuple) -> bytes:
    kind, where = how[0], how[1]
    if kind == "truncate":
        return data[: int(where * len(data))]
    if kind == "flip":
        pos = int(where * len(data))
        return data[:pos] + bytes([how[2] if how[2] != data[pos] else (how[2] + 1) % 256]) + data[pos + 1:]
    lines = data.split(b"\n")
    at = int(where * len(lines))
    return b"\n".join(lines[:at] + [how[2]] + lines[at:])


@SETTINGS
@given(fmt=st.sampled_from(FORMATS), log=logs(), how=corruptions, gz=st.booleans(),
       policy=st.sampled_from(["error", "skip"]))
def test_corruption_is_a_data_error_or_an_honest_dataset(fmt, log, how, gz, policy):
    rows = log[0]
    clean = _raw(fmt, rows)
    # corrupt the bytes on disk: the compressed stream for gzip files (a garbage line makes sense in text only)
    if gz and how[0] != "garbage":
        data, on_disk = None, _corrupt(gzip.compress(clean, mtime=0), how)
    else:
        data = _corrupt(clean, how)
        on_disk = gzip.compress(data, mtime=0) if gz else data
    with tempfile.TemporaryDirectory() as d:
        path = write_format(fmt, Path(d), rows)
        path.write_bytes(on_disk)
        try:
            ds = read_format(fmt, path, on_bad_rows=policy)
        except DataError as e:
            assert str(e).startswith(str(path.parent)), e  # the message names the file (or its folder)
            return
    n = ds.counts()["interactions"]
    assert n > 0
    original = observed(read_format_clean(fmt, clean))
    if gz and how[0] != "garbage":
        # gzip checks its CRC: a damaged stream that still reads can only be a flip in unused header bytes
        assert how[0] == "flip" and observed(ds) == original
    elif how[0] == "garbage":
        # garbage lines are never data: with 'error' they raise, with 'skip' they are dropped and counted
        assert policy == "skip" and observed(ds) == original and ds.meta["bad_rows"] >= 1
    elif how[0] == "truncate":
        assert n <= len(rows)  # a cut plain-text file reads as a prefix (no trailer tells it was cut)
    else:
        assert n <= len(rows) + 1  # a flipped byte can at most split one id into two


def read_format_clean(fmt: str, data: bytes):
    with tempfile.TemporaryDirectory() as d:
        path = write_format(fmt, Path(d), [], data=data)
        return read_format(fmt, path)
