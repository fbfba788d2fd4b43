"""The one interface every recommender implements, and the registry the CLI and benchmarks use.

`fit` on training sequences, `recommend` top-k for a batch of histories, `save`/`load` a model folder
(`config.json` + `model.safetensors`). Evaluation only calls `recommend`, so every model is measured
the same way, whether it scores all items or decodes codes.

Two partial implementations save work: `ScoringRecommender` (implement `score`, get batched top-k with
history masking) and `TorchRecommender` (implement `build_module`, `batches`, `loss`, `score`; `fit`
runs `semrec.training.train` with the `train` field of the model's Config).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Protocol, runtime_checkable

import numpy as np
import torch

from semrec.data.sequences import Sequences
from semrec.data.splits import EvalSet
from semrec.errors import ConfigError, DataError
from semrec.io import atomic_dir, load_safetensors, read_json, write_json
from semrec.training.config import TrainConfig, apply_overrides, config_from_dict

if TYPE_CHECKING:
    from semrec.training.loop import TrainHistory

REGISTRY: dict[str, type["Recommender"]] = {}


def register(cls: type["Recommender"]) -> type["Recommender"]:
    """Class decorator: make a model available by its `name` (e.g. `semrec train sasrec`)."""
    REGISTRY[cls.name] = cls
    return cls


def _model_modules(name: str) -> Iterator[str]:
    """Where model `name` may live: `semrec.models.<name>`, then `semrec.models.<family>.<name>` for every
    family sub-package (text/, graph/, ...), so models in sub-packages load lazily like the top-level ones."""
    mod = name.replace("-", "_")
    yield f"semrec.models.{mod}"
    folder = Path(__file__).parent
    for pkg in sorted(p.name for p in folder.iterdir() if (p / "__init__.py").exists()):
        yield f"semrec.models.{pkg}.{mod}"


def get_model_class(name: str) -> type["Recommender"]:
    """The registered class for `name`; imports its module (top level or a family sub-package) on first use."""
    for module in _model_modules(name):
        if name in REGISTRY:
            break
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
    if name not in REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    return REGISTRY[name]


def available_models() -> list[str]:
    """Registered names plus model modules in semrec.models and its family sub-packages not imported yet
    (files that use `@register`)."""
    folder = Path(__file__).parent
    files = [*folder.glob("*.py"), *folder.glob("*/*.py")]
    names = {p.stem.replace("_", "-") for p in files  # module text_seq registers text-seq
             if p.stem not in ("base", "__init__") and not p.stem.startswith("_")
             and "@register" in p.read_text(errors="ignore")}
    return sorted(names | set(REGISTRY))


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices) of the k best scores per row, best first, with a documented tie order: equal scores
    rank the lower item index first, so results never depend on the topk kernel, the device or thread count.

    One topk of k + 1 finds rows where ties cross the k-th place; only those rows are sorted in full.
    """
    n = scores.shape[1]
    k = min(int(k), n)
    vals, idx = torch.topk(scores, min(k + 1, n), dim=1)
    boundary = vals[:, k - 1] == vals[:, k] if vals.shape[1] > k else None
    vals, idx = vals[:, :k], idx[:, :k]
    by_index = torch.argsort(idx, dim=1)  # then a stable sort by value keeps index order among equal values
    vals, idx = vals.gather(1, by_index), idx.gather(1, by_index)
    by_value = torch.sort(vals, dim=1, descending=True, stable=True).indices
    vals, idx = vals.gather(1, by_value), idx.gather(1, by_value)
    if boundary is not None and bool(boundary.any()):
        rows = boundary.nonzero().squeeze(1)
        full_vals, full_idx = torch.sort(scores[rows], dim=1, descending=True, stable=True)
        vals[rows], idx[rows] = full_vals[:, :k], full_idx[:, :k]
    return vals, idx


@runtime_checkable
class UserVectors(Protocol):
    """Optional interface of models whose user state can leave the model (semrec.users builds on it).

    `embed_users(histories)` -> (n, d) float32 user vectors, `item_embeddings()` -> (n_items, d) item vectors.
    A model with `dot_product = True` promises `embed_users(h) @ item_embeddings().T` equals its `score(h)`, so
    an index over the item vectors reproduces its `recommend`; with False the vectors are the model's state but
    its ranking is something else (e.g. generative decoding), and the model's docstring says what they mean.
    """

    dot_product: bool

    def embed_users(self, histories: Sequences) -> np.ndarray: ...

    def item_embeddings(self) -> np.ndarray: ...


