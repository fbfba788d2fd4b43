"""Item features for the multimodal graph models (FREEDOM, LIRDRec, AlphaRec): any number of named modalities.

A model's `features` option names them, `"image=runs/x/image.npy,text=runs/x/text.safetensors"`; files are read
by `semrec.features.precomputed.load_item_features` (row = item_idx, row count checked against the catalogue),
or passed in memory with `model.with_features({"text": array, ...})`. The features are saved with the weights
(buffers in model.safetensors), so a model folder scores cold items without the original files.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from semrec.data.sequences import Sequences
from semrec.data.splits import EvalSet
from semrec.errors import ConfigError
from semrec.models.graph.adjacency import combine_graphs, knn_graph
from semrec.models.graph.base import GraphModule, GraphRecommender


def parse_features(spec: str) -> dict[str, str]:
    """`"image=a.npy,text=b.npy"` -> {"image": "a.npy", "text": "b.npy"} (order kept)."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, eq, path = part.partition("=")
        if not eq or not name.strip() or not path.strip() or not name.strip().isidentifier():
            raise ConfigError(f"features entry {part!r} is not NAME=PATH (e.g. image=img.npy,text=txt.npy)")
        if name.strip() in out:
            raise ConfigError(f"features names modality {name.strip()!r} twice")
        out[name.strip()] = path.strip()
    return out


class FeatureModule(GraphModule):
    """A GraphModule with one frozen feature buffer per modality (`feat_<name>`) and the item-item kNN graph
    built from them once (FREEDOM/LIRDRec: per-modality top-k cosine graphs, weighted sum)."""

    def __init__(self, n_users: int, n_items: int, n_edges: int, dims: dict[str, int]):
        super().__init__(n_users, n_items, n_edges)
        self.modalities = list(dims)
        for name, dim in dims.items():
            self.register_buffer(f"feat_{name}", torch.zeros(n_items, dim))
        self._item_graph: torch.Tensor | None = None

    def feature(self, name: str) -> torch.Tensor:
        return getattr(self, f"feat_{name}")

    def reset_graph(self) -> None:
        super().reset_graph()
        self._item_graph = None

    def item_graph(self, knn_k: int, image_weight: float) -> torch.Tensor:
        """Weighted sum of the modalities' kNN graphs: `image` gets `image_weight`, the others share the rest
        (a single modality gets weight 1)."""
        if self._item_graph is None:
            names = self.modalities
            if len(names) == 1:
                weights = [1.0]
            elif "image" in names:
                rest = (1.0 - image_weight) / (len(names) - 1)
                weights = [image_weight if n == "image" else rest for n in names]
            else:
                weights = [1.0 / len(names)] * len(names)
            graphs = [knn_graph(self.feature(n), min(knn_k, self.n_items)) for n in names]
            self._item_graph = combine_graphs(graphs, weights)
        return self._item_graph


class MultimodalGraphRecommender(GraphRecommender):
    """GraphRecommender with item features: read at `fit` from `config.features` unless given by `with_features`."""

    def __init__(self, n_items: int, config: Any = None, **overrides: Any):
        super().__init__(n_items, config, **overrides)
        self._features: dict[str, np.ndarray] | None = None
        self._dims: dict[str, int] = {}

    def with_features(self, features: dict[str, np.ndarray]) -> MultimodalGraphRecommender:
        """Use these (n_items, dim) arrays (row = item_idx) instead of the files named in `config.features`."""
        for name, x in features.items():
            if not str(name).isidentifier():
                raise ConfigError(f"modality name {name!r} must be an identifier (e.g. image, text)")
            if x.ndim != 2 or len(x) != self.n_items:
                raise ConfigError(f"{self.name}: features {name!r} have shape {x.shape}; expected ({self.n_items}, dim)")
        self._features = {k: np.asarray(v, dtype=np.float32) for k, v in features.items()}
        self._dims = {k: int(v.shape[1]) for k, v in self._features.items()}
        return self

    def fit(self, train: Sequences, valid: EvalSet | None = None) -> MultimodalGraphRecommender:
        if self._features is None:
            from semrec.features.precomputed import load_item_features

            spec = parse_features(self.config.features or "")
            if not spec:
                raise ConfigError(f"{self.name} needs item features: set features=image=PATH,text=PATH "
                                  "(or call with_features({...}) in Python)")
            self.with_features({k: load_item_features(p, self.n_items) for k, p in spec.items()})
        return super().fit(train, valid)

    def build(self, device: str | torch.device = "cpu") -> MultimodalGraphRecommender:
        super().build(device)
        if self._features is not None:
            for name, x in self._features.items():
                self.module.feature(name).copy_(torch.from_numpy(x))
            self.module.reset_graph()
        return self

    def extra_state(self) -> dict[str, Any]:
        return super().extra_state() | {"modalities": dict(self._dims)}

    @classmethod
    def from_extra(cls, n_items: int, config: Any, extra: dict[str, Any], device: str = "cpu"
                   ) -> MultimodalGraphRecommender:
        model = cls(n_items, config)
        model._dims = {k: int(v) for k, v in extra["modalities"].items()}
        model.n_users = int(extra["n_users"])
        model._edges = np.zeros((2, int(extra["n_edges"])), dtype=np.int64)
        model.build(device)
        model._edges = None
        return model


def mlp(d_in: int, d_out: int, hidden: int) -> nn.Module:
    """Two-layer modality encoder: Linear -> LeakyReLU -> Linear (no bias at the output, as in LIRDRec)."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.LeakyReLU(), nn.Linear(hidden, d_out, bias=False))
