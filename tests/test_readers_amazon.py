import gzip
import hashlib
import json
import subprocess
import sys

import pytest

from semrec.data import Dataset
from semrec.data.readers import jsonl, read_amazon, read_amazon2023
from semrec.errors import DataError


def _write(path, lines, gz=False):
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _review(user, item, t, rating=5.0, **extra):
    return json.dumps({"reviewerID": user, "asin": item, "unixReviewTime": t, "overall": rating,
                       "reviewText": "long text that is not read", **extra})


REVIEWS = [_review("U1", "B2", 200, 4.0), _review("U1", "B1", 100), _review("U2", "B1", 150, 3.0),
           _review("U2", "B3", 150, 1.0)]
META_2014 = ["{'asin': 'B1', 'title': 'Nail Polish', 'brand': 'OPI', 'price': 7.5, "
             "'categories': [['Beauty', 'Makeup', 'Nails'], ['Beauty']], 'related': {'also_bought': ['B2']}}",
             "{'asin': 'B2', 'title': \"Men's Gel\", 'categories': [['Beauty']], 'description': '[2 pack] Strong'}",
             "{'asin': 'B9', 'title': 'Never reviewed'}"]


def test_amazon_2014_gz_reviews_and_python_literal_meta(tmp_path):
    reviews = _write(tmp_path / "reviews_Beauty_5.json.gz", REVIEWS, gz=True)
    meta = _write(tmp_path / "meta_Beauty.json.gz", META_2014, gz=True)
    ds = read_amazon(reviews, meta=meta)
    assert ds.name == "reviews_Beauty_5"
    assert ds.counts() == {"users": 2, "items": 3, "interactions": 4, "items_without_interactions": 0}
    # item order: metadata rows (only reviewed ones), then items without metadata
    assert ds.items["item_id"].to_list() == ["B1", "B2", "B3"]
    assert ds.items["title"].to_list() == ["Nail Polish", "Men's Gel", None]
    assert ds.items["categories"].to_list() == [["Beauty > Makeup > Nails", "Beauty"], ["Beauty"], None]
    assert ds.items["price"].to_list() == ["7.5", None, None]
    assert ds.items["description"].to_list() == [None, "[2 pack] Strong", None]
    assert "related" not in ds.items.columns
    assert ds.text_fields == ["title", "brand", "categories", "description"]
    # U1: B1 (t=100) before B2 (t=200); U2 tie at 150 keeps file order B1, B3
    assert ds.sequences().to_lists() == [[0, 1], [0, 2]]
    assert ds.interactions["rating"].to_list() == [5.0, 4.0, 3.0, 1.0]
    src = ds.meta["sources"]
    assert [s["sha256"] for s in src] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in (reviews, meta)]
    assert ds.meta["timestamp_kind"] == "unix" and ds.meta["bad_rows"] == 0
    assert read_amazon(reviews, meta=meta, meta_items="all").items["item_id"].to_list() == ["B1", "B2", "B9", "B3"]


def test_amazon_2018_json_meta_normalises_lists(tmp_path):
    reviews = _write(tmp_path / "Industrial_and_Scientific_5.json", REVIEWS[:2])
    meta = _write(tmp_path / "meta.json", [json.dumps({
        "asin": "B1", "title": "Relay", "category": ["Industrial & Scientific", "Electrical"],
        "description": ["Hard start kit.", "Made in USA."], "feature": ["500% torque", "UL listed"],
        "price": "$12.99", "main_cat": "Industrial", "also_buy": ["B2"]}),
        json.dumps({"asin": "B2", "title": "Staples", "category": [], "description": [], "feature": ["x"]})])
    ds = read_amazon(reviews, meta=meta)
    row = ds.items.row(0, named=True)
    assert row["categories"] == ["Industrial & Scientific > Electrical"]
    assert row["description"] == "Hard start kit. Made in USA."
    assert row["features"] == ["500% torque", "UL listed"]
    assert row["price"] == "$12.99" and row["main_cat"] == "Industrial"
    assert ds.items["categories"].to_list()[1] is None  # an empty category list is a missing value


