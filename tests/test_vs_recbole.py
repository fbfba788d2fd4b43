"""The RecBole comparison's plumbing: atomic-file conversion, target/time-to-target, split check, report."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import recbole_runner  # noqa: E402
import vs_recbole  # noqa: E402

from semrec.data import leave_one_out  # noqa: E402
from semrec.data.readers import read_s3rec  # noqa: E402

SETTINGS = {"loss_type": "CE", "hidden_size": 64, "n_layers": 2, "n_heads": 2, "MAX_ITEM_LIST_LENGTH": 50,
            "train_batch_size": 256, "learning_rate": 1e-3, "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5,
            "exclude_history": False}


def _epoch(e: int, ndcg: float, cum: float) -> dict:
    return {"epoch": e, "train_s": cum / e - 1, "eval_s": 1.0, "cum_train_s": cum - e, "cum_train_eval_s": cum,
            "end_unix": 1000.0 + cum, "valid_ndcg@10": ndcg, "valid_recall@10": 2 * ndcg, "loadavg": [1, 1, 1]}


def _log(ndcgs: list[float], step: float = 100.0) -> dict:
    return {"settings": dict(SETTINGS), "threads": 1, "prep_s": 2.0, "done": True,
            "epochs": [_epoch(i + 1, v, step * (i + 1)) for i, v in enumerate(ndcgs)]}


@pytest.fixture()
def tiny(tmp_path):
    path = tmp_path / "Tiny.txt"
    path.write_text("1 5 6 7\n2 8 5 6 9\n")
    return path


def test_atomic_inter_uses_line_position_as_time(tiny, tmp_path):
    n = recbole_runner.write_atomic_inter(tiny, tmp_path / "atomic", "tiny")
    lines = (tmp_path / "atomic" / "tiny" / "tiny.inter").read_text().splitlines()
    assert n == 7
    assert lines[0] == "user_id:token\titem_id:token\ttimestamp:float"
    assert lines[1:4] == ["1\t5\t0", "1\t6\t1", "1\t7\t2"]
    assert lines[4:] == ["2\t8\t0", "2\t5\t1", "2\t6\t2", "2\t9\t3"]


def test_target_is_best_epoch_and_its_cumulative_time():
    rb = vs_recbole.recbole_target(_log([0.01, 0.03, 0.03, 0.02]))
    assert rb["target"] == 0.03 and rb["epoch"] == 2  # the earlier of two equal bests
    assert rb["time_to_target_s"] == 200.0 and rb["train_to_target_s"] == 198.0
    bad = _log([0.01])
    bad["settings"]["n_heads"] = 1
    with pytest.raises(SystemExit, match="settings.n_heads is 1"):
        vs_recbole.recbole_target(bad)


def test_split_check_counts_differing_rows(tiny):
    ds = read_s3rec(tiny, name="tiny")
    split = leave_one_out(ds)
    users, items = ds.users["user_id"].to_numpy().astype(str), ds.item_ids().astype(str)
    rows = {"valid": {"user_id": ["1", "2"], "item_id": ["6", "6"], "history_length": [1, 2]},
            "test": {"user_id": ["1", "2"], "item_id": ["7", "9"], "history_length": [2, 3]}}
    assert vs_recbole.split_mismatches(split, users, items, rows) == {"valid": 0, "test": 0}
    rows["test"]["item_id"][1] = "5"
    assert vs_recbole.split_mismatches(split, users, items, rows) == {"valid": 0, "test": 2}


def test_cpu_seconds_from_log_or_samples(tmp_path):
    log = _log([0.01, 0.02])
    samples = tmp_path / "cpu.txt"
    tck = os.sysconf("SC_CLK_TCK")
    np.savetxt(samples, np.array([[1000.0, 0], [1400.0, 40 * tck]]))
    # epoch 2 ends at unix 1200 -> 20 CPU s by interpolation, minus 2 s of preprocessing
    assert vs_recbole.recbole_cpu_s(log, 2, samples) == pytest.approx(18.0)
    assert vs_recbole.recbole_cpu_s(log, 2, None) is None
    log["epochs"][1]["cum_cpu_s"] = 150.0
    assert vs_recbole.recbole_cpu_s(log, 2, samples) == 150.0


def test_report_speedup(tiny, tmp_path, monkeypatch, capsys):
    ds = read_s3rec(tiny, name="tiny")
    split = leave_one_out(ds)
    monkeypatch.setattr(vs_recbole, "load_beauty", lambda root: (split, ds.users["user_id"].to_numpy().astype(str),
                                                                 ds.item_ids().astype(str)))
    seen_settings = []

    def fake_train(split, settings, **kw):
        seen_settings.append(settings)
        recs = [{"epoch": e, "epoch_s": 5.0, "eval_s": 1.0, "elapsed_s": 6.0 * e,
                 "valid": {"ndcg@10": v, "recall@10": 2 * v, "ndcg@5": v / 2}} for e, v in ((1, 0.02), (2, 0.031))]
        return recs, [7.0, 14.0], [6.5, 13.0], type("M", (), {"module": None})()

    monkeypatch.setattr(vs_recbole, "train_ours", fake_train)
    log = tmp_path / "recbole.json"
    rlog = _log([0.02, 0.03])
    rlog["test"] = {"epoch": 2, "ndcg@10": 0.028, "recall@10": 0.05}
    log.write_text(json.dumps(rlog))
    assert vs_recbole.main(["--recbole-log", str(log), "--recbole-split", str(tmp_path / "none.json"),
                            "--recbole-cpu-samples", str(tmp_path / "none.txt"), "--no-record",
                            "--recipe", "shared", "--set", "lr=0.003", "--set", "epochs=2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert seen_settings[0]["lr"] == 0.003 and seen_settings[0]["epochs"] == 2 and seen_settings[0]["inner"] == 256
    ex = out["extra"]
    assert ex["target_valid_ndcg10"] == 0.03 and ex["recbole_time_to_target_s"] == 200.0
    assert ex["ours_epochs_to_target"] == 2 and ex["ours_time_to_target_s"] == 12.0
    assert ex["speedup"] == pytest.approx(16.67) and ex["speedup_train_only"] == pytest.approx(198 / 10, abs=0.01)
    assert ex["ours_cpu_to_target_s"] == 13.0 and ex["speedup_cpu"] is None  # no RecBole CPU figure given
    assert ex["recbole_test_ndcg10"] == 0.028 and ex["ours_test_ndcg10"] is None  # the fake model has no weights
    assert out["metrics"]["ndcg@10"] == 0.031 and out["settings"]["exclude_history"] is False
    assert out["settings"]["ours"]["lr"] == 0.003


def test_unknown_recipe_and_bad_override_are_refused():
    with pytest.raises(SystemExit, match="--recipe"):
        vs_recbole.ours_settings("fastest")
    with pytest.raises(SystemExit, match="key=value"):
        vs_recbole.ours_settings("fast", ["lr"])
    assert vs_recbole.ours_settings("fast", ["length_pool=0"])["length_pool"] == 0


def test_report_can_be_rebuilt_from_a_saved_run(tiny, tmp_path, monkeypatch, capsys):
    ds = read_s3rec(tiny, name="tiny")
    split = leave_one_out(ds)
    monkeypatch.setattr(vs_recbole, "load_beauty", lambda root: (split, ds.users["user_id"].to_numpy().astype(str),
                                                                 ds.item_ids().astype(str)))
    recs = [{"epoch": 1, "epoch_s": 5.0, "eval_s": 1.0, "elapsed_s": 6.0,
             "valid": {"ndcg@10": 0.04, "recall@10": 0.08}}]
    saved = tmp_path / "ours.json"
    saved.write_text(json.dumps({"records": recs, "walls": [7.0], "cpus": [6.0], "test": {"ndcg@10": 0.03},
                                 "settings": {"lr": 0.003}, "loadavg_start": [1, 1, 1], "loadavg_end": [1, 1, 1],
                                 "commit": "abc", "ffn_inner": 256, "recipe": "fast", "overrides": [], "seed": 0}))
    monkeypatch.setattr(vs_recbole, "train_ours", lambda *a, **k: pytest.fail("must not train"))
    log = tmp_path / "recbole.json"
    rlog = _log([0.02, 0.03])
    rlog["epochs"][1]["cum_cpu_s"] = 120.0
    rlog["test"] = {"epoch": 2, "ndcg@10": 0.028, "recall@10": 0.05}
    log.write_text(json.dumps(rlog))
    assert vs_recbole.main(["--recbole-log", str(log), "--recbole-split", str(tmp_path / "none.json"),
                            "--from-ours", str(saved), "--no-record"]) == 0
    ex = json.loads(capsys.readouterr().out)["extra"]
    assert ex["ours_cpu_to_target_s"] == 6.0 and ex["speedup_cpu"] == 20.0 and ex["test_ndcg10_not_worse"] is True
    assert ex["ours_ffn_inner"] == 256
