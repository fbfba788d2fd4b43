import json

import pytest

from semrec.data.readers import read_lcrec
from semrec.errors import DataError


def _write(tmp_path, inter, items=None):
    (tmp_path / "Arts.inter.json").write_text(json.dumps(inter))
    if items is not None:
        (tmp_path / "Arts.item.json").write_text(json.dumps(items))
    return tmp_path


ITEMS = {"0": {"title": "Brush", "brand": "Acme", "categories": "Arts,Painting"},
         "1": {"title": "Canvas", "description": ""}, "2": {"title": "Easel"}}


def test_lcrec_sequences_and_item_text(tmp_path):
    ds = read_lcrec(_write(tmp_path, {"0": [2, 0, 1], "1": [1, 0]}, ITEMS))
    assert ds.name == "Arts"
    assert ds.items["item_id"].to_list() == ["0", "1", "2"]
    assert ds.sequences().to_lists() == [[2, 0, 1], [1, 0]]
    assert ds.interactions["timestamp"].to_list() == [0, 1, 2, 0, 1]
    assert ds.items["categories"].to_list() == ["Arts,Painting", None, None]
    assert ds.text_fields == ["title", "brand", "categories", "description"]
    assert ds.meta["timestamp_kind"] == "order" and len(ds.meta["sources"]) == 2


def test_lcrec_without_item_file_and_errors(tmp_path):
    ds = read_lcrec(_write(tmp_path, {"0": ["a", "b"], "1": ["b"]}) / "Arts.inter.json")
    assert ds.items.columns == ["item_idx", "item_id"] and ds.n_interactions == 3
    _write(tmp_path, {"0": [0, 5]}, ITEMS)
    with pytest.raises(DataError, match=r"Arts.item.json: 1 item id\(s\) in Arts.inter.json have no entry"):
        read_lcrec(tmp_path)
    _write(tmp_path, {"0": [0, 1], "1": 7}, ITEMS)
    with pytest.raises(DataError, match=r"Arts.inter.json, field '1': user '1' maps to '7'"):
        read_lcrec(tmp_path)
    assert read_lcrec(tmp_path, on_bad_rows="skip").meta["bad_rows"] == 1
    (tmp_path / "Arts.inter.json").write_text('{"0": [0, 1],\n "1": [2,]}')
    with pytest.raises(DataError, match=r"Arts.inter.json, line 2: invalid JSON"):
        read_lcrec(tmp_path)
