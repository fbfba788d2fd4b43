"""Every dataset in ../shared/data imports with the exact counts its PROVENANCE.md states, and round-trips."""

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from semrec.data import Dataset
from semrec.data.readers import read_lcrec, read_movielens, read_recbole, read_s3rec
from tests.conftest import shared_path


def _s3rec(folder, seq, text):
    return lambda: read_s3rec(shared_path(folder, seq), item_text=shared_path(folder, "text", text))


# (loader, users, items, interactions, {text field: items with non-empty text}) as stated in PROVENANCE.md
CASES = {
    "beauty": (_s3rec("amazon-beauty-s3rec", "Beauty.txt", "Beauty.item.json"), 22_363, 12_101, 198_502,
               {"title": 12_101, "categories": 12_101, "brand": 12_017}),
    "sports": (_s3rec("amazon-sports-s3rec", "Sports_and_Outdoors.txt", "Sports_and_Outdoors.item.json"),
               35_598, 18_357, 296_337, {"keywords": 18_357}),
    "toys": (_s3rec("amazon-toys-s3rec", "Toys_and_Games.txt", "Toys_and_Games.item.json"), 19_412, 11_924,
             167_597, {"title": 11_924, "categories": 11_924}),
    "yelp": (lambda: read_s3rec(shared_path("yelp-s3rec-text", "Yelp.txt"),
                                item_text=shared_path("yelp-s3rec-text", "Yelp.item.json"), text_key_offset=-1),
             30_431, 20_033, 316_354, {"title": 20_033, "description": 20_033}),
    "scientific": (lambda: read_lcrec(shared_path("amazon-scientific-text")), 8_317, 4_344, 58_492,
                   {"title": 4_344, "brand": 4_332, "description": 4_221, "categories": 4_213}),
    "ml-100k": (lambda: read_recbole(shared_path("movielens-100k")), 943, 1_682, 100_000,
                {"movie_title": 1_682, "release_year": 1_682, "class": 1_682}),
    "ml-1m-meta": (lambda: read_movielens(shared_path("movielens-1m-meta")), 6_040, 3_883, 0, {"title": 3_883}),
}


def _filled(col: pl.Series) -> int:
    if col.dtype.is_nested():
        return int((col.list.len() > 0).fill_null(False).sum())
    return int((col.cast(pl.Utf8).str.strip_chars().str.len_chars() > 0).fill_null(False).sum())


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_shared_dataset_counts_text_and_round_trip(name, tmp_path):
    load, users, items, interactions, text = CASES[name]
    ds = load()
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (users, items, interactions)
    assert {f: _filled(ds.items[f]) for f in text} == text
    assert all(s["sha256"] and s["bytes"] > 0 for s in ds.meta["sources"])
    assert ds.meta["bad_rows"] == 0
    ds.save(tmp_path / name)
    back = Dataset.load(tmp_path / name)
    for table in ("items", "users", "interactions"):
        assert_frame_equal(getattr(ds, table), getattr(back, table))
    assert back.text_fields == ds.text_fields and back.meta == ds.meta


def test_shared_sequence_lengths_match_provenance():
    lengths = read_lcrec(shared_path("amazon-scientific-text")).sequences().lengths
    assert (lengths.min(), lengths.max()) == (5, 78)
    yelp = read_s3rec(shared_path("yelp-s3rec-text", "Yelp.txt"),
                      item_text=shared_path("yelp-s3rec-text", "Yelp.item.json"), text_key_offset=-1)
    assert (yelp.sequences().lengths.min(), yelp.sequences().lengths.max()) == (5, 350)
    # the known artefact named in PROVENANCE.md: key "12181" (S3-Rec item 12182) is Bank of America
    row = yelp.items.filter(pl.col("item_id") == "12182").row(0, named=True)
    assert row["title"] == "Bank of America" and row["description"] == "u, n, k, o, w, n"
    ml = read_recbole(shared_path("movielens-100k"))
    assert ml.items.row(0, named=True)["movie_title"] == "Toy Story" and ml.users.height == 943
