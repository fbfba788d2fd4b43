"""Collision resolution, diagnostics, plots and code-table import/export, on hand-made codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semrec.errors import DataError
from semrec.semantic_ids import (CodeTable, append_level, coherence, collision_rate, diagnostics, plot_code_usage,
                                 plot_prefix_sizes, reassign_last)

CODES = np.array([[1, 2], [1, 2], [0, 0], [1, 2], [0, 0]])


def test_append_level_numbers_each_group_in_item_order():
    assert append_level(CODES).tolist() == [[1, 2, 0], [1, 2, 1], [0, 0, 0], [1, 2, 2], [0, 0, 1]]
    # new items continue after the existing members of their group
    assert append_level(np.array([[1, 2], [3, 3], [1, 2]]), existing=CODES).tolist() == [[1, 2, 3], [3, 3, 0],
                                                                                         [1, 2, 4]]
    assert collision_rate(CODES) == pytest.approx(1 - 2 / 5)


def test_reassign_moves_losers_to_nearest_free_code():
    d = np.array([[0.1, 0.5, 0.0, 0.9], [0.3, 0.2, 0.9, 0.9], [0, 1, 1, 1], [0.2, 0.4, 0.05, 0.3],
                  [0.5, 0.5, 0.5, 0.5]])
    # (1,2): item 0 is closest to code 2 and keeps it; item 1 -> its nearest free 1, item 3 -> 0.
    # (0,0): item 2 keeps 0; item 4 (all ties) takes the lowest free code 1.
    assert reassign_last(CODES, d).tolist() == [[1, 2], [1, 1], [0, 0], [1, 0], [0, 1]]
    # against an existing table, a new item avoids occupied codes
    assert reassign_last(np.array([[0, 0]]), np.array([[0.0, 0.1, 0.2, 0.3]]),
                         existing=np.array([[0, 0], [0, 1]])).tolist() == [[0, 2]]


def test_diagnostics_hand_computed():
    v = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], float)
    c = np.array([[0, 0], [0, 1], [1, 0], [1, 0]])
    coh = coherence(v, c)
    # all 6 pairs: two have cosine 1 -> 1/3; level-1 groups {0,1},{2,3} -> 1; level 2 only {2,3} -> 1
    assert coh["coherence_random"] == pytest.approx(1 / 3)
    assert coh["coherence_per_level"] == pytest.approx([1.0, 1.0])
    d = diagnostics(c, append_level(c), [2, 2], v)
    assert d["utilization"] == [1.0, 1.0]
    assert d["entropy"][0] == pytest.approx(np.log(2)) and d["perplexity"][0] == pytest.approx(2.0)
    assert d["largest_group_per_prefix"] == [2, 2]
    assert d["collision_rate_before"] == pytest.approx(0.25) and d["collision_rate_final"] == 0.0
    assert d["disambiguation_size"] == 2 and d["final_levels"] == 3


def test_table_roundtrips_parquet_safetensors_and_letter_index(tmp_path):
    t = CodeTable(append_level(CODES), [2, 3, 3], ["a", "b", "c", "d", "e"])
    for back in (CodeTable.load(t.save(tmp_path / "c.safetensors")),
                 CodeTable.from_parquet(t.to_parquet(tmp_path / "c.parquet"))):
        assert np.array_equal(back.codes, t.codes) and back.item_ids == t.item_ids
        assert back.codebook_sizes == [2, 3, 3]
        assert back.codes.dtype == np.int64
    t.to_index_json(tmp_path / "index.json")
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["b"] == ["<a_1>", "<b_2>", "<c_1>"]
    back = CodeTable.from_index_json(tmp_path / "index.json", item_ids=["e", "a"])
    assert back.codes.tolist() == [[0, 0, 1], [1, 2, 0]]
    (tmp_path / "bad.json").write_text(json.dumps({"x": ["<b_1>"]}))
    with pytest.raises(DataError, match="position 0"):
        CodeTable.from_index_json(tmp_path / "bad.json")


def test_plots_write_png(tmp_path):
    c = append_level(CODES)
    assert plot_code_usage(c, [2, 3, 3], tmp_path / "u.png").read_bytes()[:4] == b"\x89PNG"
    assert plot_prefix_sizes(c, tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
