"""Generative retrieval machinery shared by every generative model: the catalogue trie and batched beam search."""

from semrec.generation.beam_search import StepFn, beam_search, reference_beam_search
from semrec.generation.trie import CodeTrie, TrieLevel, disambiguate

__all__ = ["CodeTrie", "StepFn", "TrieLevel", "beam_search", "disambiguate", "reference_beam_search"]
