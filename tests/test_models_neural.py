"""SASRec, BERT4Rec, GRU4Rec and their shared layers: losses against hand computations, padding and masking,
determinism, save/load, and that SASRec learns the synthetic catalogue's sequential signal."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semrec.data import Sequences, leave_one_out
from semrec.errors import ConfigError, DataError
from semrec.models import Recommender, get_model_class
from semrec.models.layers import (Dropout, attend, attention_mask, next_item_loss, next_item_pairs, padded_tokens,
                                  sample_negatives)

FAST = dict(epochs=1, batch_size=256, progress=False)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these models are tiny, and on a busy 2-core machine a second thread only
    adds contention (and float-reduction order differences)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def small_split(synthetic):
    """Leave-one-out on the synthetic catalogue, cut to 600 users so each fit takes about a second."""
    split = leave_one_out(synthetic)
    return split.train.select(np.arange(600)), split.valid.subset(np.arange(200)), split.n_items


# ---------------------------------------------------------------------------------------------- layers
def test_next_item_pairs_left_and_right_padding():
    seqs = Sequences.from_lists([[4, 5, 6], [7], [1, 2]])
    inputs, targets = next_item_pairs(seqs, max_len=50)
    # tokens are item + 1; width = longest row (3) -> 2 input positions
    assert inputs.tolist() == [[5, 6], [0, 0], [0, 2]]
    assert targets.tolist() == [[6, 7], [0, 0], [0, 3]]  # a length-1 row has nothing to predict
    inputs, targets = next_item_pairs(seqs, max_len=50, left=False)
    assert inputs.tolist() == [[5, 6], [8, 0], [2, 3]]
    assert targets.tolist() == [[6, 7], [0, 0], [3, 0]]
    inputs, targets = next_item_pairs(seqs, max_len=1)  # only the last transition is kept
    assert inputs.tolist() == [[6], [0], [2]] and targets.tolist() == [[7], [0], [3]]


def test_padded_tokens_keeps_last_max_len_items():
    seqs = Sequences.from_lists([[1, 2, 3, 4], [9]])
    assert padded_tokens(seqs, max_len=3).tolist() == [[3, 4, 5], [0, 0, 10]]


def test_attention_mask_causal_padding_and_self():
    tokens = torch.tensor([[0, 3, 4]])
    m = attention_mask(tokens, causal=True)[0].int().tolist()
    assert m == [[1, 0, 0],  # a padded query only sees itself (keeps softmax finite)
                 [0, 1, 0],
                 [0, 1, 1]]
    b = attention_mask(tokens, causal=False)[0].int().tolist()
    assert b == [[1, 1, 1], [0, 1, 1], [0, 1, 1]]


def test_dropout_keeps_the_right_share_scales_kept_values_and_masks_gradients():
    """semrec's CPU Dropout (a torch.rand mask) has nn.Dropout's distribution: keep with probability 1 - p, kept
    values scaled by 1 / (1 - p), gradient zero where dropped; identity when scoring and at p = 0."""
    torch.manual_seed(0)
    x = torch.rand(400, 500) + 1.0  # no zeros: a zero output means dropped
    x.requires_grad_(True)
    drop = Dropout(0.3).train()
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005  # 200,000 draws: 5 standard deviations is ~0.005
    assert torch.allclose(y[kept], x[kept] / 0.7)
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() / 0.7)
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)


def test_attend_is_scaled_dot_product_attention_with_dropout_on_the_weights():
    """The CPU training path of SelfAttention: without dropout it equals scaled_dot_product_attention (values
    and gradients); with dropout, each output is a masked, 1 / (1 - p)-scaled mix of the same weights."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 5, 4, requires_grad=True) for _ in range(3))
    mask = attention_mask(torch.tensor([[0, 0, 1, 2, 3], [1, 2, 3, 4, 5], [0, 0, 0, 0, 1]]), causal=True)[:, None]
    ours = attend(q, k, v, mask, Dropout(0.0))
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(ours, ref, atol=1e-6)
    grads = torch.autograd.grad(ours.sum(), (q, k, v))
    ref_grads = torch.autograd.grad(ref.sum(), (q, k, v))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads, ref_grads))
    ones = torch.ones(1, 1, 6, 1)  # v = 1: each output is the sum of the kept, rescaled weights of its row
    dropped = attend(torch.randn(1, 1, 6, 4), torch.randn(1, 1, 6, 4), ones, torch.ones(1, 1, 6, 6, dtype=torch.bool),
                     Dropout(0.5).train())
    assert set(torch.round(dropped.flatten() * 1e4).tolist()) != {1e4}  # some weights were dropped
    assert float(dropped.max()) <= 2.0 + 1e-6  # never more than all weights (sum 1) kept, scaled by 2


