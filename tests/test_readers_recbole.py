import pytest

from semrec.data import filter_dataset
from semrec.data.readers import read_recbole
from semrec.errors import DataError

INTER = ("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
         "1\t10\t4\t881250949\n1\t11\t3.5\t881250900\n2\t10\t5\t881250000\n")
ITEM = ("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\tvec:float_seq\n"
        "10\tToy Story\t1995\tAnimation Children's Comedy\t0.5 1\n11\tGoldenEye\t1995\tAction\t\n"
        "12\tFour Rooms\t1995\tThriller\t2\n")
USER = "user_id:token\tage:token\tgender:token\n1\t24\tM\n2\t53\tF\n3\t30\tF\n"


def _write(folder, inter=INTER, item=ITEM, user=USER):
    folder.mkdir(exist_ok=True)
    (folder / "ml.inter").write_text(inter)
    if item:
        (folder / "ml.item").write_text(item)
    if user:
        (folder / "ml.user").write_text(user)
    return folder


def test_recbole_atomic_files_types_and_tables(tmp_path):
    ds = read_recbole(_write(tmp_path / "ml"))
    assert ds.name == "ml"
    assert ds.items["item_id"].to_list() == ["10", "11", "12"]
    assert ds.items["movie_title"].to_list() == ["Toy Story", "GoldenEye", "Four Rooms"]  # free text stays text
    assert ds.items["class"].to_list() == [["Animation", "Children's", "Comedy"], ["Action"], ["Thriller"]]
    assert ds.items["vec"].to_list() == [["0.5", "1.0"], None, ["2.0"]]  # an empty list is a missing value
    assert ds.text_fields == ["movie_title", "release_year", "class", "vec"]
    assert ds.users.columns == ["user_idx", "user_id", "age", "gender"]
    assert ds.users["user_id"].to_list() == ["1", "2", "3"]  # user 3 has no interactions but is kept
    assert ds.sequences().to_lists() == [[1, 0], [0], []]
    assert ds.interactions["timestamp"].to_list() == [881250900, 881250949, 881250000]
    assert ds.interactions["rating"].to_list() == [3.5, 4.0, 5.0]
    assert [s["path"].rsplit("/", 1)[1] for s in ds.meta["sources"]] == ["ml.inter", "ml.item", "ml.user"]
    # filtering keeps user attributes of the remaining users
    f = filter_dataset(ds, user_k=2)
    assert f.users.rows() == [(0, "1", "24", "M")]


def test_recbole_token_seq_lists_on_request_and_no_side_files(tmp_path):
    ds = read_recbole(_write(tmp_path / "ml"), text_seq_fields=[])
    assert ds.items["movie_title"].to_list()[0] == ["Toy", "Story"]
    bare = read_recbole(_write(tmp_path / "bare", item=None, user=None) / "ml.inter")
    assert bare.items.columns == ["item_idx", "item_id"] and bare.users.columns == ["user_idx", "user_id"]


@pytest.mark.parametrize("inter, needle", [
    ("user_id\titem_id:token\n1\t2\n", "line 1, field 'user_id': header column 'user_id' is not name:type"),
    ("user_id:token\titem_id:token\trating:float\n1\t2\t4\n1\t3\n", "line 3: expected 3"),
    ("user_id:token\titem_id:token\trating:float\n1\t2\t4\n1\t3\tgood\n", "line 3, field 'rating': cannot read 'good'"),
    ("uid:token\titem_id:token\n1\t2\n", "field 'user_id': no 'user_id' column"),
])
def test_recbole_malformed(tmp_path, inter, needle):
    folder = _write(tmp_path / "bad", inter=inter, item=None, user=None)
    with pytest.raises(DataError) as e:
        read_recbole(folder)
    assert "ml.inter" in str(e.value) and needle in str(e.value)


def test_recbole_skip_counts_bad_rows(tmp_path):
    inter = "user_id:token\titem_id:token\trating:float\n1\t2\t4\n1\t3\n1\t4\tgood\n2\t2\t1\n"
    ds = read_recbole(_write(tmp_path / "s", inter=inter, item=None, user=None), on_bad_rows="skip")
    assert ds.meta["bad_rows"] == 2 and ds.n_interactions == 2 and ds.meta["timestamp_kind"] == "order"
