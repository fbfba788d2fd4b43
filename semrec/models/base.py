"""The one interface every recommender implements, and the registry the CLI and benchmarks use.

`fit` on training sequences, `recommend` top-k for a batch of histories, `save`/`load` a model folder
(`config.json` + `model.safetensors`). Evaluation only calls `recommend`, so every model is measured
the same way, whether it scores all items or decodes codes.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from semrec.data.sequences import Sequences
from semrec.data.splits import EvalSet
from semrec.errors import ConfigError
from semrec.io import atomic_dir, read_json, write_json

REGISTRY: dict[str, type["Recommender"]] = {}


def register(cls: type["Recommender"]) -> type["Recommender"]:
    """Class decorator: make a model available by its `name` (e.g. `semrec train sasrec`)."""
    REGISTRY[cls.name] = cls
    return cls


def get_model_class(name: str) -> type["Recommender"]:
    if name not in REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


class Recommender(ABC):
    """Base class. Subclasses set `name` and `Config` (a dataclass of hyperparameters with published defaults)."""

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, n_items: int, config: Any = None, **overrides: Any):
        cfg = config if config is not None else self.Config()
        if overrides:
            unknown = set(overrides) - {f.name for f in dataclasses.fields(cfg)}
            if unknown:
                raise ConfigError(f"{self.name}: unknown option(s) {sorted(unknown)}")
            cfg = dataclasses.replace(cfg, **overrides)
        self.n_items = n_items
        self.config = cfg

    @abstractmethod
    def fit(self, train: Sequences, valid: EvalSet | None = None) -> "Recommender":
        """Learn from training sequences; `valid` drives early stopping where the model has it."""

    @abstractmethod
    def recommend(self, histories: Sequences, k: int = 10, exclude: Sequences | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and their scores for each history, best first: two (batch, k) arrays."""

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to save; override for non-torch state."""
        module = getattr(self, "module", None)
        return module.state_dict() if module is not None else {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        module = getattr(self, "module", None)
        if module is not None:
            module.load_state_dict(state)

    def extra_state(self) -> dict[str, Any]:
        """JSON-serialisable state beside the config (e.g. vocab sizes)."""
        return {}

    def save(self, path: str | Path) -> Path:
        """Write `config.json` and `model.safetensors` (no pickle) atomically."""
        from safetensors.torch import save_file

        with atomic_dir(path) as tmp:
            write_json(tmp / "config.json", {"model": self.name, "n_items": self.n_items,
                                             "config": dataclasses.asdict(self.config), "extra": self.extra_state()})
            state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / "model.safetensors"))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> "Recommender":
        """Rebuild any registered model from its folder."""
        from safetensors.torch import load_file

        path = Path(path)
        info = read_json(path / "config.json")
        model_cls = get_model_class(info["model"]) if cls is Recommender else cls
        cfg_cls = model_cls.Config
        known = {f.name for f in dataclasses.fields(cfg_cls)}
        model = model_cls.from_extra(info["n_items"], cfg_cls(**{k: v for k, v in info["config"].items() if k in known}),
                                     info.get("extra", {}), device=device)
        model.load_state_dict(load_file(str(path / "model.safetensors"), device=device))
        return model

    @classmethod
    def from_extra(cls, n_items: int, config: Any, extra: dict[str, Any], device: str = "cpu") -> "Recommender":
        """Construct an empty model ready for `load_state_dict`; override when `extra_state` is used."""
        model = cls(n_items, config)
        build = getattr(model, "build", None)
        if build is not None:
            build(device=device)
        return model
