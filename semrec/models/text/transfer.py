"""Catalogue changes for text-seq: new items scored from their text, and starting from a pretrained run.

What carries over between catalogues is what never names an item: the adapter (text space -> item space) and
the sequence model. The item table itself (text vectors, ID vectors, categories) always belongs to the
catalogue being trained, so `init_from` leaves it alone and a pretrained run on other catalogues can start a
new one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from semrec.errors import ConfigError, DataError
from semrec.io import read_json

if TYPE_CHECKING:
    from semrec.models.text.text_seq import TextSeq

CATALOGUE_PREFIXES = ("text", "seen", "categories", "id_emb.", "cat_head.")


def grow_catalogue(model: TextSeq, vectors: np.ndarray, categories: np.ndarray | None = None) -> np.ndarray:
    """Append rows for new items to every per-item tensor; new items are unseen (no ID row of their own).
    Returns their indices."""
    if model.module is None:
        raise ConfigError("text-seq: add_items needs a built or trained model (call fit or load first)")
    net = model.module
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != net.text.shape[1]:
        raise DataError(f"new item vectors have shape {vectors.shape}; expected (n, {net.text.shape[1]}) from the "
                        "same text encoder as the catalogue", fix="encode the new items with the model's encoder")
    n_new, dev = len(vectors), net.text.device
    new_idx = np.arange(model.n_items, model.n_items + n_new)
    with torch.no_grad():
        net.text = torch.cat([net.text, torch.from_numpy(vectors).to(dev)])
        net.seen = torch.cat([net.seen, torch.zeros(n_new, device=dev)])
        cats = torch.full((n_new,), -1, dtype=torch.long) if categories is None else torch.as_tensor(categories)
        net.categories = torch.cat([net.categories, cats.to(dev)])
        if net.id_emb is not None:
            grown = nn.Embedding(model.n_items + n_new, net.id_emb.embedding_dim).to(dev)
            grown.weight.zero_()
            grown.weight[:model.n_items] = net.id_emb.weight
            net.id_emb = grown
    model.n_items += n_new
    if model._seen is not None:
        model._seen = np.concatenate([model._seen, np.zeros(n_new, dtype=bool)])
    model._vectors = None
    model._table = None
    model._prefix = model._texts = None  # tune_encoder: the frozen-layer cache covers the old catalogue only
    return new_idx


def _weights_file(path: str | Path) -> Path:
    """model.safetensors of a run folder (RUN_DIR/model/) or of a model folder."""
    path = Path(path)
    for p in (path / "model" / "model.safetensors", path / "model.safetensors"):
        if p.exists():
            return p
    raise DataError("no model.safetensors here or in model/", path=path,
                    fix="pass a run folder written by `semrec train text-seq` (or its model/ folder)")


def init_from(model: TextSeq, path: str | Path, strict_shapes: bool = True) -> list[str]:
    """Build `model` (seeded with its train.seed) and copy every non-catalogue tensor of the pretrained text-seq
    at `path`; returns the copied names. Shapes must match (same hidden size, layers, experts, text encoder)."""
    from safetensors.torch import load_file

    from semrec.training.loop import seed_everything

    weights = _weights_file(path)
    info = read_json(weights.parent / "config.json")
    if info.get("model") != model.name:
        raise ConfigError(f"--init {path}: a {info.get('model')!r} run; text-seq can only start from text-seq")
    seed_everything(model.train_config.seed)
    if model.module is None:
        model.build(model.train_config.device)
    own = model.module.state_dict()
    state = load_file(str(weights), device=str(model.device))
    carried, mismatched = [], []
    for name, tensor in state.items():
        if name.startswith(CATALOGUE_PREFIXES) or name not in own:
            continue
        if own[name].shape != tensor.shape:
            mismatched.append(f"{name} {tuple(tensor.shape)} vs {tuple(own[name].shape)}")
            continue
        own[name] = tensor
        carried.append(name)
    if mismatched and strict_shapes:
        raise ConfigError(f"--init {path}: shapes differ ({'; '.join(mismatched[:3])}) (fix: use the pretrained "
                          "run's hidden, n_layers, n_experts and the same text encoder)")
    model.module.load_state_dict(own)
    model._table = None
    return carried


__all__ = ["CATALOGUE_PREFIXES", "grow_catalogue", "init_from"]
