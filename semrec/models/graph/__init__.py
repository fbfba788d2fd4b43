"""Graph collaborative filtering and multimodal item representations: LightGCN, NGCF, FREEDOM, LIRDRec, AlphaRec.

Models register themselves on import (`semrec.models.get_model_class("lightgcn")` imports them lazily); the
shared graph pieces (normalised adjacency, edge pruning, item-item kNN graphs) are in `adjacency`.
"""

from semrec.models.graph.adjacency import (combine_graphs, interaction_edges, knn_graph, normalized_adjacency,
                                           propagate, prune_edges, symmetric_mm, to_csr)
from semrec.models.graph.base import GraphRecommender

__all__ = ["GraphRecommender", "combine_graphs", "interaction_edges", "knn_graph", "normalized_adjacency",
           "propagate", "prune_edges", "symmetric_mm", "to_csr"]
