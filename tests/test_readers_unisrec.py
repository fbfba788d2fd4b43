import numpy as np
import pytest

from semrec.data import leave_one_out
from semrec.data.readers import READERS, read_unisrec
from semrec.errors import DataError
from tests.conftest import shared_path

HEAD = "user_id:token\titem_id_list:token_seq\titem_id:token\n"


def _release(folder, cap=3, with_train=True, text=True):
    """Two users; user 0's sequence (7 items) is longer than the history cap, as in UniSRec's files."""
    seqs = {"0": ["0", "1", "2", "3", "4", "5", "6"], "1": ["2", "4", "1", "0"]}
    rows = {"train": [], "valid": [], "test": []}
    for u, s in seqs.items():
        for t in range(1, len(s)):
            part = "test" if t == len(s) - 1 else "valid" if t == len(s) - 2 else "train"
            rows[part].append(f"{u}\t{' '.join(s[max(0, t - cap):t])}\t{s[t]}\n")
    folder.mkdir()
    for part, r in rows.items():
        if part != "train" or with_train:
            (folder / f"X.{part}.inter").write_text(HEAD + "".join(reversed(r) if part == "train" else r))
    if text:
        (folder / "X.text").write_text("item_id:token\ttext:token_seq\n" + "".join(
            f"ASIN{i}\tItem number {i}. Brand {i % 2}.\n" for i in range(7)))
        (folder / "X.item2index").write_text("".join(f"ASIN{i}\t{i}\n" for i in range(7)))
        (folder / "X.user2index").write_text("AU0\t0\nAU1\t1\n")
    return seqs


def test_rebuilds_capped_sequences_and_names_items(tmp_path):
    seqs = _release(tmp_path / "r")
    ds = read_unisrec(tmp_path / "r")
    assert READERS["unisrec"] is read_unisrec
    assert ds.items["item_id"].to_list() == [f"ASIN{i}" for i in range(7)]
    assert ds.items["text"][3] == "Item number 3. Brand 1."
    assert ds.users["user_id"].to_list() == ["AU0", "AU1"]
    assert ds.sequences().to_lists() == [[int(i) for i in s] for s in seqs.values()]  # full, not capped at 3
    assert ds.meta["source_format"] == "unisrec"


def test_text_is_cleaned_like_every_other_reader(tmp_path):
    _release(tmp_path / "r")
    text = tmp_path / "r" / "X.text"
    text.write_text(text.read_text().replace("Item number 2. Brand 0.", "Tom &amp; Jerry&#39;s kit").replace(
        "Item number 5. Brand 1.", "NaN"))
    ds = read_unisrec(tmp_path / "r")
    assert ds.items["text"][2] == "Tom & Jerry's kit"  # HTML entities decoded (readers.common.build_dataset)
    assert ds.items["text"][5] is None  # 'NaN' is no text


def test_without_train_file_uses_valid_history(tmp_path):
    _release(tmp_path / "r", cap=50, with_train=False, text=False)
    ds = read_unisrec(tmp_path / "r" / "X.test.inter")
    assert ds.sequences().to_lists() == [[0, 1, 2, 3, 4, 5, 6], [2, 4, 1, 0]]  # no item table: ids as tokens
    assert ds.items["item_id"].to_list() == ["0", "1", "2", "3", "4", "5", "6"]


def test_inconsistent_rows_name_file_and_line(tmp_path):
    _release(tmp_path / "r")
    p = tmp_path / "r" / "X.test.inter"
    p.write_text(p.read_text().replace("3 4 5\t6", "3 4 1\t6"))
    with pytest.raises(DataError, match="does not continue") as e:
        read_unisrec(p)
    assert "X.test.inter" in str(e.value) and "line 2" in str(e.value)


def _check_given_split(ds, folder, stem, cap):
    """leave_one_out of the rebuilt sequences reproduces the release's valid and test rows exactly."""
    import polars as pl

    split = leave_one_out(ds)
    for name in ("valid", "test"):
        rows = pl.read_csv(folder / f"{stem}.{name}.inter", separator="\t", quote_char=None)
        es = getattr(split, name)
        assert len(es) == rows.height == ds.n_users
        # the files use the item index == our item_idx (item order = the release's index)
        idx = {v: i for i, v in enumerate(ds.items["item_id"].to_list())}
        if "Scientific" in stem:
            import polars as pl2

            m = pl2.read_csv(folder / f"{stem}.item2index", separator="\t", has_header=False)
            idx = {str(i): idx[a] for a, i in zip(m[:, 0].to_list(), m[:, 1].to_list())}
        assert np.array_equal(es.targets.items, np.array([idx[str(t)] for t in rows[:, 2].to_list()]))
        capped = es.histories.slice_tail(cap)
        hist = [[idx[t] for t in str(h).split(" ")] for h in rows[:, 1].to_list()]
        assert capped.to_lists() == hist


def test_scientific_unisrec_counts_and_given_split():
    folder = shared_path("amazon-scientific-unisrec")
    ds = read_unisrec(folder)
    # PROVENANCE.md: 8,442 users, 4,385 items, 59,384 interactions counted on the capped (<= 50 + 1) rows;
    # three users have longer sequences, rebuilt in full from train.inter (43 more interactions)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (8442, 4385, 59427)
    assert int(np.minimum(ds.sequences().lengths, 51).sum()) == 59384
    assert ds.items.filter(ds.items["item_id"] == "B0000223SI")["text"][0].startswith("PORTER-CABLE 740000801")
    _check_given_split(ds, folder, "Scientific", 50)


def test_games_counts_and_given_split():
    folder = shared_path("amazon-games-text")
    ds = read_unisrec(folder)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (50546, 16859, 440264)
    assert ds.text_fields == ["title"] and ds.items["title"][0] == "Fire Emblem: The Sacred Stones"
    _check_given_split(ds, folder, "Games-6k", 10**6)


def test_scientific_mm_counts():
    folder = shared_path("amazon-scientific-mm")
    ds = read_unisrec(folder)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2928, 1585, 19712)  # PROVENANCE.md
    _check_given_split(ds, folder, "Scientific", 50)
