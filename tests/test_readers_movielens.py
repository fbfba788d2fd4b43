import pytest

from semrec.data import Dataset
from semrec.data.readers import read_movielens
from semrec.errors import DataError


def test_movielens_100k_native(tmp_path):
    (tmp_path / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t5\t881250000\n")
    flags = ["0"] * 19
    toy, gold = flags.copy(), flags.copy()
    toy[3] = toy[4] = toy[5] = "1"
    gold[1] = "1"
    (tmp_path / "u.item").write_bytes(
        ("242|Kolya (1996)|24-Jan-1997||http://x|" + "|".join(toy) + "\n").encode("latin-1")
        + ("302|L.A. Confidential (1997)|01-Jan-1997||http://y|" + "|".join(gold) + "\n").encode("latin-1")
        + ("303|Caf\xe9 Society (1995)|01-Jan-1995||http://z|" + "|".join(flags) + "\n").encode("latin-1"))
    (tmp_path / "u.user").write_text("186|39|F|executive|00000\n196|49|M|writer|55105\n")
    ds = read_movielens(tmp_path)
    assert ds.meta["options"]["variant"] == "100k"
    assert ds.items["title"].to_list() == ["Kolya", "L.A. Confidential", "Café Society"]
    assert ds.items["year"].to_list() == ["1996", "1997", "1995"]
    assert ds.items["genres"].to_list() == [["Animation", "Children's", "Comedy"], ["Action"], None]  # none: missing
    assert ds.users["user_id"].to_list() == ["186", "196"] and ds.users["occupation"].to_list()[1] == "writer"
    assert ds.sequences().to_lists() == [[1], [1, 0]]
    assert ds.text_fields == ["title", "year", "genres"]


def test_movielens_1m_dat_and_meta_only(tmp_path):
    (tmp_path / "movies.dat").write_bytes(
        "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Cité des enfants perdus, La (1995)::Sci-Fi\n"
        .encode("latin-1"))
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    meta_only = read_movielens(tmp_path)
    assert meta_only.counts() == {"users": 2, "items": 2, "interactions": 0, "items_without_interactions": 2}
    assert meta_only.items["title"].to_list() == ["Toy Story", "Cité des enfants perdus, La"]
    meta_only.save(tmp_path / "out")
    assert Dataset.load(tmp_path / "out").n_users == 2
    (tmp_path / "ratings.dat").write_text("1::2::5::978300760\n1::1::3::978300000\n3::1::4::978300001\n")
    ds = read_movielens(tmp_path / "ratings.dat")  # a file inside the folder works too
    assert ds.users["user_id"].to_list() == ["1", "2", "3"] and ds.users["gender"].to_list() == ["F", "M", None]
    assert ds.sequences().to_lists() == [[0, 1], [], [0]]
    (tmp_path / "ratings.dat").write_text("1::2::5::978300760\n1::1::five::978300000\n")
    with pytest.raises(DataError, match=r"ratings.dat, line 2, field 'rating': cannot read 'five'"):
        read_movielens(tmp_path)
    (tmp_path / "ratings.dat").write_text("1::2::5::978300760\n1::1::5\n")
    with pytest.raises(DataError, match=r"ratings.dat, line 2: expected 4 '::'-separated fields"):
        read_movielens(tmp_path)
    assert read_movielens(tmp_path, on_bad_rows="skip").meta["bad_rows"] == 1


def test_movielens_csv_layout(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,1,4.0,1112484676\n")
    (tmp_path / "movies.csv").write_text('movieId,title,genres\n1,"American President, The (1995)",Comedy|Drama\n'
                                         "2,Untitled,(no genres listed)\n")
    (tmp_path / "links.csv").write_text("movieId,imdbId,tmdbId\n1,0112346,9087\n2,0000001,\n")
    ds = read_movielens(tmp_path)
    assert ds.items["title"].to_list() == ["American President, The", "Untitled"]
    assert ds.items["year"].to_list() == ["1995", None]
    assert ds.items["genres"].to_list() == [["Comedy", "Drama"], None]
    assert ds.items["imdb_id"].to_list() == ["0112346", "0000001"]
    assert ds.sequences().to_lists() == [[0, 1]] and ds.interactions["rating"].to_list() == [4.0, 3.5]


def test_movielens_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no MovieLens files here"):
        read_movielens(tmp_path)


def test_utf8_file_with_one_bad_byte_is_not_read_as_latin1(tmp_path):
    """A UTF-8 ratings file with a stray byte keeps its UTF-8 ids (the bad line is named or skipped); a real
    latin-1 file (no UTF-8 sequences) is still read as latin-1."""
    (tmp_path / "ratings.dat").write_bytes("é::1::5::1\n".encode() + b"\xff::2::5::2\n")
    with pytest.raises(DataError, match=r"ratings.dat, line 2: not valid utf-8"):
        read_movielens(tmp_path)
    ds = read_movielens(tmp_path, on_bad_rows="skip")
    assert ds.users["user_id"].to_list() == ["é"] and ds.meta["bad_rows"] == 1
    (tmp_path / "ratings.dat").write_bytes("é::1::5::1\n".encode("latin-1"))
    assert read_movielens(tmp_path).users["user_id"].to_list() == ["é"]