def test_sample_negatives_avoids_history_tokens():
    rng = np.random.default_rng(0)
    avoid = np.array([[1, 2, 3], [4, 5, 0]])
    neg = sample_negatives(rng, (2, 50), n_items=6, avoid=avoid)
    assert neg.min() >= 1 and neg.max() <= 6
    assert not np.isin(neg[0], [1, 2, 3]).any() and not np.isin(neg[1], [4, 5]).any()


def _toy_loss_inputs():
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # B=1, L=2, d=2
    table = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])  # pad + 3 items
    targets = torch.tensor([[0, 2]])  # first position is padding
    return hidden, table, targets


def test_ce_loss_matches_hand_computation():
    hidden, table, targets = _toy_loss_inputs()
    # only position 2 counts: h=(0,1), logits over items 1..3 = (0, 2, 1), target item token 2 -> index 1
    expected = -(2 - math.log(math.exp(0) + math.exp(2) + math.exp(1)))
    assert next_item_loss(hidden, targets, table, "ce").item() == pytest.approx(expected, rel=1e-6)


def test_bce_loss_matches_hand_computation():
    hidden, table, targets = _toy_loss_inputs()
    negatives = torch.tensor([[0, 3]])
    # positive logit h.e2 = 2, negative logit h.e3 = 1
    expected = -math.log(1 / (1 + math.exp(-2))) - math.log(1 - 1 / (1 + math.exp(-1)))
    assert next_item_loss(hidden, targets, table, "bce", negatives).item() == pytest.approx(expected, rel=1e-6)


def test_sampled_softmax_masks_accidental_hits():
    hidden, table, targets = _toy_loss_inputs()
    negatives = torch.tensor([1, 2, 3])  # token 2 is the positive itself and must not count as a negative
    expected = -(2 - math.log(math.exp(2) + math.exp(0) + math.exp(1)))
    got = next_item_loss(hidden, targets, table, "sampled-softmax", negatives).item()
    assert got == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ConfigError):
        next_item_loss(hidden, targets, table, "bce")  # needs negatives


def test_unknown_loss_is_a_config_error():
    with pytest.raises(ConfigError, match="loss"):
        get_model_class("sasrec")(10, loss="hinge")


# ---------------------------------------------------------------------------------------------- networks
def _built(name: str, n_items: int = 30, **kw):
    torch.manual_seed(0)
    model = get_model_class(name)(n_items, **kw).build("cpu")
    model.module.eval()
    return model


def test_sasrec_is_causal_and_ignores_padding():
    model = _built("sasrec", n_layers=2, n_heads=2, max_len=8)
    tokens = torch.tensor([[0, 0, 3, 4, 5], [0, 0, 3, 4, 9]])
    with torch.no_grad():
        out = model.module(tokens)
        # changing the last item does not change any earlier position's output
        assert torch.allclose(out[0, :4], out[1, :4], atol=1e-6)
        # extra left padding (a wider batch) does not change the last position
        wide = model.module(torch.tensor([[0, 0, 0, 0, 0, 3, 4, 5]]))
        assert torch.allclose(out[0, -1], wide[0, -1], atol=1e-5)


