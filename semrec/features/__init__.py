"""Item vectors: text (sentence-transformers), images (CLIP), precomputed files, attributes, collaborative
vectors, and fusion of several per item. Every function returns (n_items, dim) float32, row = item_idx."""

from semrec.features.attributes import attribute_matrix, attribute_vectors
from semrec.features.cache import VectorCache, content_keys
from semrec.features.collaborative import cooccurrence_vectors, model_item_vectors, run_item_vectors
from semrec.features.fusion import FusionConfig, FusionProjection, fuse, l2_normalize
from semrec.features.image import ImageEncoder, ImageEncoderConfig
from semrec.features.precomputed import load_vectors, save_vectors
from semrec.features.text import TextEncoder, TextEncoderConfig, default_text_model, text_vectors

__all__ = ["FusionConfig", "FusionProjection", "ImageEncoder", "ImageEncoderConfig", "TextEncoder",
           "TextEncoderConfig", "VectorCache", "attribute_matrix", "attribute_vectors", "content_keys",
           "cooccurrence_vectors", "default_text_model", "fuse", "l2_normalize", "load_vectors",
           "model_item_vectors", "run_item_vectors", "save_vectors", "text_vectors"]
