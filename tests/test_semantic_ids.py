"""RQ-KMeans / RQ-VAE tokenizers: determinism, collision-free tables, encode = fitted code, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semrec.errors import ConfigError
from semrec.semantic_ids import RQVAE, CodeTable, RQKMeans, Tokenizer, capacitated_assign, kmeans


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blobs(n=1200, d=16, centres=24, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)) * 3
    return (c[rng.integers(0, centres, n)] + rng.standard_normal((n, d))).astype(np.float32)


def test_capacitated_assign_hand_computed():
    d = np.array([[0, 1, 2], [0, 1, 2], [0, 5, 1], [3, 0, 9]], float)
    # rows 0,1,2 all want column 0 (capacity 2): rows 0 and 1 win (tie -> lower row), row 2 takes column 2
    assert capacitated_assign(d, 2).tolist() == [0, 0, 2, 1]
    with pytest.raises(ConfigError, match="no capacity"):
        capacitated_assign(d, 1)


def test_kmeans_recovers_separated_clusters():
    x = torch.tensor([[0., 0], [0, 1], [10, 10], [10, 11], [-10, 5], [-10, 6]])
    c, a = kmeans(x, 3, seed=0)
    assert len(set(a.tolist())) == 3
    assert a[0] == a[1] and a[2] == a[3] and a[4] == a[5]
    assert torch.allclose(c[a[2]], torch.tensor([10., 10.5]))


def test_rq_kmeans_deterministic_collision_free_and_encode_roundtrip(tmp_path):
    x = blobs()
    a = RQKMeans(n_levels=2, codebook_size=16, seed=3).fit(x)
    b = RQKMeans(n_levels=2, codebook_size=16, seed=3).fit(x)
    assert np.array_equal(a.codes, b.codes)
    assert a.codes.shape == (1200, 3)  # 2 levels + TIGER disambiguation level
    assert a.table().is_unique()
    # fitted items encode to exactly their table code, in any order
    perm = np.random.default_rng(0).permutation(len(x))
    assert np.array_equal(a.encode(x[perm]), a.codes[perm])
    # without collisions, the raw codes are each item's nearest residual codewords
    assert np.array_equal(a.quantize(x)[0], a.raw_codes)
    # new items: unique against the table and among themselves, even when identical to each other
    new = blobs(50, seed=9)
    enc = a.encode(np.r_[new, new[:5]])
    assert len(np.unique(np.r_[a.codes, enc], axis=0)) == len(a.codes) + 55
    a.save(tmp_path / "tok")
    c = Tokenizer.load(tmp_path / "tok")
    assert isinstance(c, RQKMeans)
    assert np.array_equal(c.encode(x), a.codes) and np.array_equal(c.encode(new), a.encode(new))
    assert np.array_equal(CodeTable.load(tmp_path / "tok" / "codes.safetensors").codes, a.codes)


def test_encode_with_add_grows_the_table():
    x = blobs(600)
    tok = RQKMeans(n_levels=2, codebook_size=8).fit(x, item_ids=[f"i{i}" for i in range(600)])
    new = blobs(20, seed=5)
    first = tok.encode(new, add=True, item_ids=[f"n{i}" for i in range(20)])
    assert tok.codes.shape[0] == 620 and tok.item_ids[-1] == "n19"
    assert np.array_equal(tok.encode(new), first)  # now known: same codes again
    assert tok.table().is_unique()


def test_balanced_caps_code_sizes_and_reassign_keeps_length():
    x = blobs(1000)
    # a balanced level 1 caps prefixes at ceil(1000 / 64) = 16 items < 64 codes, so reassign always succeeds
    tok = RQKMeans(n_levels=2, codebook_size=64, balanced=True, collisions="reassign").fit(x)
    assert np.bincount(tok.raw_codes[:, 0]).max() == 16
    assert tok.codes.shape == (1000, 2) and tok.table().is_unique()
    assert np.array_equal(tok.encode(x), tok.codes)
    enc = tok.encode(blobs(30, seed=4))
    assert enc.shape == (30, 2) and len(np.unique(np.r_[tok.codes, enc], axis=0)) == 1030


def test_reassign_refuses_overfull_prefix():
    x = blobs(600)
    with pytest.raises(ConfigError, match="append"):
        RQKMeans(n_levels=1, codebook_size=4, collisions="reassign").fit(x)


def test_rq_vae_trains_deterministically_and_restarts_dead_codes(tmp_path):
    x = blobs(512, d=16)
    cfg = dict(n_levels=2, codebook_size=8, latent_dim=4, hidden=[16], epochs=3, batch_size=128, progress=False)
    a = RQVAE(**cfg, seed=1).fit(x)
    b = RQVAE(**cfg, seed=1).fit(x)
    assert np.array_equal(a.codes, b.codes)
    assert a.table().is_unique()
    assert np.array_equal(a.encode(x), a.codes)
    # dead codes: a codeword nobody uses moves onto a residual of its level
    book = a.module.codebooks.data
    book[0, 3] = 1e3
    usage = torch.ones(2, 8)
    usage[0, 3] = 0
    residuals = [torch.zeros(5, 4), torch.zeros(5, 4)]
    assert a.restart_dead_codes(usage, residuals) == [1, 0]
    assert book[0, 3].abs().max() < 0.1
    a.save(tmp_path / "vae")
    c = Tokenizer.load(tmp_path / "vae")
    assert np.array_equal(c.encode(x), a.codes)
    assert np.array_equal(c.quantize(blobs(10, d=16, seed=2))[0], a.quantize(blobs(10, d=16, seed=2))[0])


def test_rq_vae_restarts_collapsed_codebook_during_training():
    x = blobs(512, d=16)
    cfg = dict(n_levels=1, codebook_size=32, latent_dim=4, hidden=[16], epochs=4, batch_size=128,
               kmeans_init=False, progress=False, seed=0)
    # random init: about half the codes are never chosen; without restarts they stay dead
    plain = RQVAE(**cfg, restart_dead=False).fit(x)
    fixed = RQVAE(**cfg).fit(x)
    assert plain.history[-1]["used_level1"] < 24
    assert fixed.fit_stats["dead_code_restarts"][0] > 0
    assert fixed.history[-1]["used_level1"] >= 30
    assert len(np.unique(fixed.raw_codes[:, 0])) > len(np.unique(plain.raw_codes[:, 0]))


def test_rq_vae_cf_alignment_and_uniformity_terms_run():
    x = blobs(256, d=16)
    cf = np.random.default_rng(0).standard_normal((256, 6)).astype(np.float32)
    tok = RQVAE(n_levels=2, codebook_size=8, latent_dim=4, hidden=[16], epochs=2, batch_size=64, cf_weight=0.5,
                uniformity_weight=0.1, progress=False).fit(x, cf)
    assert tok.history[-1]["cf"] > 0 and tok.history[-1]["unif"] < 0
    assert tok.module.cf_proj.in_features == 6
    assert tok.encode(x[:3]).shape == (3, 3)  # new items need only content vectors


def test_faiss_backend_matches_contract():
    x = blobs(2000)
    a = RQKMeans(n_levels=2, codebook_size=16, backend="faiss", seed=0).fit(x)
    b = RQKMeans(n_levels=2, codebook_size=16, backend="faiss", seed=0).fit(x)
    assert np.array_equal(a.codes, b.codes) and a.table().is_unique()
    assert np.array_equal(a.encode(x), a.codes)
    # every level's assignment is the nearest codeword of the residual, as with the torch backend
    assert np.array_equal(a.quantize(x)[0], a.raw_codes)
    with pytest.raises(ConfigError, match="backend"):
        RQKMeans(backend="faiss", balanced=True)
