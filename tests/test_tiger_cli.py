"""`semrec recommend RUN_DIR --history ...` on a small TIGER run folder: ids, titles, scores; named errors."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from semrec.cli.recommend import recommend_ids
from semrec.data import Dataset, leave_one_out
from semrec.errors import DataError
from semrec.io import write_json
from semrec.models.tiger import Tiger


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    n_items = 30
    inter = pl.DataFrame({"user_id": np.repeat(np.arange(40), 6).astype(str),
                          "item_id": [f"i{x}" for x in rng.integers(0, n_items, 240)]})
    items = pl.DataFrame({"item_id": [f"i{x}" for x in range(n_items)], "title": [f"Item number {x}" for x in range(n_items)]})
    ds = Dataset.build(inter, items, name="tiny")
    root = tmp_path_factory.mktemp("run")
    ds.save(root / "data")
    codes = np.stack(np.unravel_index(rng.choice(64, n_items, replace=False), (4, 4, 4)), 1)
    model = Tiger(ds.n_items, codes=codes, encoder_layers=1, decoder_layers=1, d_model=16, n_heads=2, d_head=8,
                  d_ff=32, epochs=1, batch_size=64, beam=10)
    model.fit(leave_one_out(ds).train).save(root / "run" / "model")
    write_json(root / "run" / "config.json", {"model": "tiger", "data": str(root / "data")})
    return root / "run", ds


def test_recommend_ids_returns_catalogue_items_with_titles(run_dir):
    path, ds = run_dir
    rows = recommend_ids(path, ["i3", "i7"], k=5, exclude_history=True)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    ids = [r["item_id"] for r in rows]
    assert len(set(ids)) == 5 and not {"i3", "i7"} & set(ids)
    assert all(r["title"] == f"Item number {r['item_id'][1:]}" for r in rows)
    assert all(a["score"] >= b["score"] for a, b in zip(rows, rows[1:]))


def test_recommend_cli_json_and_unknown_id(run_dir):
    from typer.testing import CliRunner

    from semrec.cli import _register, app

    _register()
    path, _ = run_dir
    res = CliRunner().invoke(app, ["recommend", str(path), "--history", "i1,i2", "-k", "3", "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)) == 3
    with pytest.raises(DataError, match="unknown item id"):
        recommend_ids(path, ["nope"], k=3)


@pytest.mark.parametrize("name,sizes", [
    ("tiger", ["encoder_layers=1", "decoder_layers=1", "epochs=1", "beam=20"]),
    ("tiger-hier", ["n_layers=1", "head_layers=1", "train.epochs=2", "id_input=true", "beam=20"]),
    ("tiger-set", ["n_layers=1", "train.epochs=2", "item_loss=1.0", "item_negatives=4", "head_dim=8"]),
])
def test_semrec_train_generative_through_registry_then_recommend(run_dir, tmp_path, name, sizes):
    from typer.testing import CliRunner

    from semrec.cli import _register, app

    _register()
    _, ds = run_dir
    data = run_dir[0].parent / "data"
    codes = np.stack(np.unravel_index(np.random.default_rng(1).choice(64, ds.n_items, replace=False), (4, 4, 4)), 1)
    np.save(tmp_path / "codes.npy", codes)
    sets = ["codes_path=" + str(tmp_path / "codes.npy"), *sizes, "d_model=16", "n_heads=2", "d_head=8", "d_ff=32"]
    args = ["train", name, "--data", str(data), "--out", str(tmp_path / "run")]
    for s in sets:
        args += ["--set", s]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = recommend_ids(tmp_path / "run", ["i0"], k=4)
    assert len(rows) == 4 and len({r["item_id"] for r in rows}) == 4
