"""Semantic IDs: tokenizers that quantise item vectors into short hierarchical codes (RQ-KMeans, RQ-VAE),
collision handling, diagnostics and plots, and the code table a generative model consumes."""

from semrec.semantic_ids.collisions import append_level, collision_rate, reassign_last, resolve
from semrec.semantic_ids.diagnostics import coherence, diagnostics, level_usage, prefix_groups
from semrec.semantic_ids.kmeans import capacitated_assign, kmeans
from semrec.semantic_ids.pq_kmeans import PQKMeans, PQKMeansConfig
from semrec.semantic_ids.plots import plot_code_usage, plot_prefix_sizes
from semrec.semantic_ids.rq_kmeans import RQKMeans, RQKMeansConfig
from semrec.semantic_ids.rq_vae import RQVAE, RQVAEConfig
from semrec.semantic_ids.table import CodeTable
from semrec.semantic_ids.tokenizer import TOKENIZERS, Tokenizer, fingerprints

__all__ = ["PQKMeans", "PQKMeansConfig", "RQKMeans", "RQKMeansConfig", "RQVAE", "RQVAEConfig", "TOKENIZERS", "CodeTable", "Tokenizer",
           "append_level", "capacitated_assign", "coherence", "collision_rate", "diagnostics", "fingerprints",
           "kmeans", "level_usage", "plot_code_usage", "plot_prefix_sizes", "prefix_groups", "reassign_last",
           "resolve"]