@pytest.mark.parametrize("name", ["sasrec", "bert4rec", "gru4rec"])
def test_score_shape_and_batch_independence(name):
    model = _built(name)
    hist = Sequences.from_lists([[1, 2, 3], [4], list(range(20))])
    with torch.no_grad():
        both = model.score(hist)
        alone = model.score(hist.select(np.array([1])))
    assert both.shape == (3, 30)
    assert torch.allclose(both[1], alone[0], atol=1e-5)  # padding to the batch's longest row changes nothing
    assert model.item_embeddings().shape[0] == 30


@pytest.mark.parametrize("name", ["sasrec", "bert4rec", "gru4rec"])
def test_unknown_item_index_is_a_data_error(name):
    model = _built(name)
    with pytest.raises(DataError, match="item index 30 is outside"):
        model.score(Sequences.from_lists([[1, 30]]))


def test_bert4rec_cloze_batches():
    model = get_model_class("bert4rec")(30, mask_prob=0.5)
    train = Sequences.from_lists([[1, 2, 3, 4, 5, 6], [7], [8, 9]])
    batch = next(model.batches(train, 8, np.random.default_rng(0)))
    inputs, labels = batch["inputs"].numpy(), batch["labels"].numpy()
    masked = labels != 0
    assert (inputs[masked] == 31).all()  # [MASK] = n_items + 1
    assert masked.any(axis=1).all()  # every row predicts something
    tokens = np.where(masked, labels, inputs)  # un-masking restores the sequences (item + 1, left-padded)
    assert sorted(map(tuple, tokens.tolist())) == sorted([(2, 3, 4, 5, 6, 7), (0, 0, 0, 0, 0, 8),
                                                          (0, 0, 0, 0, 9, 10)])


def test_sasrec_bce_batches_carry_valid_negatives():
    model = get_model_class("sasrec")(30, loss="bce")
    train = Sequences.from_lists([[1, 2, 3, 4], [5, 6], [7]])
    batches = list(model.batches(train, 8, np.random.default_rng(0)))
    assert len(batches) == 1 and batches[0]["inputs"].shape[0] == 2  # the length-1 row is skipped
    b = batches[0]
    assert b["negatives"].shape == b["targets"].shape
    seen = torch.cat([b["inputs"], b["targets"]], 1)
    for row in range(2):
        assert not np.isin(b["negatives"][row].numpy(), seen[row][seen[row] > 0].numpy()).any()


# ---------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("name, opts", [("sasrec", {"loss": "ce"}), ("sasrec", {"loss": "bce"}),
                                        ("sasrec", {"loss": "sampled-softmax", "n_negatives": 64}),
                                        ("bert4rec", {}), ("gru4rec", {})])
def test_fit_is_deterministic_and_save_load_round_trips(name, opts, small_split, tmp_path):
    train, valid, n_items = small_split
    a = get_model_class(name)(n_items, **opts, **FAST).fit(train, valid)
    b = get_model_class(name)(n_items, **opts, **FAST).fit(train, valid)
    np.testing.assert_array_equal(a.item_embeddings(), b.item_embeddings())
    assert a.history.records[0]["valid"] == b.history.records[0]["valid"]
    a.save(tmp_path / name)
    loaded = Recommender.load(tmp_path / name)
    ids, scores = a.recommend(valid.histories, k=10)
    ids2, scores2 = loaded.recommend(valid.histories, k=10)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_allclose(scores, scores2, rtol=1e-6)
    assert loaded.config == a.config


@pytest.mark.slow
def test_sasrec_clearly_beats_mostpop_on_synthetic(synthetic):
    from semrec.evaluation import evaluate
    from semrec.models import MostPop

    split = leave_one_out(synthetic)
    pop = evaluate(MostPop(split.n_items).fit(split.train), split.test).metrics["ndcg@10"]
    model = get_model_class("sasrec")(split.n_items, loss="ce", dropout=0.2, epochs=4, batch_size=128, lr=3e-3,
                                      progress=False).fit(split.train)
    ours = evaluate(model, split.test).metrics["ndcg@10"]
    assert ours > 1.5 * pop, (ours, pop)
