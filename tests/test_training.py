import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from semrec.data import SyntheticConfig, leave_one_out, synthetic_dataset
from semrec.errors import ConfigError
from semrec.evaluation import evaluate
from semrec.models.base import Recommender
from semrec.training import TrainConfig, apply_overrides, config_from_dict
from tests.tiny_model import TinyBigram, TinyConfig

ROOT = Path(__file__).resolve().parents[1]
SMALL = SyntheticConfig(n_users=600, n_items=300, seed=1)


@pytest.fixture(scope="module")
def split():
    return leave_one_out(synthetic_dataset(SMALL))


def _cfg(**kw) -> TinyConfig:
    base = dict(epochs=4, batch_size=256, lr=0.02, progress=False, num_threads=1)
    return TinyConfig(train=TrainConfig(**(base | kw)))


def test_same_seed_same_metrics_and_history_is_complete(split, tmp_path):
    runs = []
    for _ in range(2):
        m = TinyBigram(split.n_items, _cfg(log_path=str(tmp_path / f"log{len(runs)}.jsonl")))
        m.fit(split.train, split.valid)
        runs.append((m, evaluate(m, split.test)))
    (m1, r1), (m2, r2) = runs
    assert r1.metrics == r2.metrics
    assert np.array_equal(r1.ranks, r2.ranks)
    h = m1.history
    assert [r["epoch"] for r in h.records] == [1, 2, 3, 4]
    assert all(r["epoch_s"] > 0 and "valid" in r for r in h.records)
    assert h.records[-1]["loss"] < h.records[0]["loss"]
    assert h.best_score == max(r["valid"]["ndcg@10"] for r in h.records)
    assert h.train_s == pytest.approx(sum(r["epoch_s"] for r in h.records))
    assert h.time_to_target(h.best_score) == h.records[h.best_epoch - 1]["elapsed_s"]
    lines = [json.loads(x) for x in (tmp_path / "log0.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3, 4]
    other = TinyBigram(split.n_items, _cfg(seed=7)).fit(split.train, split.valid)
    assert evaluate(other, split.test).metrics != r1.metrics


def test_early_stopping_restores_best_epoch(split, tmp_path):
    # a huge learning rate makes validation worse after the first epoch
    cfg = _cfg(epochs=8, lr=0.5, patience=2, checkpoint_dir=str(tmp_path / "ckpt"))
    m = TinyBigram(split.n_items, cfg).fit(split.train, split.valid)
    h = m.history
    assert h.stopped_early and h.epochs < 8
    assert h.epochs == h.best_epoch + 2
    # the restored weights are the best epoch's: re-validating reproduces its score
    assert evaluate(m, split.valid).metrics["ndcg@10"] == pytest.approx(h.best_score, abs=1e-6)
    assert (tmp_path / "ckpt" / "best" / "model.safetensors").exists()
    state = json.loads((tmp_path / "ckpt" / "last" / "state.json").read_text())
    assert state["loop"]["epoch"] == h.epochs and state["loop"]["stopped_early"]


def test_no_validation_keeps_last_epoch(split):
    m = TinyBigram(split.n_items, _cfg(epochs=2)).fit(split.train)
    assert m.history.best_epoch == 0 and m.history.epochs == 2 and "valid" not in m.history.records[-1]


CHILD = """
import sys, time
from semrec.data import SyntheticConfig, leave_one_out, synthetic_dataset
from tests.test_training import SMALL, _cfg
from tests.tiny_model import TinyBigram

# Pace the batches (no effect on the numbers) so that on a fast, idle machine the parent still catches the
# child mid-training rather than after its last epoch.
unpaced = TinyBigram.batches
def paced(self, *args, **kwargs):
    for batch in unpaced(self, *args, **kwargs):
        time.sleep(0.02)
        yield batch
TinyBigram.batches = paced
split = leave_one_out(synthetic_dataset(SMALL))
cfg = _cfg(epochs=int(sys.argv[2]), checkpoint_dir=sys.argv[1], resume=True)
TinyBigram(split.n_items, cfg).fit(split.train, split.valid)
"""


def test_kill9_mid_training_then_resume_matches_uninterrupted_run(split, tmp_path):
    epochs = 6
    ckpt = tmp_path / "ckpt"
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(ckpt), str(epochs)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = ckpt / "last" / "state.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["loop"]["epoch"] >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"child ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state.read_text())["loop"]["epoch"]
    assert 2 <= killed_at < epochs

    resumed = TinyBigram(split.n_items, _cfg(epochs=epochs, checkpoint_dir=str(ckpt), resume=True))
    resumed.fit(split.train, split.valid)
    assert resumed.history.resumed_from == killed_at
    assert [r["epoch"] for r in resumed.history.records] == list(range(1, epochs + 1))
    straight = TinyBigram(split.n_items, _cfg(epochs=epochs)).fit(split.train, split.valid)
    a, b = evaluate(resumed, split.test).metrics, evaluate(straight, split.test).metrics
    for key in ("recall@10", "ndcg@10", "mrr"):
        assert a[key] == pytest.approx(b[key], rel=0.005)
    assert [r["loss"] for r in resumed.history.records] == pytest.approx(
        [r["loss"] for r in straight.history.records], rel=1e-6)


def test_save_load_round_trip_keeps_nested_train_config(split, tmp_path):
    m = TinyBigram(split.n_items, _cfg(epochs=1)).fit(split.train)
    m.save(tmp_path / "model")
    back = Recommender.load(tmp_path / "model")
    assert isinstance(back.config.train, TrainConfig) and back.config.train.epochs == 1
    ids_a, sc_a = m.recommend(split.test.histories, k=10)
    ids_b, sc_b = back.recommend(split.test.histories, k=10)
    assert np.array_equal(ids_a, ids_b) and np.allclose(sc_a, sc_b)
    assert back.item_embeddings().shape == (split.n_items, 16)


def test_overrides_and_config_errors():
    cfg = apply_overrides(TinyConfig(), ["dim=8", "epochs=3", "train.lr=0.5", "train.checkpoint_dir=null"])
    assert (cfg.dim, cfg.train.epochs, cfg.train.lr, cfg.train.checkpoint_dir) == (8, 3, 0.5, None)
    with pytest.raises(ConfigError, match="unknown option 'nope'"):
        apply_overrides(TinyConfig(), ["nope=1"])
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ConfigError, match="unknown metric"):
        TrainConfig(metric="auc")
    with pytest.raises(ConfigError, match="checkpoint_dir"):
        TrainConfig(resume=True)
    back = config_from_dict(TinyConfig, dataclasses.asdict(cfg))
    assert back == cfg
    m = TinyBigram(10, dim=4, epochs=2)
    assert m.config.dim == 4 and m.config.train.epochs == 2


