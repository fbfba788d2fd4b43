"""Precomputed vector files (issue 13): rows aligned by their ids, never by position; ragged, null, NaN, duplicated
or unreadable vectors are DataErrors naming the file, the row and the item."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest

from semrec.errors import DataError
from semrec.features import load_vectors

V = np.arange(12, dtype=np.float32).reshape(4, 3)
IDS = ["a", "b", "c", "d"]


def test_shuffled_parquet_gives_the_sorted_matrix(tmp_path):
    order = [3, 1, 0, 2]
    shuffled = pl.DataFrame({"item_id": [IDS[i] for i in order], "vector": V[order].tolist()})
    shuffled.write_parquet(tmp_path / "s.parquet")
    pl.DataFrame({"item_id": IDS, "vector": V.tolist()}).write_parquet(tmp_path / "o.parquet")
    assert np.array_equal(load_vectors(tmp_path / "s.parquet", IDS), load_vectors(tmp_path / "o.parquet", IDS))
    assert np.array_equal(load_vectors(tmp_path / "s.parquet", IDS), V)
    # item_idx keys align with or without the dataset's ids, as lists or as fixed-size arrays
    pl.DataFrame({"item_idx": order, "vector": V[order].tolist()}).write_parquet(tmp_path / "i.parquet")
    assert np.array_equal(load_vectors(tmp_path / "i.parquet"), V)
    assert np.array_equal(load_vectors(tmp_path / "i.parquet", IDS), V)
    arr = pl.Series(V[order]).cast(pl.Array(pl.Float32, 3))
    pl.DataFrame({"item_idx": order, "vector": arr}).write_parquet(tmp_path / "a.parquet")
    assert np.array_equal(load_vectors(tmp_path / "a.parquet"), V)
    # float columns instead of a list column
    pl.DataFrame({"item_id": [IDS[i] for i in order], **{f"f{j}": V[order, j] for j in range(3)}}).write_parquet(
        tmp_path / "c.parquet")
    assert np.array_equal(load_vectors(tmp_path / "c.parquet", IDS), V)


def test_item_id_rows_without_a_dataset_are_refused(tmp_path):
    pl.DataFrame({"item_id": IDS, "vector": V.tolist()}).write_parquet(tmp_path / "v.parquet")
    with pytest.raises(DataError, match=r"v.parquet, field 'item_id': rows are keyed by item_id, and no dataset was "
                                        r"given to align them to"):
        load_vectors(tmp_path / "v.parquet")
    pl.DataFrame({"item_idx": [0, 2, 2, 3], "vector": V.tolist()}).write_parquet(tmp_path / "i.parquet")
    with pytest.raises(DataError, match=r"item_idx 2 appears more than once \(again at row 2\)"):
        load_vectors(tmp_path / "i.parquet")
    pl.DataFrame({"item_idx": [0, 1, 2, 7], "vector": V.tolist()}).write_parquet(tmp_path / "g.parquet")
    with pytest.raises(DataError, match=r"item_idx must hold 0..3 once each"):
        load_vectors(tmp_path / "g.parquet")


@pytest.mark.parametrize("vectors,message", [
    ([[1.0, 2.0], [1.0]], r"ragged vectors: row 1 \(item 'b'\) has 1 values, row 0 has 2"),
    ([[1.0, 2.0], [1.0, None]], r"row 1 \(item 'b'\) has a missing vector or a null value"),
    ([[1.0, 2.0], None], r"row 1 \(item 'b'\) has a missing vector or a null value"),
    ([[1.0, 2.0], [1.0, float("nan")]], r"1 row\(s\) contain NaN/inf, first at row 1 \(item 'b'\)"),
    ([["x"], ["y"]], r"column 'vector' holds String values, expected numbers"),
])
def test_bad_vectors_name_file_row_and_item(tmp_path, vectors, message):
    pl.DataFrame({"item_id": ["a", "b"], "vector": vectors}).write_parquet(tmp_path / "v.parquet")
    with pytest.raises(DataError, match=r"v.parquet, field 'vector': " + message if "NaN" not in message
                       else r"v.parquet: " + message):
        load_vectors(tmp_path / "v.parquet", ["a", "b"])


def test_unreadable_vector_files_are_data_errors(tmp_path):
    np.save(tmp_path / "v.npy", V)
    data = (tmp_path / "v.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[: len(data) - 10])
    with pytest.raises(DataError, match=r"t.npy: not a readable .npy file"):
        load_vectors(tmp_path / "t.npy")
    (tmp_path / "p.npy").write_bytes(b"\x80\x04\x95" + b"\x00" * 20)
    with pytest.raises(DataError, match=r"p.npy: cannot read without pickle"):
        load_vectors(tmp_path / "p.npy")
    (tmp_path / "v.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(DataError, match=r"v.safetensors: not a readable safetensors file"):
        load_vectors(tmp_path / "v.safetensors")
    pl.DataFrame({"item_id": IDS * 30, "vector": np.tile(V, (30, 1)).tolist()}).with_row_index().with_columns(
        pl.format("{}-{}", "item_id", "index").alias("item_id")).drop("index").write_parquet(tmp_path / "g.parquet")
    good = (tmp_path / "g.parquet").read_bytes()
    rnd = random.Random(1)
    for trial in range(30):  # corrupted Parquet: an error or (when the flip hit unused bytes) the right rows
        bad = bytearray(good)
        for _ in range(3):
            bad[rnd.randrange(4, len(good) - 4)] = rnd.randrange(256)
        path = tmp_path / f"b{trial}.parquet"
        path.write_bytes(bytes(bad))
        try:
            assert load_vectors(path, pl.read_parquet(tmp_path / "g.parquet")["item_id"].to_list()).shape == (120, 3)
        except DataError as e:
            assert str(e).startswith(str(path))
