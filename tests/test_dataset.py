import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from semrec.data import Dataset, filter_dataset, kcore
from semrec.errors import DataError


def _toy() -> Dataset:
    inter = pl.DataFrame({"user_id": ["u1", "u1", "u2", "u1", "u2", "u3"],
                          "item_id": ["b", "a", "a", "c", "c", "a"],
                          "timestamp": [20, 10, 5, 30, 5, 1]})
    items = pl.DataFrame({"item_id": ["a", "b", "c", "d"], "title": ["A", "B", "C", "D"]})
    return Dataset.build(inter, items, name="toy", text_fields=["title"])


def test_build_orders_by_time_and_keeps_ties_in_input_order():
    ds = _toy()
    assert ds.items["item_id"].to_list() == ["a", "b", "c", "d"]
    assert ds.users["user_id"].to_list() == ["u1", "u2", "u3"]
    seqs = ds.sequences()
    assert seqs.to_lists() == [[0, 1, 2], [0, 2], [0]]  # u1: a(10) b(20) c(30); u2 tie keeps a before c
    assert ds.counts() == {"users": 3, "items": 4, "interactions": 6, "items_without_interactions": 1}


def test_save_load_round_trip(tmp_path):
    ds = _toy()
    ds.save(tmp_path / "ds")
    back = Dataset.load(tmp_path / "ds")
    assert_frame_equal(ds.items, back.items)
    assert_frame_equal(ds.users, back.users)
    assert_frame_equal(ds.interactions, back.interactions)
    assert back.text_fields == ["title"] and back.name == "toy"


def test_load_rejects_non_dataset_folder(tmp_path):
    with pytest.raises(DataError, match="manifest.json"):
        Dataset.load(tmp_path)


def test_kcore_is_iterative():
    # item x has 2 users; removing user c (1 interaction) drops item y to 1 user, which then drops user b.
    inter = pl.DataFrame({"user_idx": [0, 0, 1, 1, 2], "item_idx": [0, 1, 0, 2, 2]})
    out = kcore(inter, user_k=2, item_k=2)
    assert out.height == 0
    inter = pl.DataFrame({"user_idx": [0, 0, 1, 1, 2, 2], "item_idx": [0, 1, 0, 1, 0, 2]})
    assert sorted(kcore(inter, 2, 2)["user_idx"].unique().to_list()) == [0, 1]


def test_filter_dataset_reindexes_and_records_options():
    ds = _toy()
    f = filter_dataset(ds, user_k=2, item_k=2)
    assert f.users["user_id"].to_list() == ["u1", "u2"]
    assert f.items["item_id"].to_list() == ["a", "c"]
    assert f.meta["filtering"]["user_k"] == 2
    assert np.array_equal(f.sequences().lengths, [2, 2])
