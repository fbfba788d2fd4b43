"""Data: readers, the normalised Dataset, filtering, splits, item sentences, the synthetic catalogue."""

from semrec.data.dataset import Dataset
from semrec.data.filtering import filter_dataset, kcore
from semrec.data.sentences import SentenceConfig, item_sentences
from semrec.data.sequences import Sequences
from semrec.data.splits import (EvalSet, Split, cold_start_split, leave_one_out, random_split, targets_are_cold,
                                temporal_split)
from semrec.data.streamed import build_streamed
from semrec.data.synthetic import SyntheticConfig, synthetic_dataset

__all__ = ["Dataset", "EvalSet", "SentenceConfig", "Sequences", "Split", "SyntheticConfig", "build_streamed",
           "cold_start_split", "filter_dataset", "item_sentences", "kcore", "leave_one_out", "random_split",
           "synthetic_dataset", "targets_are_cold", "temporal_split"]
