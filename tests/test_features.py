"""Item vectors: precomputed files, attributes, CF vectors from a trained model or a run folder, fusion."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from semrec.errors import ConfigError, DataError
from semrec.features import (FusionProjection, attribute_matrix, attribute_vectors, cooccurrence_vectors, fuse,
                             load_vectors, model_item_vectors, run_item_vectors, save_vectors)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_npy_and_parquet_vectors_align_to_items(tmp_path):
    v = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "text_feat.npy", v)
    assert np.array_equal(load_vectors(tmp_path / "text_feat.npy", item_ids=["a", "b", "c", "d"]), v)
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object))
    with pytest.raises(DataError, match="without pickle"):
        load_vectors(tmp_path / "obj.npy")
    pl.DataFrame({"item_id": ["d", "b", "a", "c"], "vector": v[[3, 1, 0, 2]].tolist()}).write_parquet(
        tmp_path / "v.parquet")
    assert np.array_equal(load_vectors(tmp_path / "v.parquet", item_ids=["a", "b", "c", "d"]), v)
    with pytest.raises(DataError, match="1 dataset item"):
        load_vectors(tmp_path / "v.parquet", item_ids=["a", "b", "c", "d", "zz"])
    save_vectors(tmp_path / "v.safetensors", v, {"source": "test"})
    assert np.array_equal(load_vectors(tmp_path / "v.safetensors"), v)


def test_attribute_vectors_tfidf_svd():
    attrs = [[1, 2], [1, 2], [7], None, [2, 2, 1]]
    m = attribute_matrix(attrs)
    assert m.toarray().tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0], [1, 1, 0]]
    z = attribute_vectors(attrs, dim=4)
    assert z.shape == (5, 4)
    assert np.allclose(z[0], z[1]) and np.allclose(z[0], z[4]) and np.allclose(z[3], 0)
    assert np.linalg.norm(z[0]) == pytest.approx(1.0, abs=1e-5)
    assert abs(float(z[0] @ z[2])) < 1e-5  # no shared attribute -> orthogonal


def test_cooccurrence_vectors_group_items_seen_together():
    from semrec.data import Sequences

    seqs = Sequences.from_lists([[0, 1, 0, 1, 0, 1], [2, 3, 2, 3, 2, 3], [0, 1, 0, 1], [2, 3, 2, 3]])
    z = cooccurrence_vectors(seqs, n_items=5, dim=4, window=1)
    cos = (z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-9)) @ (z / np.maximum(
        np.linalg.norm(z, axis=1, keepdims=True), 1e-9)).T
    assert cos[0, 1] > 0.99 and cos[2, 3] > 0.99 and abs(cos[0, 2]) < 1e-3
    assert np.allclose(z[4], 0)  # never seen


def test_cf_vectors_from_trained_model_and_its_run_folder(tmp_path, synthetic):
    from semrec.data import leave_one_out
    from semrec.models.sasrec import SASRec
    from semrec.training.config import TrainConfig

    split = leave_one_out(synthetic)
    model = SASRec(synthetic.n_items, hidden=8, n_layers=1, max_len=10,
                   train=TrainConfig(epochs=1, batch_size=512, progress=False, patience=0))
    model.fit(split.train)
    v = model_item_vectors(model)
    assert v.shape == (synthetic.n_items, 8)
    model.save(tmp_path / "run")
    assert np.array_equal(run_item_vectors(tmp_path / "run"), v)  # zero padding row 0 detected and dropped
    with pytest.raises(DataError, match="no tensor"):
        run_item_vectors(tmp_path / "run", key="nope")


def test_fuse_weighted_normalised_concatenation():
    a = np.array([[3.0, 4.0], [1.0, 0.0]])
    b = np.array([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    f = fuse([a, b], weights=[3, 1])
    assert f.shape == (2, 5)
    assert np.allclose(f[0], [0.6 * np.sqrt(0.75), 0.8 * np.sqrt(0.75), 0, np.sqrt(0.25), 0])
    assert np.linalg.norm(f[0]) == pytest.approx(1.0)
    assert np.allclose(f[1, 2:], 0)  # missing source stays zero
    with pytest.raises(ConfigError, match="row counts"):
        fuse([a, b[:1]])


def test_learned_fusion_aligns_sources(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((256, 8)).astype(np.float32)
    a = base @ rng.standard_normal((8, 12)).astype(np.float32)
    b = base @ rng.standard_normal((8, 6)).astype(np.float32)
    fp = FusionProjection(dim=8, epochs=30, batch_size=64).fit([a, b])
    z = fp.transform([a, b])
    assert z.shape == (256, 8) and np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    za, zb = fp.project([a, b])
    assert np.allclose(fp.transform([a, np.zeros_like(b)]), za, atol=1e-6)  # a missing source is ignored
    # the two sources' projections of the same item agree far more than those of different items
    same = (za * zb).sum(1).mean()
    other = (za * np.roll(zb, 1, axis=0)).sum(1).mean()
    assert same > other + 0.3
    fp.save(tmp_path / "fusion")
    assert np.allclose(FusionProjection.load(tmp_path / "fusion").transform([a, b]), z, atol=1e-6)
