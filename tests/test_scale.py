"""Scale: catalogue-chunked scoring gives exactly the unchunked top-k (ties and exclusions included), and
evaluation accepts the chunk size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semrec.data import leave_one_out
from semrec.errors import ConfigError
from semrec.evaluation import evaluate
from semrec.models import get_model_class


@pytest.fixture(scope="module")
def split(synthetic):
    s = leave_one_out(synthetic)
    return s.train.select(np.arange(400)), s.valid.subset(np.arange(150)), s.n_items


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bert4rec"])
def test_chunked_top_k_equals_whole_catalogue(split, name, one_torch_thread):
    train, valid, n_items = split
    model = get_model_class(name)(n_items, epochs=1, batch_size=128, progress=False).fit(train)
    table = model.module.item_emb.weight
    hist = valid.histories
    users = torch.as_tensor(model.embed_users(hist))[:, : table.shape[1]]
    comp = int((users > 0).sum(0).argmax())  # the component most users have positive
    with torch.no_grad():  # exact ties that straddle chunk borders: items 3, 40 and 41 get one vector with one
        # non-zero component, so each score is a single product, exact whatever the matmul's blocking per chunk
        table[4] = 0.0
        table[4, comp] = 100.0  # large: the tied items reach the top-k lists of the users positive there
        table[41] = table[42] = table[4]
        if name == "bert4rec":
            model.module.out_bias[[3, 40, 41]] = 0.0  # no second term: the bias column would add one
    whole_ids, whole_vals = model.recommend(hist, k=25, exclude=hist, item_chunk=n_items)
    for chunk in (1, 7, 40, 41, 300):
        ids, vals = model.recommend(hist, k=25, exclude=hist, item_chunk=chunk)
        np.testing.assert_array_equal(ids, whole_ids)
        np.testing.assert_allclose(vals, whole_vals, rtol=1e-5, atol=1e-6)
    for i, h in enumerate(hist):  # exclusions hold in every chunk
        assert not set(h.tolist()) & set(whole_ids[i].tolist())
    checked = 0
    for row in whole_ids:  # equal scores list the lower item index first (those not excluded by the history)
        at = [list(row).index(t) for t in (3, 40, 41) if t in row]
        checked += len(at) >= 2
        assert at == sorted(at)
    assert checked  # the tie is in some top-k lists, so the order was checked


def test_evaluate_with_item_chunk_matches(split, one_torch_thread):
    train, valid, n_items = split
    model = get_model_class("sasrec")(n_items, epochs=1, batch_size=128, progress=False).fit(train)
    whole = evaluate(model, valid, ks=(10, 20))
    chunked = evaluate(model, valid, ks=(10, 20), item_chunk=33)
    assert chunked.metrics == whole.metrics
    np.testing.assert_array_equal(chunked.ranks, whole.ranks)
    with pytest.raises(ConfigError, match="item_chunk"):
        model.recommend(valid.histories, k=5, item_chunk=0)


def test_item_chunk_refused_for_models_that_do_not_factor(split):
    train, valid, n_items = split
    model = get_model_class("mostpop")(n_items).fit(train)
    assert model.score_factors(valid.histories) is None
    with pytest.raises(ConfigError, match="in chunks"):
        evaluate(model, valid, ks=(10,), item_chunk=100)