def test_warmup_and_time_budget(split):
    m = TinyBigram(split.n_items, _cfg(epochs=1, warmup_steps=1000)).fit(split.train)
    rec = m.history.records[0]
    assert rec["lr"] == pytest.approx(0.02 * rec["steps"] / 1000)  # linear warmup, one lr per optimizer step
    m = TinyBigram(split.n_items, _cfg(epochs=5, max_train_seconds=1e-9)).fit(split.train, split.valid)
    h = m.history
    assert h.stop_reason == "time_budget" and h.stopped_early and h.epochs == 1 and h.records[0]["steps"] == 1
    assert "valid" in h.records[0]  # the partial epoch is still validated


def test_learning_rate_warmup_then_cosine_by_steps_or_time_budget():
    from semrec.training.loop import learning_rate

    cfg = TrainConfig(lr=1.0, warmup_steps=10, lr_schedule="cosine", epochs=10)
    assert learning_rate(cfg, 0, 100, 0.0) == pytest.approx(0.1 * 0.5 * (1 + math.cos(0.0)))
    assert learning_rate(cfg, 50, 100, 0.0) == pytest.approx(0.5)
    assert learning_rate(cfg, 100, 100, 0.0) == pytest.approx(0.0)
    timed = TrainConfig(lr=1.0, lr_schedule="cosine", max_train_seconds=60.0)
    assert learning_rate(timed, 1, 1000, 30.0) == pytest.approx(0.5)  # half the time budget spent
    assert learning_rate(TrainConfig(lr=0.5), 7, 100, 99.0) == 0.5
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")


def test_time_budget_validates_the_final_epoch_even_between_eval_every(split):
    # eval_every=5 would skip epochs 1-4; a budget that ends inside epoch 1 must still validate that epoch
    m = TinyBigram(split.n_items, _cfg(epochs=50, eval_every=5, max_train_seconds=0.05, batch_size=8))
    m.fit(split.train, split.valid)
    last = m.history.records[-1]
    assert m.history.stop_reason == "time_budget" and last["epoch"] < 5
    assert "valid" in last and m.history.best_epoch == last["epoch"]


class _SleepyBigram(TinyBigram):
    """Each step also waits 10 ms without using the CPU, like a job sharing a busy machine."""

    def loss(self, batch):
        import time

        time.sleep(0.01)
        return super().loss(batch)


def test_cpu_budget_clock_does_not_count_waiting(split):
    steps = {}
    for clock in ("wall", "cpu"):
        m = _SleepyBigram(split.n_items, _cfg(epochs=1, batch_size=8, max_train_seconds=0.1, budget_clock=clock))
        m.fit(split.train)
        rec = m.history.records[0]
        assert m.history.stop_reason == "time_budget" and rec["cpu_s"] > 0
        steps[clock] = rec["steps"]
    assert steps["wall"] <= 11 and steps["cpu"] > 2 * steps["wall"]
    assert m.history.train_cpu_s < m.history.train_s  # the waits are wall time only
    with pytest.raises(ConfigError, match="budget_clock"):
        TrainConfig(budget_clock="gpu")


def test_patience_waits_for_half_a_time_budget_under_cosine(split):
    # a rate too small to move the weights: every validation after the first is "no improvement"
    still = dict(epochs=6, lr=1e-12, patience=1, lr_schedule="cosine")
    m = TinyBigram(split.n_items, _cfg(**still)).fit(split.train, split.valid)
    assert m.history.stop_reason == "patience" and m.history.epochs == 2
    m = TinyBigram(split.n_items, _cfg(**still, max_train_seconds=1e4)).fit(split.train, split.valid)
    assert m.history.stop_reason is None and m.history.epochs == 6  # the budget's first half: no patience
