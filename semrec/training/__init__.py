"""Training: the loop every torch model shares (early stopping, checkpoints, resume, seeds, progress)."""

from semrec.training.config import TrainConfig, apply_overrides, auto_threads, config_from_dict, metric_k
from semrec.training.loop import TrainHistory, TrainingError, make_optimizer, seed_everything, train

__all__ = ["TrainConfig", "TrainHistory", "TrainingError", "apply_overrides", "auto_threads", "config_from_dict",
           "make_optimizer", "metric_k", "seed_everything", "train"]
