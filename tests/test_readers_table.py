import datetime as dt
import gzip
import subprocess
import sys

import polars as pl
import pytest

from semrec.data import Dataset
from semrec.data.readers import READERS, read_table
from semrec.errors import DataError

CSV = "uid,sku,ts,stars,channel\nu1,i2,20,4,web\nu1,i1,10,5,app\nu2,i1,5,3,web\nu2,i3,5,1,web\n"


def test_csv_with_column_mapping_and_item_table(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(CSV)
    items = tmp_path / "items.csv"
    items.write_text('sku,name,tags\ni1,"Red, big",x\ni3,Blue,\ni9,Cold item,y\n')
    ds = read_table(log, user_col="uid", item_col="sku", time_col="ts", rating_col="stars", items=items)
    assert ds.items["item_id"].to_list() == ["i1", "i3", "i9", "i2"]
    assert ds.items["name"].to_list() == ["Red, big", "Blue", "Cold item", None]
    assert ds.text_fields == ["name", "tags"]
    assert ds.sequences().to_lists() == [[0, 3], [0, 1]]  # u1: i1 (10), i2 (20); u2 tie keeps file order
    assert ds.interactions["rating"].to_list() == [5.0, 4.0, 3.0, 1.0]
    assert ds.counts()["items_without_interactions"] == 1
    assert ds.meta["options"]["rating_col"] == "stars" and len(ds.meta["sources"]) == 2
    assert ds.meta["bad_rows"] == 0
    people = tmp_path / "people.tsv"
    people.write_text("uid\tcountry\nu2\tFR\nu7\tDE\n")
    with_users = read_table(log, user_col="uid", item_col="sku", time_col="ts", users=people)
    assert with_users.users.rows() == [(0, "u2", "FR"), (1, "u7", "DE"), (2, "u1", None)]
    with pytest.raises(DataError, match=r"people.tsv, line 1, field 'id': no user key column 'id'.*-o user_key="):
        read_table(log, user_col="uid", item_col="sku", time_col="ts", users=people, user_key="id")


def test_tsv_gz_headerless_and_row_order_time(tmp_path):
    path = tmp_path / "ratings.tsv.gz"
    path.write_bytes(gzip.compress(b"7\ta\t3.5\n7\tb\t4\n8\ta\t1\n"))
    ds = read_table(path, has_header=False, columns=["user_id", "item_id", "rating"], time_col=None)
    assert ds.name == "ratings"
    assert ds.sequences().to_lists() == [[0, 1], [0]]
    assert ds.interactions["timestamp"].to_list() == [0, 1, 0]
    assert ds.interactions["rating"].to_list() == [3.5, 4.0, 1.0]
    assert ds.meta["timestamp_kind"] == "order"


def test_parquet_datetimes_and_time_format(tmp_path):
    pl.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 11, 10],
                  "timestamp": [dt.datetime(2020, 1, 2), dt.datetime(2020, 1, 1), dt.datetime(1970, 1, 1, 0, 1)]}
                 ).write_parquet(tmp_path / "log.parquet")
    ds = read_table(tmp_path / "log.parquet")
    assert ds.interactions["timestamp"].to_list() == [1577836800, 1577923200, 60]
    assert ds.users["user_id"].to_list() == ["1", "2"]
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\na,x,2020-01-02\na,y,2020-01-01\n")
    ds = read_table(tmp_path / "log.csv", time_format="%Y-%m-%d")
    assert ds.interactions["timestamp"].to_list() == [1577836800, 1577923200]


def test_missing_column_names_file_field_and_choices(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(CSV)
    with pytest.raises(DataError) as e:
        read_table(log, user_col="uid", item_col="item")
    msg = str(e.value)
    assert "log.csv, line 1, field 'item'" in msg and "'sku'" in msg and "-o item_col=" in msg


@pytest.mark.parametrize("bad, needle", [
    ("u3,i1,later,2,web", "field 'ts': cannot read 'later' as Int64"),
    (",i1,7,2,web", "field 'uid': missing value"),
    ("u3,i1", "field 'ts': missing value"),
])
def test_bad_rows_are_named_then_skipped(tmp_path, bad, needle):
    log = tmp_path / "log.csv"
    lines = CSV.splitlines()
    log.write_text("\n".join(lines[:3] + [bad] + lines[3:]) + "\n")
    with pytest.raises(DataError) as e:
        read_table(log, user_col="uid", item_col="sku", time_col="ts")
    assert "log.csv, line 4" in str(e.value) and needle in str(e.value)
    ds = read_table(log, user_col="uid", item_col="sku", time_col="ts", on_bad_rows="skip")
    assert ds.meta["bad_rows"] == 1 and ds.n_interactions == 4


def test_bad_encoding_empty_file_and_latin1_option(tmp_path):
    log = tmp_path / "log.csv"
    log.write_bytes(b"user_id,item_id,timestamp\nu1,caf\xe9,1\nu1,tea,2\n")
    with pytest.raises(DataError, match=r"log.csv, line 2: not valid UTF-8.*encoding=latin-1"):
        read_table(log)
    assert read_table(log, encoding="latin-1").items["item_id"].to_list() == ["café", "tea"]
    skipped = read_table(log, on_bad_rows="skip")
    assert skipped.meta["bad_rows"] == 1 and skipped.items["item_id"].to_list() == ["tea"]
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        read_table(tmp_path / "empty.csv")


def test_cli_imports_table_with_options(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(CSV)
    r = subprocess.run([sys.executable, "-m", "semrec", "data", "import", "table", str(log), "--out",
                        str(tmp_path / "ds"), "-o", "user_col=uid", "-o", "item_col=sku", "-o", "time_col=ts",
                        "-o", "rating_col=stars"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    back = Dataset.load(tmp_path / "ds")
    assert back.counts()["interactions"] == 4 and back.meta["source_format"] == "table"
    assert {"amazon", "amazon2023", "lcrec", "movielens", "recbole", "s3rec", "table"} <= set(READERS)
