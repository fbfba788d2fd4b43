"""How a served model takes items it never saw in training: the "can this model score unseen items" hook.

Three kinds of model, found by duck typing so new model families plug in without touching the server:

- **codes** (semantic-ID generative models, e.g. tiger, tiger-hier): the model has `add_items(items, codes)` and
  `remove_items(items)` and a code table from `config.codes_path` (a `semrec ids fit` folder). A new item's text
  goes through the text encoder that made the tokenizer's input vectors, then `tokenizer.encode(add=True)`, and
  its code is inserted into the model's trie: recommendable at once.
- **vectors** (text-based models, e.g. text-seq): the model has `add_items(vectors) -> new indices` (appended
  after its current items, as text-seq does) or `add_item_vectors(items, vectors)`, optionally
  `remove_items(items)`, and says how its item vectors are made: `text_source()` -> `{"model": sentence-transformers
  folder, "fields": [...], "normalize": bool, "max_seq_length": int | None}`, or a `config.vectors_path` file
  written by `semrec embed`, or `config.dataset` + `config.fields` + `config.encoder`. New items are scored from
  their text vectors at once.
- **none** (ID-based models: MostPop, ItemKNN, SASRec, BERT4Rec, GRU4Rec): new items join the catalogue (search,
  item pages) but are not recommended until the model is retrained; responses say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semrec.errors import ConfigError, DataError


@dataclass
class TextSource:
    """The text encoder and sentence fields that made a run's item vectors."""

    model: str | None  # sentence-transformers folder; None = the bundled default
    fields: list[str]
    normalize: bool = True
    max_seq_length: int | None = None
    vectors_path: str | None = None  # the base items' vectors (row = item_idx), for similar-item search


def _resolve(path: str, run_dir: Path) -> Path | None:
    """A path recorded in a run, tried as given, then relative to the run folder and its parents."""
    p = Path(path)
    for cand in ([p] if p.is_absolute() else [p, run_dir / p, *[q / p for q in run_dir.parents]]):
        if cand.exists():
            return cand
    return None


