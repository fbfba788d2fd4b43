"""Real-world text files import (issue 13, item 5): BOM, CRLF, tabs and repeated blanks, missing-value markers,
HTML entities, files with no interaction, non-integer item ids; the same for every reader where it applies."""

import json

import polars as pl
import pytest

from semrec.data.readers import read_amazon, read_amazon2023, read_lcrec, read_movielens, read_recbole, read_s3rec, \
    read_table
from semrec.data.readers.clean import clean_attributes
from semrec.errors import DataError

BOM = b"\xef\xbb\xbf"


def _crlf(text: str) -> bytes:
    """A file as Windows tools write it: UTF-8 BOM and CRLF line ends."""
    return BOM + text.replace("\n", "\r\n").encode("utf-8")


def test_clean_attributes_markers_entities_and_lists():
    df = pl.DataFrame({"item_id": ["nan", "2", "3", "4", "5"],
                       "title": ["A &amp; B", " NaN ", "None", "\t", None],
                       "cats": [["x &quot;y&quot;", "null"], ["  "], None, [], ["ok", "Tom&#39;s"]]})
    assert clean_attributes(df).rows() == [("nan", "A & B", ['x "y"']), ("2", None, None), ("3", None, None),
                                           ("4", None, None), ("5", None, ["ok", "Tom's"])]


def test_s3rec_bom_crlf_tabs_repeated_spaces_and_text_cleaning(tmp_path):
    (tmp_path / "s.txt").write_bytes(_crlf("u1\t1  2\t3\nu2 2   1 \n"))
    (tmp_path / "t.json").write_bytes(BOM + json.dumps(
        {"1": {"title": "A &amp; B"}, "2": {"title": "NaN", "brand": "x"}, "3": {"title": "  "}}).encode())
    ds = read_s3rec(tmp_path / "s.txt", item_text=tmp_path / "t.json")
    assert ds.users["user_id"].to_list() == ["u1", "u2"]
    assert ds.items["item_id"].to_list() == ["1", "2", "3"]
    assert ds.sequences().to_lists() == [[0, 1, 2], [1, 0]]
    assert ds.items["title"].to_list() == ["A & B", None, None]
    assert ds.items["brand"].to_list() == [None, "x", None]  # a field only some entries have is kept
    assert ds.text_fields == ["title", "brand"]


def test_s3rec_non_integer_item_names_line_and_token(tmp_path):
    (tmp_path / "b.txt").write_text("u1 1 2\nu2 1 x7\nu3\n")
    with pytest.raises(DataError, match=r"b.txt, line 2: item id 'x7' is not a non-negative integer"):
        read_s3rec(tmp_path / "b.txt")
    ds = read_s3rec(tmp_path / "b.txt", on_bad_rows="skip")
    assert ds.sequences().to_lists() == [[0, 1]] and ds.meta["bad_rows"] == 2
    (tmp_path / "c.txt").write_text("u1 1\nu3\n")
    with pytest.raises(DataError, match=r"c.txt, line 2: a user without items; expected lines"):
        read_s3rec(tmp_path / "c.txt")


@pytest.mark.parametrize("content", ["a b c\nd e\n", "1\n2\n", "u1 1.5 2\n"])
def test_s3rec_file_without_interactions_says_what_was_expected(tmp_path, content):
    (tmp_path / "x.txt").write_text(content)
    with pytest.raises(DataError, match=r"x.txt: no interactions found; \d+ bad row\(s\) were skipped; expected "
                                        r"lines 'user item item \.\.\.'"):
        read_s3rec(tmp_path / "x.txt", on_bad_rows="skip")


def test_s3rec_bad_attribute_and_text_files_are_data_errors(tmp_path):
    (tmp_path / "s.txt").write_text("u1 1 2\n")
    (tmp_path / "a.json").write_text(json.dumps({"1": [3, 4], "x": [1]}))
    with pytest.raises(DataError, match=r"a.json, field 'x': entry 'x'"):
        read_s3rec(tmp_path / "s.txt", attributes=tmp_path / "a.json")
    (tmp_path / "t.json").write_text(json.dumps({"1": {"title": "a"}, "2": "just a string"}))
    with pytest.raises(DataError, match=r"t.json, field '2': entry '2' is str, expected an object"):
        read_s3rec(tmp_path / "s.txt", item_text=tmp_path / "t.json")


