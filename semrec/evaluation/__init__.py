"""Evaluation: metric definitions, the full-ranking evaluator, per-row results, breakdowns, significance."""

from semrec.evaluation.evaluator import evaluate, target_ranks
from semrec.evaluation.metrics import metric_names, mrr_at, ndcg_at, recall_at, row_metric
from semrec.evaluation.result import EvalResult, bucket_labels
from semrec.evaluation.significance import bootstrap_mean_ci, compare, paired_tests

__all__ = ["EvalResult", "bootstrap_mean_ci", "bucket_labels", "compare", "evaluate", "metric_names", "mrr_at",
           "ndcg_at", "paired_tests", "recall_at", "row_metric", "target_ranks"]