class Recommender(ABC):
    """Base class. Subclasses set `name` and `Config` (a dataclass of hyperparameters with published defaults)."""

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, n_items: int, config: Any = None, **overrides: Any):
        cfg = config if config is not None else self.Config()
        if overrides:  # plain names, or train options (`epochs=5`); ConfigError names unknown ones
            cfg = apply_overrides(cfg, overrides)
        self.n_items = n_items
        self.config = cfg

    @abstractmethod
    def fit(self, train: Sequences, valid: EvalSet | None = None) -> "Recommender":
        """Learn from training sequences; `valid` drives early stopping where the model has it."""

    @abstractmethod
    def recommend(self, histories: Sequences, k: int = 10, exclude: Sequences | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and their scores for each history, best first: two (batch, k) arrays.

        A model that cannot fill k slots (e.g. constrained decoding) pads ids with -1 and scores with -inf.
        """

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

        with atomic_dir(path, "model") as tmp:
            write_json(tmp / "config.json", {"model": self.name, "n_items": self.n_items,
                                             "config": dataclasses.asdict(self.config), "extra": self.extra_state()})
            state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / "model.safetensors"))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> "Recommender":
        """Rebuild any registered model from its folder; a missing, corrupt or foreign part is a DataError."""
        path = Path(path)
        fix = "pass a folder written by `semrec train` (RUN_DIR/model) or Recommender.save"
        info = read_json(path / "config.json")
        if not isinstance(info.get("model"), str) or not isinstance(info.get("n_items"), int) \
                or not isinstance(info.get("config"), dict):
            raise DataError("expected keys 'model' (name), 'n_items' (integer) and 'config' (mapping)",
                            path=path / "config.json", fix=fix)
        try:
            model_cls = get_model_class(info["model"]) if cls is Recommender else cls
        except ConfigError as e:
            raise DataError(str(e), path=path / "config.json", field="model", fix=fix) from None
        try:
            cfg = config_from_dict(model_cls.Config, info["config"], where=str(path / "config.json"))
        except (ConfigError, TypeError, ValueError) as e:
            raise DataError(f"invalid model config: {e}", path=path / "config.json", fix=fix) from None
        model = model_cls.from_extra(info["n_items"], cfg, info.get("extra", {}), device=device)
        state = load_safetensors(path / "model.safetensors", "model weights", device=device, fix=fix)
        n = info["n_items"]
        try:
            fresh_state = model.state_dict()
        except (TypeError, RuntimeError, AttributeError):  # state that only exists once loaded (code tables)
            fresh_state = {}
        for key, fresh in fresh_state.items():  # per-item tables must fit this catalogue
            got = state.get(key)
            if got is not None and fresh.ndim and fresh.shape[0] in (n, n + 1) and got.shape != fresh.shape:
                raise DataError(f"tensor {key!r} has shape {tuple(got.shape)}, but a {info['model']} of {n} items "
                                f"needs {tuple(fresh.shape)} (weights of another model or dataset?)",
                                path=path / "model.safetensors", fix=fix)
        try:
            model.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError, IndexError) as e:
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise DataError(f"the weights do not fit a {info['model']} with this config ({first})",
                            path=path / "model.safetensors", fix=fix) from None
        return model

    @classmethod
    def from_extra(cls, n_items: int, config: Any, extra: dict[str, Any], device: str = "cpu") -> "Recommender":
        """Construct an empty model ready for `load_state_dict`; override when `extra_state` is used."""
        model = cls(n_items, config)
        build = getattr(model, "build", None)
        if build is not None:
            build(device=device)
        return model


class ScoringRecommender(Recommender):
    """A model that scores every item for a history: implement `score` (or `score_factors`); top-k, masking,
    batching and catalogue chunking are here."""

    score_batch_size: int = 1024  # histories scored per forward pass in `recommend`
    max_score_elements: int = 2**25  # batch x items scores held at once (128 MB float32) by factored models

    def score(self, histories: Sequences) -> torch.Tensor:
        """A (batch, n_items) float tensor of scores, higher = better, for each history (oldest item first).

        Default: `users @ items.T` from `score_factors`; models that do not factor override this."""
        factors = self.score_factors(histories)
        if factors is None:
            raise NotImplementedError(f"{type(self).__name__} implements neither score nor score_factors")
        users, items = factors
        return users @ items.T

    def score_factors(self, histories: Sequences) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(users (batch, d), items (n_items, d)) with score = users @ items.T, for dot-product models; it
        lets `recommend` score a million-item catalogue in chunks (memory batch x chunk, not batch x n_items).
        None (the default): the model scores only through `score`."""
        return None

    def scoring(self) -> contextlib.AbstractContextManager:
        """Context in which `score` runs during `recommend` (TorchRecommender: eval mode, no autograd)."""
        return torch.inference_mode()

    uses_users: ClassVar[bool] = False  # True: `recommend` takes `users=` (models with per-user parameters)

    def score_users(self, histories: Sequences, users: np.ndarray) -> torch.Tensor:
        """`score` for rows whose user indices (rows of the training sequences) are known; models with
        per-user parameters (LightGCN, ...) override this and set `uses_users = True`."""
        return self.score(histories)

    def recommend(self, histories: Sequences, k: int = 10, exclude: Sequences | None = None,
                  users: np.ndarray | None = None, item_chunk: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores per history; items in `exclude[i]` get -inf and are never returned
        unless fewer than k items remain. `users`: the rows' user indices, for models with `uses_users`.

        item_chunk: items scored at once by models with `score_factors` (the running top-k is merged chunk
        by chunk, with exactly the same result); default: as many as keep batch x chunk <= max_score_elements.
        """
        n = len(histories)
        if users is not None and len(users) != n:
            raise ConfigError(f"users has {len(users)} rows but histories has {n}")
        if exclude is not None and len(exclude) != n:
            raise ConfigError(f"exclude has {len(exclude)} rows but histories has {n}")
        if item_chunk is not None and int(item_chunk) < 1:
            raise ConfigError(f"item_chunk must be >= 1, got {item_chunk}")
        k = min(int(k), self.n_items)
        ids = np.empty((n, k), dtype=np.int64)
        vals = np.empty((n, k), dtype=np.float32)
        with self.scoring():
            for start in range(0, n, self.score_batch_size):
                rows = np.arange(start, min(start + self.score_batch_size, n))
                hist = histories.select(rows)
                ex = exclude.select(rows) if exclude is not None else None
                factors = self.score_factors(hist) if users is None else None
                if factors is not None:
                    if factors[1].shape[0] != self.n_items:
                        raise ConfigError(f"{type(self).__name__}.score_factors returned {factors[1].shape[0]} "
                                          f"item rows; expected {self.n_items}")
                    chunk = int(item_chunk or max(k, self.max_score_elements // max(len(rows), 1)))
                    top_vals, top_ids = _chunked_top_k(*factors, k, ex, chunk)
                else:
                    if item_chunk is not None:
                        raise ConfigError(f"{type(self).__name__} scores the whole catalogue at once (no "
                                          "score_factors), so it cannot score in chunks: leave item_chunk unset")
                    scores = torch.as_tensor(self.score(hist) if users is None
                                             else self.score_users(hist, np.asarray(users)[rows]))
                    top_vals, top_ids = top_k(self._checked(scores, len(rows), ex), k)
                ids[rows] = top_ids.cpu().numpy()
                vals[rows] = top_vals.cpu().numpy()
        return ids, vals

    def _checked(self, scores: torch.Tensor, rows: int, exclude: Sequences | None) -> torch.Tensor:
        """`scores` checked to be (rows, n_items), as floats, with the excluded items set to -inf."""
        if scores.shape != (rows, self.n_items):
            raise ConfigError(f"{type(self).__name__}.score returned shape {tuple(scores.shape)}; "
                              f"expected ({rows}, {self.n_items})")
        return mask_items(scores if scores.is_floating_point() else scores.float(), exclude)


def mask_items(scores: torch.Tensor, exclude: Sequences | None, first_item: int = 0) -> torch.Tensor:
    """`scores` with -inf at each row's `exclude` items; the columns hold items first_item.. first_item + width."""
    if exclude is None or not len(exclude.items):
        return scores
    rows = np.repeat(np.arange(len(exclude)), exclude.lengths)
    cols = exclude.items - first_item
    inside = (cols >= 0) & (cols < scores.shape[1])
    r = torch.from_numpy(rows[inside]).to(scores.device)
    c = torch.from_numpy(cols[inside]).to(scores.device)
    return scores.index_put((r, c), torch.tensor(-math.inf, dtype=scores.dtype, device=scores.device))


def _chunked_top_k(users: torch.Tensor, items: torch.Tensor, k: int, exclude: Sequences | None, chunk: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """`top_k(mask(users @ items.T), k)` computed `chunk` items at a time.

    The running top-k lists lower item indices first among equal scores, and so does each chunk's, so
    taking the top k of [running, chunk] by position keeps `top_k`'s tie order: the result is identical."""
    best_vals = best_ids = None
    for first in range(0, items.shape[0], chunk):
        scores = mask_items((users @ items[first:first + chunk].T).float(), exclude, first)
        vals, ids = top_k(scores, k)
        ids = ids + first
        if best_vals is not None:
            vals, ids = torch.cat([best_vals, vals], 1), torch.cat([best_ids, ids], 1)
            vals, pos = top_k(vals, k)
            ids = ids.gather(1, pos)
        best_vals, best_ids = vals, ids
    return best_vals, best_ids


class TorchRecommender(ScoringRecommender):
    """A ScoringRecommender trained by `semrec.training.train`.

    Subclasses implement:
      - `build_module() -> nn.Module` (called by `build(device)`, which sets `self.module`),
      - `batches(train, batch_size, rng)`: one epoch of CPU tensors dicts (the loop moves them to the device),
      - `loss(batch) -> scalar tensor`, and `score(histories)`.
    Training options live in the model's Config as a `train: TrainConfig` field (read via `train_config`),
    so they are saved with the model and set with `--set train.lr=...` or `--set epochs=...`.
    """

    module: torch.nn.Module | None = None

    def __init__(self, n_items: int, config: Any = None, **overrides: Any):
        super().__init__(n_items, config, **overrides)
        self.module = None
        self.history: TrainHistory | None = None

    # ------------------------------------------------------------------ what subclasses implement
    @abstractmethod
    def build_module(self) -> torch.nn.Module:
        """A freshly initialised network (the loop seeds torch before calling `build`)."""

    @abstractmethod
    def batches(self, train: Sequences, batch_size: int, rng: np.random.Generator
                ) -> Iterator[dict[str, torch.Tensor]]:
        """One epoch of training batches; all randomness (shuffling, negatives, masks) must come from `rng`."""

    @abstractmethod
    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar training loss for one batch (already on the model's device)."""

    def shared_batch_keys(self) -> frozenset[str]:
        """Batch entries every row uses (e.g. one set of sampled negatives), which distributed training gives
        to every process whole instead of splitting by rows."""
        return frozenset()

    def num_batches(self, train: Sequences, batch_size: int) -> int | None:
        """Batches per epoch, for the progress bar; override when `batches` is not one batch per user slice."""
        return math.ceil(len(train) / batch_size)

    def item_embeddings(self) -> np.ndarray:
        """(n_items, dim) collaborative item vectors, e.g. for semantic IDs built from CF signal."""
        raise NotImplementedError(f"{type(self).__name__} does not expose item embeddings "
                                  "(implement item_embeddings() returning an (n_items, dim) array)")

    def batched_vectors(self, histories: Sequences, fn: Any, batch_size: int | None = None) -> np.ndarray:
        """`fn(batch_histories) -> (b, d)` tensor over all histories in eval mode without autograd: (n, d) float32.

        The shared body of `embed_users`, batched like `recommend` so memory stays bounded."""
        batch_size = batch_size or self.score_batch_size
        parts = []
        with self.scoring():
            for start in range(0, len(histories), batch_size):
                rows = np.arange(start, min(start + batch_size, len(histories)))
                parts.append(fn(histories.select(rows)).float().cpu().numpy())
        if not parts:
            return np.zeros((0, self.item_embeddings().shape[1]), dtype=np.float32)
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)

    # ------------------------------------------------------------------ provided
    @property
    def train_config(self) -> TrainConfig:
        cfg = getattr(self.config, "train", None)
        if not isinstance(cfg, TrainConfig):
            raise ConfigError(f"{type(self).__name__}.Config needs a field `train: TrainConfig = "
                              "field(default_factory=TrainConfig)`")
        return cfg

    @property
    def device(self) -> torch.device:
        if self.module is None:
            return torch.device("cpu")
        p = next(self.module.parameters(), None)
        if p is None:
            b = next(self.module.buffers(), None)
            return b.device if b is not None else torch.device("cpu")
        return p.device

    def build(self, device: str | torch.device = "cpu") -> "TorchRecommender":
        """Create `self.module` on `device` (called by `fit` after seeding, and by `load`)."""
        self.module = self.build_module().to(device)
        return self

    def to(self, device: str | torch.device) -> "TorchRecommender":
        if self.module is not None:
            self.module.to(device)
        return self

    @contextlib.contextmanager
    def scoring(self) -> Iterator[None]:
        was_training = self.module.training if self.module is not None else False
        if self.module is not None:
            self.module.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            if self.module is not None and was_training:
                self.module.train()

    def fit(self, train: Sequences, valid: EvalSet | None = None) -> "TorchRecommender":
        """Train with `semrec.training.train(self, train, valid, self.train_config)`; history in `self.history`."""
        from semrec.training.loop import train as train_loop

        self.history = train_loop(self, train, valid, self.train_config)
        return self
