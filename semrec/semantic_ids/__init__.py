"""Semantic IDs: tokenizers that quantise item vectors into short hierarchical codes (RQ-KMeans, RQ-VAE),
collision handling, diagnostics and plots, and the code table a generative model consumes."""

from semrec.semantic_ids.collisions import append_level, collision_rate, reassign_last, resolve
from semrec.semantic_ids.diagnostics import coherence, diagnostics, level_usage, prefix_groups
from semrec.semantic_ids.imported import load_code_folder, resolve_imported
from semrec.semantic_ids.importing import check_collision_free, read_code_table
from semrec.semantic_ids.kmeans import capacitated_assign, kmeans
from semrec.semantic_ids.pq_kmeans import PQKMeans, PQKMeansConfig
from semrec.semantic_ids.plots import plot_code_usage, plot_prefix_sizes
from semrec.semantic_ids.quality import quality, transition_metrics
from semrec.semantic_ids.rq_kmeans import RQKMeans, RQKMeansConfig
from semrec.semantic_ids.rq_vae import RQVAE, RQVAEConfig
from semrec.semantic_ids.sizing import codebook_warnings, default_codebook_size
from semrec.semantic_ids.table import CodeTable
from semrec.semantic_ids.tokenizer import TOKENIZERS, Tokenizer, fingerprints

__all__ = ["PQKMeans", "PQKMeansConfig", "RQKMeans", "RQKMeansConfig", "RQVAE", "RQVAEConfig", "TOKENIZERS", "CodeTable", "Tokenizer",
           "append_level", "capacitated_assign", "check_collision_free", "codebook_warnings", "coherence",
           "collision_rate", "default_codebook_size", "diagnostics", "fingerprints", "kmeans", "level_usage",
           "load_code_folder", "plot_code_usage", "plot_prefix_sizes", "prefix_groups", "quality", "read_code_table",
           "reassign_last", "resolve", "resolve_imported", "transition_metrics"]