def test_table_bom_crlf_blank_padded_ids_and_item_cleaning(tmp_path):
    (tmp_path / "t.csv").write_bytes(_crlf("user_id,item_id,timestamp\n u1 , i1 ,1\nu2,i2,2\nu1,i2, 3\n"))
    (tmp_path / "items.csv").write_bytes(_crlf('item_id,title,brand\ni1,Tom &amp; Jerry,NULL\ni2,"  ",&lt;b&gt;\n'))
    ds = read_table(tmp_path / "t.csv", items=tmp_path / "items.csv")
    assert ds.users["user_id"].to_list() == ["u1", "u2"] and ds.items["item_id"].to_list() == ["i1", "i2"]
    assert ds.sequences().to_lists() == [[0, 1], [1]]
    assert ds.items["title"].to_list() == ["Tom & Jerry", None]
    assert ds.items["brand"].to_list() == [None, "<b>"]
    (tmp_path / "tabs.tsv").write_bytes(_crlf("user_id\titem_id\ttimestamp\nu1\ti1\t1\n"))
    assert read_table(tmp_path / "tabs.tsv").counts()["interactions"] == 1


def test_table_blank_id_is_a_named_bad_row(tmp_path):
    (tmp_path / "t.csv").write_text("user_id,item_id,timestamp\nu1,i1,1\nu2,  ,2\n")
    with pytest.raises(DataError, match=r"t.csv, line 3, field 'item_id': missing value"):
        read_table(tmp_path / "t.csv")


def test_table_header_only_is_a_data_error(tmp_path):
    (tmp_path / "h.csv").write_text("user_id,item_id,timestamp\n")
    with pytest.raises(DataError, match=r"h.csv: no interactions found; expected rows with the columns 'user_id' "
                                        r"and 'item_id' and 'timestamp'"):
        read_table(tmp_path / "h.csv")


def _review(user, item, t, **extra):
    return json.dumps({"reviewerID": user, "asin": item, "unixReviewTime": t, **extra})


def test_amazon_bom_crlf_and_meta_cleaning(tmp_path):
    (tmp_path / "r.json").write_bytes(_crlf("\n".join([_review("U1", "B1", 1), _review("U1", "B2", 2)]) + "\n"))
    meta = ["{'asin': 'B1', 'title': 'A &quot;x&quot; &amp; y', 'brand': 'None', 'categories': [['Beauty']]}",
            "{'asin': 'B2', 'title': 'nan', 'description': '', 'categories': [[]]}"]
    (tmp_path / "m.json").write_bytes(_crlf("\n".join(meta) + "\n"))
    ds = read_amazon(tmp_path / "r.json", meta=tmp_path / "m.json")
    assert ds.sequences().to_lists() == [[0, 1]]
    assert ds.items.select("item_id", "title", "brand", "categories").rows() == [
        ("B1", 'A "x" & y', None, ["Beauty"]), ("B2", None, None, None)]
    assert ds.items["description"].to_list() == [None, None]


def test_amazon2023_bom_and_no_readable_rows_says_what_was_expected(tmp_path):
    line = json.dumps({"user_id": "U1", "parent_asin": "P1", "asin": "A1", "timestamp": 1000, "rating": 5})
    (tmp_path / "r.jsonl").write_bytes(_crlf(line + "\n"))
    assert read_amazon2023(tmp_path / "r.jsonl").counts()["interactions"] == 1
    (tmp_path / "bad.jsonl").write_text('{"user": 1}\n{"x": 2}\n')
    with pytest.raises(DataError, match=r"bad.jsonl: no readable rows \(2 bad\); expected Amazon 2023 review lines"):
        read_amazon2023(tmp_path / "bad.jsonl", on_bad_rows="skip")


def test_lcrec_bom_entities_markers_and_bad_ids(tmp_path):
    (tmp_path / "X.inter.json").write_bytes(BOM + json.dumps({"u1": [1, 2], "u2": [2]}).encode())
    (tmp_path / "X.item.json").write_bytes(BOM + json.dumps(
        {"1": {"title": "a &#39;b&#39;"}, "2": {"title": None, "description": "null"}}).encode())
    ds = read_lcrec(tmp_path)
    assert ds.items.rows() == [(0, "1", "a 'b'", None), (1, "2", None, None)]
    assert ds.sequences().to_lists() == [[0, 1], [1]]
    (tmp_path / "Y.inter.json").write_text(json.dumps({"u1": [1, 2], "u2": [2, 2.5, None]}))
    with pytest.raises(DataError, match=r"Y.inter.json, field 'u2': user 'u2' has item id 2.5"):
        read_lcrec(tmp_path / "Y.inter.json")
    ds = read_lcrec(tmp_path / "Y.inter.json", on_bad_rows="skip")
    assert ds.sequences().to_lists() == [[0, 1], [1]] and ds.meta["bad_rows"] == 2
    (tmp_path / "Z.inter.json").write_text("{}")
    with pytest.raises(DataError, match=r"Z.inter.json: no interactions found; expected a JSON object"):
        read_lcrec(tmp_path / "Z.inter.json")


