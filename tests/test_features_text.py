"""Text vectors (the bundled offline MiniLM, content-hash cache) and CLIP image vectors (tiny random model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semrec.errors import ConfigError
from semrec.features import ImageEncoder, TextEncoder, VectorCache, content_keys, text_vectors


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_cache_get_put_roundtrip(tmp_path):
    cache = VectorCache(tmp_path, "m")
    keys = content_keys("m", ["a", "b", "c"])
    assert keys.shape == (3, 16) and len({k.tobytes() for k in keys}) == 3
    assert not content_keys("other", ["a"])[0].tobytes() == keys[0].tobytes()  # model is part of the key
    cache.put(keys[:2], np.array([[1, 2], [3, 4]], np.float32))
    hit, vec = VectorCache(tmp_path, "m").get(keys[[2, 1, 0]])
    assert hit.tolist() == [False, True, True] and vec.tolist() == [[3, 4], [1, 2]]


def test_text_encoder_default_model_and_cache(tmp_path, synthetic):
    enc = TextEncoder(cache_dir=str(tmp_path / "cache"), progress=False, batch_size=16)
    texts = ["title: red nail polish; brand: OPI", "title: nail lacquer, crimson", "title: 2-person camping tent",
             "title: red nail polish; brand: OPI"]
    v = enc.encode(texts)
    assert v.shape == (4, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert enc.stats == {"total": 4, "unique": 3, "cached": 0, "encoded": 3}
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # polish ~ lacquer, not tent
    again = TextEncoder(cache_dir=str(tmp_path / "cache"), progress=False).encode(texts + ["title: yoga mat"])
    assert np.array_equal(again[:4], v)
    # only the new sentence was encoded
    enc2 = TextEncoder(cache_dir=str(tmp_path / "cache"), progress=False)
    enc2.encode(texts + ["title: yoga mat", "title: tent stakes"])
    assert enc2.stats["cached"] == 4 and enc2.stats["encoded"] == 1
    small = synthetic.items.head(5)
    ds = type(synthetic)(items=small, users=synthetic.users, interactions=synthetic.interactions.head(0),
                         text_fields=synthetic.text_fields)
    assert text_vectors(ds, cache_dir=None, progress=False).shape == (5, 384)
    with pytest.raises(ConfigError, match="does not exist"):
        TextEncoder(model=str(tmp_path / "nope"))


def test_image_encoder_tiny_clip(tmp_path):
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8, projection_dim=16)
    CLIPVisionModelWithProjection(cfg).save_pretrained(tmp_path / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        tmp_path / "clip")
    paths = []
    for i, colour in enumerate(["red", "blue", "red"]):
        Image.new("RGB", (40, 48), colour).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    enc = ImageEncoder(model=str(tmp_path / "clip"), batch_size=2, progress=False)
    v = enc.encode([paths[0], None, paths[1], paths[2]])
    assert v.shape == (4, 16)
    assert np.allclose(v[1], 0) and np.allclose(np.linalg.norm(v[[0, 2, 3]], axis=1), 1, atol=1e-5)
    assert np.allclose(v[0], v[3], atol=1e-5) and not np.allclose(v[0], v[2])
