"""Recommenders behind one interface (fit, recommend, save/load) and the registry the CLI uses.

Simple baselines are imported here; every other model module (`semrec.models.<name>`) is imported on
first use by `get_model_class(name)`, so heavy models cost nothing until asked for.
"""

from semrec.models.base import (REGISTRY, Recommender, ScoringRecommender, TorchRecommender, UserVectors,
                                available_models, get_model_class, register)
from semrec.models.itemknn import ItemKNN
from semrec.models.mostpop import MostPop

__all__ = ["ItemKNN", "MostPop", "REGISTRY", "Recommender", "ScoringRecommender", "TorchRecommender",
           "UserVectors", "available_models", "get_model_class", "register"]