def test_amazon_2023_ms_timestamps_parent_asin_and_details(tmp_path):
    rows = [{"user_id": "AG1", "asin": "B01", "parent_asin": "P1", "timestamp": 1588687728923, "rating": 5.0},
            {"user_id": "AG1", "asin": "B02", "parent_asin": "P1", "timestamp": 1588687728000, "rating": 2.0},
            {"user_id": "AG2", "asin": "B03", "parent_asin": "P2", "timestamp": 1600000000000, "rating": 4.0}]
    reviews = _write(tmp_path / "All_Beauty.jsonl", [json.dumps(r) for r in rows])
    meta = _write(tmp_path / "meta_All_Beauty.jsonl.gz", [json.dumps({
        "parent_asin": "P1", "title": "Serum", "store": "Acme", "features": ["vegan"], "description": [],
        "categories": ["Beauty", "Skin Care"], "details": {"Brand": "Acme", "Size": 30}, "price": None,
        "main_category": "All Beauty", "images": [{"large": "u"}]})], gz=True)
    ds = read_amazon2023(reviews, meta=meta)
    assert ds.name == "All_Beauty"
    assert ds.items["item_id"].to_list() == ["P1", "P2"]
    assert ds.sequences().to_lists() == [[0, 0], [1]]
    assert ds.interactions["timestamp"].to_list() == [1588687728000, 1588687728923, 1600000000000]
    row = ds.items.row(0, named=True)
    assert row["categories"] == ["Beauty > Skin Care"] and row["store"] == "Acme"
    assert json.loads(row["details"]) == {"Brand": "Acme", "Size": 30}
    assert "details" not in ds.text_fields and "title" in ds.text_fields
    assert ds.meta["timestamp_kind"] == "unix_ms"
    by_asin = read_amazon2023(reviews, item_key="asin", timestamp_unit="s")
    assert by_asin.n_items == 3 and by_asin.interactions["timestamp"].to_list()[0] == 1588687728


@pytest.mark.parametrize("bad_line, line_no, needle", [
    ('{"reviewerID": "U3", "asin": ', 3, "invalid JSON"),
    ('{"reviewerID": "U3", "unixReviewTime": 5}', 3, "field 'asin'"),
    ('{"reviewerID": "U3", "asin": "B1", "unixReviewTime": "yesterday"}', 3, "field 'unixReviewTime'"),
    ('["not", "an", "object"]', 3, "expected a JSON object"),
])
def test_amazon_malformed_line_is_named_or_skipped(tmp_path, bad_line, line_no, needle):
    path = _write(tmp_path / "r.json", REVIEWS[:2] + [bad_line] + REVIEWS[2:])
    with pytest.raises(DataError) as e:
        read_amazon(path)
    msg = str(e.value)
    assert "r.json" in msg and f"line {line_no}" in msg and needle in msg and "--on-bad-rows skip" in msg
    ds = read_amazon(path, on_bad_rows="skip")
    assert ds.meta["bad_rows"] == 1 and ds.n_interactions == 4


def test_amazon_empty_file_bad_encoding_and_bad_literal(tmp_path):
    (tmp_path / "empty.json").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        read_amazon(tmp_path / "empty.json")
    (tmp_path / "enc.json").write_bytes((REVIEWS[0] + "\n").encode() + b'{"reviewerID": "\xff"}\n')
    with pytest.raises(DataError, match=r"enc.json, line 2: not valid UTF-8"):
        read_amazon(tmp_path / "enc.json")
    reviews = _write(tmp_path / "r.json", REVIEWS)
    meta = _write(tmp_path / "meta.json", META_2014[:1] + ["{'asin': 'B2', 'title': }"])
    with pytest.raises(DataError, match=r"meta.json, line 2: not a Python dict literal"):
        read_amazon(reviews, meta=meta)
    assert read_amazon(reviews, meta=meta, on_bad_rows="skip").meta["bad_rows"] == 1


def test_line_numbers_survive_chunking(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonl, "CHUNK_BYTES", 200)  # many chunks of whole lines
    lines = [_review(f"U{i}", f"B{i % 7}", i) for i in range(40)]
    lines[33] = '{"reviewerID": "U33", "asin": 7, "unixReviewTime": 1.5}'
    path = _write(tmp_path / "r.json.gz", lines, gz=True)
    with pytest.raises(DataError, match=r"r.json.gz, line 34, field 'unixReviewTime': expected a 64-bit integer"):
        read_amazon(path)
    ds = read_amazon(path, on_bad_rows="skip")
    assert len(list(jsonl.iter_line_chunks(path))) > 10
    assert ds.n_interactions == 39 and ds.meta["bad_rows"] == 1


def test_cli_imports_amazon_with_meta_option(tmp_path):
    reviews = _write(tmp_path / "reviews.json.gz", REVIEWS, gz=True)
    meta = _write(tmp_path / "meta.json", META_2014)
    r = subprocess.run([sys.executable, "-m", "semrec", "data", "import", "amazon", str(reviews), "--out",
                        str(tmp_path / "ds"), "-o", f"meta={meta}", "-o", 'meta_fields=["title"]', "--user-k", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ds = Dataset.load(tmp_path / "ds")
    assert ds.items.columns == ["item_idx", "item_id", "title"] and ds.text_fields == ["title"]
    assert ds.counts() == {"users": 2, "items": 3, "interactions": 4, "items_without_interactions": 0}
    assert ds.meta["filtering"]["user_k"] == 2 and ds.meta["options"]["meta_fields"] == ["title"]
