import numpy as np
import polars as pl

from semrec.data import (Dataset, Split, cold_start_split, leave_one_out, random_split, targets_are_cold,
                         temporal_split)
from tests.conftest import shared_path


def _ds() -> Dataset:
    seqs = {"u1": ["a", "b", "c", "d"], "u2": ["c", "a"], "u3": ["b", "c", "d"]}
    rows = [(u, i, t) for u, s in seqs.items() for t, i in enumerate(s)]
    return Dataset.build(pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row"))


def test_leave_one_out_on_hand_example(tmp_path):
    sp = leave_one_out(_ds())
    assert sp.train.to_lists() == [[0, 1], [2, 0], [1]]  # u2 (length 2) is training only
    assert sp.test.users.tolist() == [0, 2]
    assert sp.test.targets.items.tolist() == [3, 3]
    assert sp.test.histories.to_lists() == [[0, 1, 2], [1, 2]]
    assert sp.valid.targets.items.tolist() == [2, 2]
    assert sp.valid.histories.to_lists() == [[0, 1], [1]]
    sp.save(tmp_path / "s")
    back = Split.load(tmp_path / "s")
    assert back.test.histories.to_lists() == sp.test.histories.to_lists() and back.kind == "leave-one-out"


def test_temporal_and_random_splits_partition_interactions(synthetic):
    ts = synthetic.interactions["timestamp"].to_numpy()
    lo, hi = np.quantile(ts, [0.8, 0.9]).astype(int)
    sp = temporal_split(synthetic, lo, hi)
    n_train = sp.train.lengths.sum()
    assert n_train == (ts < lo).sum()
    assert sp.test.targets.lengths.sum() <= (ts >= hi).sum()
    rs = random_split(synthetic, 0.1, 0.1, seed=1)
    assert 0.75 < rs.train.lengths.sum() / len(ts) < 0.85


def test_cold_start_split_removes_cold_items_from_training(synthetic):
    sp = cold_start_split(synthetic, fraction=0.1, seed=3)
    cold = set(sp.cold_items.tolist())
    assert len(cold) == 200
    assert not cold & set(sp.train.items.tolist())
    assert not cold & set(sp.test.histories.items.tolist())
    mask = targets_are_cold(sp.test, sp.cold_items, sp.n_items)
    assert mask.sum() > 0
    assert set(sp.test.subset(mask).targets.items.tolist()) <= cold


def test_beauty_leave_one_out_matches_source_lines():
    from semrec.data.readers import read_s3rec

    path = shared_path("amazon-beauty-s3rec", "Beauty.txt")
    sp = leave_one_out(read_s3rec(path))
    lines = [list(map(int, l.split()[1:])) for l in path.read_text().splitlines()]
    assert len(sp.test) == 22_363
    # item idx = S3-Rec id - 1 for this reader; test target = last item of each line
    assert sp.test.targets.items.tolist() == [s[-1] - 1 for s in lines]
    assert sp.valid.targets.items.tolist() == [s[-2] - 1 for s in lines]
    assert sp.train.lengths.sum() == 198_502 - 2 * 22_363
