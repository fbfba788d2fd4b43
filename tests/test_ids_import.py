"""`semrec ids import`: LETTER/LC-Rec index.json, Parquet and .npy code tables into a semantic-ID folder that
`ids report` and `codes_path=` read; collisions resolved like `ids fit`; bad files named with the fix."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from semrec.errors import DataError

N = 40
LETTERS = "abcd"


def run(*args: str) -> SimpleNamespace:
    from semrec.cli import _register, app

    if not app.registered_groups:
        _register()
    r = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return SimpleNamespace(returncode=r.exit_code, stdout=r.stdout, stderr=r.stderr)


def _codes() -> np.ndarray:
    i = np.arange(N)
    codes = np.stack([i % 4, (i // 4) % 5, i % 3], axis=1)
    codes[7] = codes[3]  # one collision: items "3" and "7" share a full code
    return codes


@pytest.fixture(scope="module")
def lcrec(tmp_path_factory):
    """An LC-Rec dataset (X.inter.json + X.item.json) with its index.json, as LC-Rec/LETTER ship them."""
    from semrec.data.readers import read_lcrec

    root = tmp_path_factory.mktemp("lcrec")
    rng = np.random.default_rng(0)
    (root / "Toy.inter.json").write_text(json.dumps(
        {str(u): [int(x) for x in rng.choice(N, size=6, replace=False)] for u in range(60)}))
    (root / "Toy.item.json").write_text(json.dumps({str(i): {"title": f"item {i}"} for i in range(N)}))
    index = {str(i): [f"<{LETTERS[l]}_{c}>" for l, c in enumerate(row)] for i, row in enumerate(_codes().tolist())}
    (root / "Toy.index.json").write_text(json.dumps(index))  # one line, like LETTER's json.dump
    ds = read_lcrec(root / "Toy.inter.json")
    ds.save(root / "ds")
    return SimpleNamespace(root=root, ds=ds, index=root / "Toy.index.json", ids=ds.item_ids().tolist())


def _by_idx(lcrec) -> np.ndarray:
    """The fixture's codes in the dataset's item_idx order (item ids are the LC-Rec indices as strings)."""
    return _codes()[[int(i) for i in lcrec.ids]]


def test_formats_agree_and_align_by_item_id(lcrec, tmp_path):
    from semrec.semantic_ids.importing import read_code_table

    want = _by_idx(lcrec)
    t = read_code_table(lcrec.index, lcrec.ids)
    assert np.array_equal(t.codes, want) and t.item_ids == lcrec.ids and t.codebook_sizes == [4, 5, 3]
    rows = np.random.default_rng(1).permutation(N)  # Parquet rows in any order: aligned by item_id, not position
    pl.DataFrame({"item_id": [lcrec.ids[r] for r in rows], "codes": want[rows].tolist()}).write_parquet(
        tmp_path / "list.parquet")
    pl.DataFrame({"item_id": [lcrec.ids[r] for r in rows], **{f"code_{l}": want[rows, l] for l in range(3)}}
                 ).write_parquet(tmp_path / "cols.parquet")
    np.save(tmp_path / "codes.npy", want.astype(np.int32))
    for f in ("list.parquet", "cols.parquet", "codes.npy"):
        got = read_code_table(tmp_path / f, lcrec.ids)
        assert np.array_equal(got.codes, want), f
    from semrec.semantic_ids import CodeTable

    CodeTable(want, [4, 5, 3], lcrec.ids).save(tmp_path / "codes.safetensors")
    assert np.array_equal(read_code_table(tmp_path / "codes.safetensors", lcrec.ids).codes, want)
    CodeTable(want, [4, 5, 3], lcrec.ids[::-1]).save(tmp_path / "other.safetensors")
    with pytest.raises(DataError, match=r"row 0 is item .* but the dataset's item_idx 0 is"):
        read_code_table(tmp_path / "other.safetensors", lcrec.ids)
    # index.json keyed by item_idx instead of item id
    (tmp_path / "idx.json").write_text(json.dumps({str(i): [int(c) for c in row] for i, row in enumerate(want)}))
    assert np.array_equal(read_code_table(tmp_path / "idx.json", lcrec.ids, keys="index").codes, want)


def test_import_resolves_collisions_like_fit(lcrec, tmp_path):
    from semrec.models.tiger_layers import load_codes
    from semrec.semantic_ids import CodeTable, append_level

    raw = _by_idx(lcrec)
    a, b = lcrec.ids.index("3"), lcrec.ids.index("7")
    r = run("ids", "import", lcrec.index, "--dataset", lcrec.root / "ds", "--out", tmp_path / "none")
    assert r.returncode == 0 and "cannot train on this table" in r.stderr and "--collisions append" in r.stderr
    assert json.loads((tmp_path / "none" / "import.json").read_text())["collision_rate_before"] == pytest.approx(1 / N)

    r = run("ids", "import", lcrec.index, "--dataset", lcrec.root / "ds", "--out", tmp_path / "app",
            "--collisions", "append")
    assert r.returncode == 0, r.stderr
    final = CodeTable.load(tmp_path / "app" / "codes.safetensors")
    assert np.array_equal(final.codes, append_level(raw)) and final.is_unique()
    assert final.codebook_sizes == [4, 5, 3, 2] and final.codes[a, 3] == 0 and final.codes[b, 3] == 1
    got, sizes = load_codes(tmp_path / "app", len(lcrec.ids))  # what codes_path= reads
    assert np.array_equal(got, final.codes) and sizes == [4, 5, 3, 2]

    r = run("ids", "import", lcrec.index, "--dataset", lcrec.root / "ds", "--out", tmp_path / "re",
            "--collisions", "reassign")
    assert r.returncode == 0, r.stderr
    final = CodeTable.load(tmp_path / "re" / "codes.safetensors")
    moved = np.flatnonzero((final.codes != raw).any(axis=1))
    assert final.is_unique() and final.codes.shape == raw.shape and moved.tolist() == [max(a, b)]
    assert np.array_equal(final.codes[moved, :2], raw[moved, :2])  # same prefix, a free last-level code
    assert final.codes[moved[0], 2] == 1  # without vectors: the lowest free code under prefix (3, 0)


def test_reassign_uses_vectors_for_the_nearest_free_code():
    from semrec.semantic_ids import CodeTable
    from semrec.semantic_ids.imported import resolve_imported

    # prefix 0 holds items 0 (code 0) and 1 (code 0): item 1 must move to code 1 or 2 of the last level.
    codes = np.array([[0, 0], [0, 0], [1, 1], [1, 2]])
    vec = np.array([[0.0, 0.0], [0.0, 5.0], [0.0, 1.0], [0.0, 5.0]])
    # residuals: prefix-1 mean is (0, 3): item 2 -> (0, -2) holds code 1, item 3 -> (0, 2) holds code 2;
    # prefix-0 mean (0, 2.5): item 1's residual (0, 2.5) is nearest codeword 2
    got = resolve_imported(CodeTable(codes, [2, 3]), "reassign", vec).codes
    assert got.tolist() == [[0, 0], [0, 2], [1, 1], [1, 2]]
    got = resolve_imported(CodeTable(codes, [2, 3]), "reassign").codes
    assert got.tolist() == [[0, 0], [0, 1], [1, 1], [1, 2]]
    with pytest.raises(Exception, match="more than 1 items"):
        resolve_imported(CodeTable(codes, [2, 1]), "reassign")


def test_report_reads_an_imported_folder(lcrec, tmp_path):
    r = run("ids", "import", lcrec.index, "--dataset", lcrec.root / "ds", "--out", tmp_path / "imp",
            "--collisions", "append")
    assert r.returncode == 0, r.stderr
    with pytest.raises(DataError, match=r"imported code table has no tokenizer.*ids import"):
        run("ids", "encode", tmp_path / "imp", tmp_path / "v.npy", "--out", tmp_path / "new.parquet")
    r = run("ids", "report", tmp_path / "imp", "--dataset", lcrec.root / "ds")
    assert r.returncode == 0, r.stderr
    assert "imported (index.json) codes" in r.stdout and "uniformity per level" in r.stdout
    diag = json.loads((tmp_path / "imp" / "diagnostics.json").read_text())
    assert diag["collision_rate_before"] == pytest.approx(1 / N) and diag["collision_rate_final"] == 0
    assert diag["quality"]["uniformity"][0] == pytest.approx(1.0)  # 10 items on each of the 4 level-1 codes
    assert diag["quality"]["transition_pairs"] > 0 and (tmp_path / "imp" / "code_usage.png").exists()


def _bad(tmp_path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


def test_bad_tables_name_file_item_and_fix(lcrec, tmp_path):
    from semrec.semantic_ids.importing import check_collision_free, read_code_table

    ids = lcrec.ids
    index = {str(i): [f"<{LETTERS[l]}_{c}>" for l, c in enumerate(row)] for i, row in enumerate(_codes().tolist())}
    bad = dict(index)
    bad["5"] = ["<a_1>", "<c_2>", "<c_0>"]
    path = _bad(tmp_path, "letter.json", json.dumps(bad, indent=1))
    line = json.dumps(bad, indent=1).splitlines().index(' "5": [') + 1
    with pytest.raises(DataError, match=rf"letter.json, line {line}, field '5': item '5': token '<c_2>' at position 1 "
                                        r"is not <b_N>"):
        read_code_table(path, ids)
    bad = dict(index)
    bad["9"] = ["<a_1>", "<b_2>"]
    with pytest.raises(DataError, match=r"item '9' has 2 tokens, most items have 3.*one token per level"):
        read_code_table(_bad(tmp_path, "short.json", json.dumps(bad)), ids)
    with pytest.raises(DataError, match=r"line 2: invalid JSON"):
        read_code_table(_bad(tmp_path, "syntax.json", '{"0": ["<a_1>"],\n "1": [<a_2>]}'), ids)
    missing = {k: v for k, v in index.items() if k != "12"}
    with pytest.raises(DataError, match=r"1 of the dataset's 40 items have no code, e.g. '12'"):
        read_code_table(_bad(tmp_path, "missing.json", json.dumps(missing)), ids)
    with pytest.raises(DataError, match=r"1 items are not in the dataset, e.g. 'B00X'"):
        read_code_table(_bad(tmp_path, "extra.json", json.dumps({**index, "B00X": ["<a_0>", "<b_0>", "<c_0>"]})), ids)
    with pytest.raises(DataError, match=r"none of the 40 items is an item id.*--keys index"):
        read_code_table(_bad(tmp_path, "asin.json", json.dumps({f"A{k}": v for k, v in index.items()})), ids)
    np.save(tmp_path / "obj.npy", np.array([[1, "x"]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"obj.npy: cannot read without pickle"):
        read_code_table(tmp_path / "obj.npy", ids)
    np.save(tmp_path / "float.npy", np.full((N, 3), 0.5))
    with pytest.raises(DataError, match=r"float.npy: codes must be integers; row 0 holds \[0.5, 0.5, 0.5\]"):
        read_code_table(tmp_path / "float.npy", ids)
    np.save(tmp_path / "rows.npy", np.zeros((N - 1, 3), np.int64))
    with pytest.raises(DataError, match=r"39 rows but the dataset has 40 items"):
        read_code_table(tmp_path / "rows.npy", ids)
    neg = _by_idx(lcrec).copy()
    neg[4, 1] = -1
    pl.DataFrame({"item_id": ids, "codes": neg.tolist()}).write_parquet(tmp_path / "neg.parquet")
    with pytest.raises(DataError, match=rf"1 rows hold negative codes, e.g. row 4 \(item '{ids[4]}'\)"):
        read_code_table(tmp_path / "neg.parquet", ids)
    pl.DataFrame({"item_id": ids[:2] + ids[:1], "codes": [[0, 0], [0, 1], [1, 1]]}).write_parquet(
        tmp_path / "dup.parquet")
    with pytest.raises(DataError, match=rf"item '{ids[0]}' appears more than once"):
        read_code_table(tmp_path / "dup.parquet", ids)
    with pytest.raises(DataError, match=r"level 2 holds code 2, outside its codebook size 2"):
        read_code_table(lcrec.index, ids, codebook_sizes=[4, 5, 2])
    with pytest.raises(DataError, match=r"2 items share a code with another item \(2.5% collisions\), e.g. '3' and '7' "
                                        r"both have \[3, 0, 0\].*--collisions append"):
        t = read_code_table(lcrec.index, ids)
        check_collision_free(t.codes, lcrec.index, t.item_ids)
    with pytest.raises(DataError, match="is not <b_N>"):
        run("ids", "import", tmp_path / "letter.json", "--dataset", lcrec.root / "ds", "--out", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_colliding_codes_path_fails_at_model_construction(lcrec, tmp_path):
    from semrec.models.tiger_hier import TigerHier

    r = run("ids", "import", lcrec.index, "--dataset", lcrec.root / "ds", "--out", tmp_path / "none")
    assert r.returncode == 0
    with pytest.raises(DataError, match=r"share a code.*--collisions append"):
        TigerHier(N, codes_path=str(tmp_path / "none"))