def test_recbole_bom_crlf_token_times_and_cleaning(tmp_path):
    (tmp_path / "x.inter").write_bytes(_crlf("user_id:token\titem_id:token\ttimestamp:token\nu1\ti1\t5\nu1\ti2\t3\n"))
    (tmp_path / "x.item").write_bytes(_crlf("item_id:token\ttitle:token_seq\tclass:token_seq\n"
                                            "i1\tNone\ta  b\ni2\tR&amp;D\t \n"))
    ds = read_recbole(tmp_path)
    assert ds.sequences().to_lists() == [[1, 0]]  # token timestamps are parsed as numbers (3 before 5)
    assert ds.items.rows() == [(0, "i1", None, ["a", "b"]), (1, "i2", "R&D", None)]
    (tmp_path / "y.inter").write_text("user_id:token\titem_id:token\ttimestamp:token\nu1\ti1\tmonday\n")
    with pytest.raises(DataError, match=r"y.inter, line 2, field 'timestamp': cannot read 'monday'"):
        read_recbole(tmp_path / "y.inter")
    (tmp_path / "z.inter").write_text("user_id:token\titem_id:token\n")
    with pytest.raises(DataError, match=r"z.inter: no interactions found; expected tab-separated rows"):
        read_recbole(tmp_path / "z.inter")


def test_movielens_bom_crlf_entities_and_empty_ratings(tmp_path):
    (tmp_path / "ratings.dat").write_bytes(_crlf("1::10::5::100\n1::11::4::50\n"))
    (tmp_path / "movies.dat").write_bytes(_crlf("10::Tom &amp; Jerry (1999)::Comedy\n11::NaN::(no genres listed)\n"))
    ds = read_movielens(tmp_path)
    assert ds.sequences().to_lists() == [[1, 0]]
    assert ds.items.rows() == [(0, "10", "Tom & Jerry", "1999", ["Comedy"]), (1, "11", None, None, None)]
    (tmp_path / "ratings.dat").write_text("1::10\n")
    with pytest.raises(DataError, match=r"ratings.dat: no interactions found; 1 bad row\(s\) were skipped; "
                                        r"expected MovieLens rating lines"):
        read_movielens(tmp_path, on_bad_rows="skip")
    (tmp_path / "ratings.dat").unlink()  # a metadata-only folder still imports, with zero interactions
    assert read_movielens(tmp_path).counts()["interactions"] == 0


def test_inspect_coverage_counts_markers_as_missing(tmp_path):
    from semrec.cli.data import stats_table

    (tmp_path / "s.txt").write_text("u1 1 2 3 4\n")
    (tmp_path / "t.json").write_text(json.dumps({"1": {"title": "a"}, "2": {"title": "NaN"}, "3": {"title": "null"},
                                                 "4": {"title": " "}}))
    ds = read_s3rec(tmp_path / "s.txt", item_text=tmp_path / "t.json")
    table = stats_table(ds)
    rows = dict(zip(table.columns[0]._cells, table.columns[1]._cells))
    assert rows["text coverage: title"] == "25.0%"


def test_nul_bytes_after_the_first_kilobytes_are_bad_lines(tmp_path):
    good = "".join(f"u{k} {k} {k + 1}\n" for k in range(2000))  # > 8 KB, so the sniffer does not see the NUL
    (tmp_path / "s.txt").write_bytes(good.encode() + b"u\x00x 1 2\n")
    with pytest.raises(DataError, match=r"s.txt, line 2001: binary data \(a NUL byte\) in this line"):
        read_s3rec(tmp_path / "s.txt")
    ds = read_s3rec(tmp_path / "s.txt", on_bad_rows="skip")
    assert ds.counts()["users"] == 2000 and ds.meta["bad_rows"] == 1


def test_json_object_text_keeps_its_escapes():
    df = pl.DataFrame({"item_id": ["1"], "details": ['{"Size": "5&quot; wide"}'], "title": ["5&quot; wide"]})
    assert clean_attributes(df).rows() == [("1", '{"Size": "5&quot; wide"}', '5" wide')]
