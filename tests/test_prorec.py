"""PRORec on semrec: stage 1 (`sasrec-align`: SASRec ce whose ID table is pulled toward the items' text) and
stage 2 (`tiger-prorec`: tiger-hier distilled from a collaborative teacher and the next item's text). Pinned:
the alignment term moves ID vectors toward their own text, the teacher is read at the right cells of the
student's windows, the distillation terms are zero-cost when switched off, and both save and load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semrec.data import Sequences
from semrec.errors import ConfigError
from semrec.models.base import Recommender, get_model_class
from semrec.models.layers import info_nce
from semrec.models.sasrec_align import TextAlignedSASRec
from semrec.models.teacher import left_aligned, teacher_states
from semrec.models.tiger_hier import TigerHier
from semrec.models.tiger_prorec import TigerProRec
from tests.generative_checks import random_codes
from tests.test_tiger_hier import TINY

N_ITEMS = 40
SASREC = {"hidden": 16, "n_layers": 1, "max_len": 8, "train.epochs": 3, "train.batch_size": 16,
          "train.progress": False}


def _data(seed: int = 0) -> tuple[Sequences, np.ndarray]:
    rng = np.random.default_rng(seed)
    train = Sequences.from_lists([rng.integers(0, N_ITEMS, rng.integers(3, 9)).tolist() for _ in range(60)])
    return train, rng.standard_normal((N_ITEMS, 12)).astype(np.float32)


def _id_text_agreement(model: TextAlignedSASRec) -> float:
    """Share of items whose ID vector is nearest (cosine, after the text projection) to their own text."""
    net = model.module
    with torch.no_grad():
        ids = torch.nn.functional.normalize(net.item_emb.weight[1:], dim=1)
        text = torch.nn.functional.normalize(net.text_proj(net.text), dim=1)
        return float(((ids @ text.T).argmax(1) == torch.arange(N_ITEMS)).float().mean())


def test_info_nce_ignores_rows_of_the_same_id():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    plain = info_nce(a, a.clone(), 0.1)
    same = info_nce(a, a.clone(), 0.1, ids=torch.tensor([5, 5, 7]))
    assert same < plain  # rows 0 and 1 are one item: no longer each other's negatives
    assert float(same) == pytest.approx(0.0, abs=1e-4)


def test_sasrec_align_pulls_ids_toward_their_text_and_roundtrips(tmp_path):
    train, text = _data()
    torch.manual_seed(0)
    plain = TextAlignedSASRec(N_ITEMS, vectors=text, align_weight=0.0, **SASREC).fit(train)
    torch.manual_seed(0)
    aligned = TextAlignedSASRec(N_ITEMS, vectors=text, align_weight=1.0, **SASREC).fit(train)
    assert get_model_class("sasrec-align") is TextAlignedSASRec
    assert aligned.config.loss == "ce" and aligned.config.dropout == 0.3
    assert _id_text_agreement(aligned) > _id_text_agreement(plain) + 0.2
    aligned.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    hist = train.select(np.arange(5))
    assert np.array_equal(loaded.recommend(hist, k=5)[0], aligned.recommend(hist, k=5)[0])
    assert np.allclose(loaded.item_embeddings(), aligned.item_embeddings())
    with pytest.raises(ConfigError, match="align_weight"):
        TextAlignedSASRec(N_ITEMS, vectors=text, align_weight=-1.0)


def test_left_aligned_windows_and_teacher_states_at_the_students_cells():
    win = torch.tensor([[3, 7, 1, -1], [5, 6, 8, 2], [4, 9, -1, -1]])
    tokens, shift = left_aligned(win)
    assert tokens.tolist() == [[0, 4, 8, 2], [6, 7, 9, 3], [0, 0, 5, 10]] and shift.tolist() == [1, 0, 2]
    train, text = _data()
    teacher = TextAlignedSASRec(N_ITEMS, vectors=text, **SASREC).fit(train)
    states = teacher_states(teacher, win)
    lengths = (win >= 0).sum(1)
    for r in range(len(win)):  # the last real cell: the teacher's user vector for the whole window
        own = teacher.embed_users(Sequences.from_lists([win[r, : lengths[r]].tolist()]))[0]
        assert np.allclose(states[r, lengths[r] - 1].numpy(), own, atol=1e-5)
    # earlier cells are the teacher's training-time reading (its state there predicts the next item): causal,
    # so replacing the items after a cell leaves that cell's state as it was
    changed = win.clone()
    changed[1, 2:] = torch.tensor([30, 31])
    again = teacher_states(teacher, changed)
    assert torch.allclose(again[1, :2], states[1, :2], atol=1e-5)
    assert not torch.allclose(again[1, 2], states[1, 2], atol=1e-3)


def test_tiger_prorec_without_distillation_is_tiger_hier_and_roundtrips(tmp_path):
    train, text = _data()
    codes = random_codes(N_ITEMS, [4, 4, 3])
    teacher = TextAlignedSASRec(N_ITEMS, vectors=text, **SASREC).fit(train)
    batch = {"items": torch.tensor([[3, 7, 1, 9, 2], [5, 6, 8, -1, -1]])}
    torch.manual_seed(0)
    hier = TigerHier(N_ITEMS, codes=codes, **TINY).build()
    torch.manual_seed(0)
    off = TigerProRec(N_ITEMS, codes=codes, teacher=teacher, vectors=text, collab_weight=0.0, semantic_weight=0.0,
                      **TINY).build()
    on = TigerProRec(N_ITEMS, codes=codes, teacher=teacher, vectors=text, collab_weight=1.0, semantic_weight=1.0,
                     **TINY).build()
    on.module.load_state_dict(off.module.state_dict(), strict=False)  # same tiger-hier weights, heads added
    with torch.no_grad():
        assert float(off.loss(batch)) == pytest.approx(float(hier.loss(batch)), abs=1e-6)
        assert float(on.loss(batch)) > float(off.loss(batch)) + 0.1  # two InfoNCE terms, each ~log(positions)
    model = TigerProRec(N_ITEMS, codes=codes, teacher=teacher, vectors=text, **TINY).fit(train)
    assert len(model.history.records) == 2
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")  # no teacher, no text: they are training inputs only
    hist = train.select(np.arange(4))
    items, scores = model.recommend(hist, k=4, beam=6)
    items2, scores2 = loaded.recommend(hist, k=4, beam=6)
    assert np.array_equal(items, items2) and np.allclose(scores, scores2)
    with pytest.raises(ConfigError, match="teacher_path"):
        TigerProRec(N_ITEMS, codes=codes, vectors=text, **TINY).build()


def test_tiger_soft_dual_distillation_reaches_codebooks_and_states_and_roundtrips(tmp_path):
    """UniGRec's collaborative distillation on tiger-soft: with a teacher, the soft loss gains both terms and
    their gradient reaches the codebooks; a trained model saves and loads without its teacher."""
    from tests.test_tiger_set import soft_model

    train, text = _data()
    teacher = TextAlignedSASRec(N_ITEMS, vectors=text, **SASREC).fit(train)
    base = soft_model(1.0, uniformity=0.0)
    torch.manual_seed(0)
    distilled = soft_model(1.0, uniformity=0.0, teacher=teacher, distill_weight=1.0)
    distilled.module.load_state_dict(base.module.state_dict(), strict=False)
    win = torch.tensor([[3, 7, 1, 9, 2], [5, 6, 8, -1, -1]])
    net = distilled.module
    with distilled.distilling(win):
        total = net(distilled.history_codes(win), win)
    assert net.teacher is None  # the teacher's per-step inputs are cleared
    without = net(distilled.history_codes(win), win)
    plain = base.module(base.history_codes(win), win)
    assert float(without.detach()) == pytest.approx(float(plain.detach()), abs=1e-5)  # same weights, no teacher
    assert float(total) > float(plain) + 0.1
    (total - without).backward()  # the two distillation terms alone
    assert float(net.delta.grad.abs().sum()) > 0  # tokenizer side: the codebooks move toward the teacher
    assert float(net.to_teacher_user.weight.grad.abs().sum()) > 0  # recommender side
    model = soft_model(1.0, teacher=teacher, distill_weight=0.5, **{"train.epochs": 2}).fit(train)
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    hist = train.select(np.arange(3))
    assert np.array_equal(model.recommend(hist, k=5)[0], loaded.recommend(hist, k=5)[0])
