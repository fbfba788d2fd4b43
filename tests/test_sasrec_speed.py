"""SASRec's time-to-quality options: length-pooled batches (less padding, same rows), a feed-forward width
option, and that the defaults draw exactly what they drew before the options existed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semrec.data import Sequences, leave_one_out
from semrec.errors import ConfigError
from semrec.models import Recommender, get_model_class
from semrec.models.layers import Block, epoch_rows, prefix_rows, softmax_ce


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_epoch_rows_default_is_the_plain_permutation():
    rows = epoch_rows(10, 4, np.random.default_rng(3), lengths=np.arange(10), pool=0)
    order = np.random.default_rng(3).permutation(10)
    assert [r.tolist() for r in rows] == [order[:4].tolist(), order[4:8].tolist(), order[8:].tolist()]


def test_length_pools_cover_every_row_once_and_cut_padding():
    rng = np.random.default_rng(0)
    lengths = rng.geometric(0.12, size=5000).clip(2, 51)  # long-tailed like Beauty's sequences
    plain = epoch_rows(5000, 256, np.random.default_rng(1))
    pooled = epoch_rows(5000, 256, np.random.default_rng(1), lengths=lengths, pool=8)
    assert sorted(np.concatenate(pooled).tolist()) == list(range(5000))
    assert sorted(len(b) for b in pooled) == sorted(len(b) for b in plain)
    def padded(batches):  # the transformer's work per epoch
        return sum(len(b) * lengths[b].max() for b in batches)

    assert padded(pooled) < 0.5 * padded(plain)
    assert np.mean([lengths[b].max() - lengths[b].min() for b in pooled]) < 10


def test_block_inner_width_and_its_default():
    assert Block(16, 2, 0.1, activation="relu").mlp.fc.out_features == 16
    assert Block(16, 2, 0.1, activation="gelu").mlp.fc.out_features == 64
    assert Block(16, 2, 0.1, activation="relu", inner=48).mlp.fc.out_features == 48
    with pytest.raises(ConfigError, match="inner"):
        get_model_class("sasrec")(10, inner=0)


def test_sasrec_with_speed_options_trains_deterministically_and_round_trips(synthetic, tmp_path):
    split = leave_one_out(synthetic)
    train, valid = split.train.select(np.arange(600)), split.valid.subset(np.arange(200))
    opts = {"loss": "ce", "inner": 32, "length_pool": 2, "epochs": 2, "batch_size": 64, "lr": 3e-3, "progress": False}
    a = get_model_class("sasrec")(split.n_items, **opts).fit(train, valid)
    b = get_model_class("sasrec")(split.n_items, **opts).fit(train, valid)
    np.testing.assert_array_equal(a.item_embeddings(), b.item_embeddings())
    assert a.module.blocks[0].mlp.fc.out_features == 32
    assert a.history.records[-1]["loss"] < a.history.records[0]["loss"]
    a.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    np.testing.assert_array_equal(a.recommend(valid.histories, k=5)[0], loaded.recommend(valid.histories, k=5)[0])
    assert loaded.config == a.config


def test_length_pool_batches_are_narrower_than_random_ones():
    seqs = Sequences.from_lists([list(range(1, 3 + (i % 7) * 6)) for i in range(64)])
    model = get_model_class("sasrec")(60, loss="ce", max_len=50)
    pooled = get_model_class("sasrec")(60, loss="ce", max_len=50, length_pool=4)
    def width(m):
        return sum(b["inputs"].numel() for b in m.batches(seqs, 8, np.random.default_rng(0)))

    def n_targets(m):
        return sum(int((b["targets"] > 0).sum()) for b in m.batches(seqs, 8, np.random.default_rng(0)))

    assert width(pooled) < width(model)
    assert n_targets(pooled) == n_targets(model)  # the same training targets, less padding


def test_prefix_rows_expand_every_history_next_item_pair():
    seqs = Sequences.from_lists([[1, 2, 3, 4], [5], [6, 7]])
    assert prefix_rows(seqs, 3).to_lists() == [[1, 2], [1, 2, 3], [2, 3, 4], [6, 7]]


def test_prefix_training_rows_have_one_target_each():
    seqs = Sequences.from_lists([[1, 2, 3, 4], [5], [6, 7, 8]])
    model = get_model_class("sasrec")(10, loss="ce", max_len=3, train_rows="prefix")
    batches = list(model.batches(seqs, 2, np.random.default_rng(0)))
    assert model.num_batches(seqs, 2) == len(batches) == 3  # 3 + 2 prefixes
    targets = np.concatenate([b["targets"][:, -1].numpy() for b in batches])
    assert sorted(targets.tolist()) == [3, 4, 5, 8, 9]  # tokens = item + 1
    assert all(int((b["targets"][:, :-1] > 0).sum()) == 0 for b in batches)
    with pytest.raises(ConfigError, match="train_rows"):
        get_model_class("sasrec")(10, train_rows="user")


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunked_softmax_ce_equals_cross_entropy_and_its_gradients(chunk):
    torch.manual_seed(0)
    h = torch.randn(20, 8, requires_grad=True)
    table = torch.randn(31, 8, requires_grad=True)  # row 0 = padding, 30 items
    targets = torch.randint(1, 31, (20,))
    grads = []
    for c in (0, chunk):
        h.grad = table.grad = None
        loss = softmax_ce(h * 2.0, table, targets, chunk=c)
        (3.0 * loss).backward()
        grads.append((loss.detach(), h.grad.clone(), table.grad.clone()))
    ref = torch.nn.functional.cross_entropy((h * 2.0) @ table[1:].T, targets - 1)
    torch.testing.assert_close(grads[1][0], ref.detach())
    for a, b in zip(grads[0], grads[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert float(grads[1][2][0].abs().sum()) == 0.0  # the padding row gets no gradient


def test_bf16_chunked_ce_is_close_to_float32():
    torch.manual_seed(1)
    h = torch.randn(50, 16, requires_grad=True)
    table = (0.3 * torch.randn(101, 16)).requires_grad_()
    targets = torch.randint(1, 101, (50,))
    out = []
    for dtype in (None, torch.bfloat16):
        h.grad = table.grad = None
        loss = softmax_ce(h, table, targets, chunk=16, dtype=dtype)
        loss.backward()
        out.append((loss.detach(), h.grad.clone(), table.grad.clone()))
    assert out[1][0].dtype == torch.float32
    torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-2, atol=1e-2)
    for a, b in zip(out[0][1:], out[1][1:]):
        assert float((a - b).norm() / a.norm()) < 0.02