def source_from_vectors(path: Path) -> tuple[TextSource | None, str]:
    """TextSource from the metadata `semrec embed` writes into a vectors file, or (None, why not)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
    if meta.get("source", "text") != "text":
        return None, f"{path} holds {meta.get('source')} vectors, which cannot be computed from a new item's text"
    model_id = meta.get("model", "")
    parts = model_id.split("|")  # TextEncoder.model_id: name|resolved path|norm=..|len=..
    if len(parts) < 4 or not meta.get("fields"):
        return None, f"{path} does not record its text encoder and fields (re-create it with `semrec embed`)"
    opts = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
    max_len = opts.get("len", "None")
    return TextSource(model=parts[1], fields=meta["fields"].split(","), normalize=opts.get("norm") == "True",
                      max_seq_length=None if max_len == "None" else int(max_len), vectors_path=str(path)), ""


def find_text_source(model: Any, run_dir: Path) -> tuple[TextSource | None, Any, str]:
    """(text source, fitted tokenizer or None, reason when unavailable) for a loaded model of run `run_dir`."""
    if hasattr(model, "text_source"):
        info = dict(model.text_source())
        return TextSource(model=info.get("model"), fields=list(info.get("fields", [])),
                          normalize=bool(info.get("normalize", True)),
                          max_seq_length=info.get("max_seq_length"), vectors_path=info.get("vectors_path")), None, ""
    cfg = getattr(model, "config", None)
    codes_path = getattr(cfg, "codes_path", None) or _run_config(run_dir).get("codes_path")
    if codes_path:
        ids = _resolve(codes_path, run_dir)
        if ids is None or not (ids / "tokenizer.json").exists():
            return None, None, f"the run's code table {codes_path!r} is not a `semrec ids fit` folder with a tokenizer"
        from semrec.semantic_ids import Tokenizer

        tok = Tokenizer.load(ids, device="cpu")
        inputs = json.loads((ids / "inputs.json").read_text()) if (ids / "inputs.json").exists() else {}
        vecs = inputs.get("vectors") or []
        if len(vecs) != 1 or inputs.get("cf") or inputs.get("weights"):
            return None, tok, (f"the tokenizer was fitted on {vecs} (fused or CF vectors); a new item's text alone "
                               "cannot reproduce its input vector")
        vpath = _resolve(vecs[0], run_dir)
        if vpath is None:
            return None, tok, f"the tokenizer's input vectors {vecs[0]!r} are not found"
        source, why = source_from_vectors(vpath)
        return source, tok, why
    vectors_path = getattr(cfg, "vectors_path", None)
    if vectors_path and _resolve(vectors_path, run_dir) is not None:
        source, why = source_from_vectors(_resolve(vectors_path, run_dir))
        return source, None, why
    if getattr(cfg, "dataset", None) and hasattr(cfg, "encoder"):  # text-seq style: encodes a dataset's fields itself
        fields = list(getattr(cfg, "fields", None) or [])
        if not fields:
            ds_dir = _resolve(cfg.dataset, run_dir)
            manifest = json.loads((ds_dir / "manifest.json").read_text()) if ds_dir is not None else {}
            fields = list(manifest.get("text_fields", []))
        if fields:
            return TextSource(model=cfg.encoder, fields=fields), None, ""
        return None, None, f"the run does not record which text fields {model.name} encodes"
    return None, None, ""


def _run_config(run_dir: Path) -> dict[str, Any]:
    p = run_dir / "config.json"
    try:
        return json.loads(p.read_text()).get("config", {}) if p.exists() else {}
    except (json.JSONDecodeError, AttributeError):
        return {}


class NewItems:
    """Encodes new items for one model: `kind` is codes, vectors or none; `reason` says why when it is none."""

    def __init__(self, model: Any, run_dir: Path, device: str = "cpu"):
        self.model = model
        self.source, self.tokenizer, why = find_text_source(model, run_dir)
        self._encoder = None
        self.device = device
        if hasattr(model, "add_items") and getattr(model, "codes", None) is not None:
            self.kind = "codes" if self.source is not None and self.tokenizer is not None else "none"
            self.reason = "" if self.kind == "codes" else (why or "the run has no fitted tokenizer for new items")
        elif hasattr(model, "add_item_vectors") or hasattr(model, "add_items"):
            self.kind = "vectors" if self.source is not None else "none"
            self.reason = "" if self.source is not None else (why or f"{model.name} does not say how it embeds text")
        else:
            self.kind, self.reason = "none", (f"{model.name} scores only the items it was trained on; new items are "
                                              "searchable and listed, and recommended after retraining")

    @property
    def fields(self) -> list[str] | None:
        return self.source.fields if self.source is not None else None

    def base_vectors(self) -> np.ndarray | None:
        """The trained items' text vectors (row = item_idx), when the run records them."""
        if self.source is None or not self.source.vectors_path:
            return None
        from semrec.features import load_vectors

        try:
            return load_vectors(self.source.vectors_path)
        except DataError:
            return None

    def encode_text(self, sentences: list[str]) -> np.ndarray:
        """Text vectors of item sentences with the run's own encoder (loaded on first use)."""
        if self.source is None:
            raise ConfigError(self.reason or "this run records no text encoder")
        if self._encoder is None:
            from semrec.features import TextEncoder

            self._encoder = TextEncoder(model=self.source.model, normalize=self.source.normalize,
                                        max_seq_length=self.source.max_seq_length, cache_dir=None,
                                        progress=False, device=self.device)
        return self._encoder.encode(sentences)

    def tokenizer_codes(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(codes, usable) for new items, unique against the tokenizer's table and each other (the table is not
        changed here: `restore` joins them once they are stored). Usable where every level lies inside the model's
        trained codebooks, else the model could never generate that code."""
        codes = self.tokenizer.encode(vectors, add=False)
        vocab = np.asarray(self.model.vocab_sizes, dtype=np.int64)
        if codes.shape[1] != len(vocab):
            return codes, np.zeros(len(codes), bool)
        ok = (codes >= 0).all(1) & (codes < vocab).all(1)
        if ok.any():  # identical text to a catalogue item gives that item's code: the trie cannot hold both
            import torch

            taken = self.model.trie.lookup(torch.as_tensor(codes[ok], device=self.model.trie.device)).cpu().numpy()
            ok[np.flatnonzero(ok)[taken >= 0]] = False
        return codes, ok

    def restore(self, vectors: np.ndarray, codes: np.ndarray, item_ids: list[str]) -> None:
        """Put items added in an earlier server life back into the tokenizer's table, with their stored codes."""
        if self.tokenizer is not None and len(codes):
            self.tokenizer.extend(vectors, codes, item_ids)
