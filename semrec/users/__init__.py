"""The user side: user and item vectors out of any model with `embed_users` / `item_embeddings`, exported with
external ids (the model's own state, or pooled over the history); exact and faiss indexes over item vectors;
look-alike users and segment expansion; user semantic IDs."""

from semrec.users.index import INDEX_KINDS, IndexConfig, VectorIndex, recall_overlap
from semrec.users.lookalike import EXPAND_METHODS, expand_segment, segment_scores, similar_users
from semrec.users.pooling import POOL_SOURCES, POOLS, item_idf, pool_items, pooled_user_vectors
from semrec.users.user_ids import fit_user_ids, segments
from semrec.users.vectors import (ITEM_KIND, USER_KIND, VectorTable, export_items, export_users, file_kind,
                                  item_vectors, supports_vectors, user_vectors)

__all__ = ["EXPAND_METHODS", "INDEX_KINDS", "ITEM_KIND", "POOLS", "POOL_SOURCES", "USER_KIND", "IndexConfig",
           "VectorIndex", "VectorTable", "expand_segment", "export_items", "export_users", "file_kind", "fit_user_ids",
           "item_idf", "item_vectors", "pool_items", "pooled_user_vectors", "recall_overlap", "segment_scores",
           "segments", "similar_users", "supports_vectors", "user_vectors"]
