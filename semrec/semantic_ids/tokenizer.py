"""What every semantic-ID tokenizer shares: fit -> collision-free code table, encode new items, save/load.

A subclass only learns codebooks (`_fit`) and quantises vectors (`_quantize`). This base class keeps
the fitted items' raw and final codes, resolves collisions, and remembers a 128-bit fingerprint of
each fitted vector, so `encode` of a fitted item returns exactly its table code and a new item gets a
code that collides with nothing in the table.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from semrec.errors import ConfigError, DataError
from semrec.io import atomic_dir, load_safetensors, read_json
from semrec.semantic_ids.collisions import collision_rate, resolve
from semrec.semantic_ids.table import CodeTable

TOKENIZERS: dict[str, type["Tokenizer"]] = {}
_MULT = np.random.default_rng(20240901).integers(1, 2**63, size=(2, 4096), dtype=np.uint64) | np.uint64(1)


def register(cls: type["Tokenizer"]) -> type["Tokenizer"]:
    TOKENIZERS[cls.name] = cls
    return cls


def fingerprints(vectors: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """(n,) 16-byte row hashes of the float32 bits, for exact-match lookup of fitted items.

    Rows are read as 64-bit words (two floats each) and hashed twice by multiply-add with fixed random
    odd multipliers (mod 2^64), then mixed; vectorised and chunked so it stays cheap at 1M rows.
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.shape[1] % 2:
        x = np.pad(x, ((0, 0), (0, 1)))
    words = x.shape[1] // 2
    if words > _MULT.shape[1]:
        raise ConfigError(f"vectors wider than {2 * _MULT.shape[1]} dims are not supported")
    u_all = x.view(np.uint64)
    out = np.empty((len(x), 2), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for s in range(0, len(x), chunk):
            u = u_all[s:s + chunk]
            for j in range(2):
                h = (u * _MULT[j, :words]).sum(axis=1, dtype=np.uint64)
                out[s:s + chunk, j] = h ^ (h >> np.uint64(31))
    return out.view(np.dtype((np.void, 16))).ravel()


class Tokenizer(ABC):
    """Base class; subclasses set `name`, `Config` (a dataclass with a `collisions` and `device` field)."""

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, config: Any = None, **overrides: Any):
        cfg = config if config is not None else self.Config()
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cfg)}
        if unknown:
            raise ConfigError(f"{self.name}: unknown option(s) {sorted(unknown)}")
        self.config = dataclasses.replace(cfg, **overrides)
        self.raw_codes: np.ndarray | None = None
        self.codes: np.ndarray | None = None
        self.item_ids: list[str] | None = None
        self._fp: np.ndarray | None = None
        self._fp_sorted: np.ndarray | None = None
        self.fit_stats: dict[str, Any] = {}

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _fit(self, x: torch.Tensor, cf: torch.Tensor | None) -> np.ndarray | None:
        """Learn codebooks; may return the fitted raw codes (e.g. balanced assignment), else None."""

    @abstractmethod
    def _quantize(self, x: torch.Tensor, need_last: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw codes (n, n_levels) and, if `need_last`, distances (n, K) to the last codebook."""

    def _last_distances(self, x: torch.Tensor, raw: torch.Tensor) -> np.ndarray:
        """Distances (n, K) to the last codebook given the raw prefixes `raw` (for balanced fits)."""
        return self._quantize(x, True)[1]

    @abstractmethod
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Learned tensors to save."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore learned tensors."""

    @property
    @abstractmethod
    def codebook_sizes(self) -> list[int]:
        """Vocabulary size of each raw level."""

    # ------------------------------------------------------------------ public API
    def _tensor(self, vectors: np.ndarray) -> torch.Tensor:
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or not np.isfinite(x).all():
            raise DataError(f"vectors must be a finite 2-d float array, got shape {x.shape}")
        return torch.from_numpy(np.ascontiguousarray(x)).to(self.config.device)

    def quantize(self, vectors: np.ndarray, need_last: bool = False, chunk: int = 262144
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw codes of any vectors (no collision handling), in chunks with a progress bar on big inputs."""
        codes, last = [], []
        with torch.no_grad():
            for s in tqdm(range(0, len(vectors), chunk), desc="quantize", disable=len(vectors) <= 4 * chunk):
                c, d = self._quantize(self._tensor(vectors[s:s + chunk]), need_last)
                codes.append(c)
                last.append(d)
        if not codes:
            return np.zeros((0, len(self.codebook_sizes)), np.int64), None
        return np.concatenate(codes), (np.concatenate(last) if need_last else None)

    def fit(self, vectors: np.ndarray, cf_vectors: np.ndarray | None = None,
            item_ids: list[str] | None = None) -> "Tokenizer":
        """Learn codebooks on item vectors (row = item_idx) and build the collision-free code table."""
        if cf_vectors is not None and len(cf_vectors) != len(vectors):
            raise DataError(f"{len(cf_vectors)} CF vectors for {len(vectors)} items (rows must be item_idx)")
        torch.manual_seed(getattr(self.config, "seed", 0))
        self.fit_stats["input_dim"] = int(np.shape(vectors)[1]) if np.ndim(vectors) == 2 else None
        cf = self._tensor(cf_vectors) if cf_vectors is not None else None
        raw = self._fit(self._tensor(vectors), cf)
        need_last = self.config.collisions == "reassign"
        last = None
        if raw is None:
            raw, last = self.quantize(vectors, need_last)
        elif need_last:
            with torch.no_grad():
                last = self._last_distances(self._tensor(vectors), torch.from_numpy(np.asarray(raw)))
        self.raw_codes = np.asarray(raw, dtype=np.int64)
        self.fit_stats["collision_rate_before"] = collision_rate(self.raw_codes)
        self.codes = resolve(self.raw_codes, self.config.collisions, last)
        self.item_ids = None if item_ids is None else [str(i) for i in item_ids]
        self._set_fingerprints(fingerprints(vectors))
        return self

    def _set_fingerprints(self, fp: np.ndarray) -> None:
        self._fp = fp
        halves = fp.view(np.uint64).reshape(-1, 2)
        order = np.argsort(halves[:, 0], kind="stable")  # integer sort/search is much faster than on bytes
        self._fp_sorted = (halves[order, 0], halves[order, 1], order)

    def _lookup(self, vectors: np.ndarray) -> np.ndarray:
        """Table row of each vector that was fitted (or added) before, else -1."""
        first, second, order = self._fp_sorted
        q = fingerprints(vectors).view(np.uint64).reshape(-1, 2)
        if not len(first):
            return np.full(len(q), -1, dtype=np.int64)
        pos = np.searchsorted(first, q[:, 0]).clip(max=len(first) - 1)
        hit = (first[pos] == q[:, 0]) & (second[pos] == q[:, 1])
        return np.where(hit, order[pos], -1)

    def encode(self, vectors: np.ndarray, add: bool = False, item_ids: list[str] | None = None) -> np.ndarray:
        """Final codes (n, levels) for any items: fitted ones get their table code, new ones a free code.

        New items are made unique against the table and among themselves. With `add`, they join the
        table (so later calls avoid them too); `item_ids` names them in exports.
        """
        if self.codes is None:
            raise ConfigError(f"{self.name} tokenizer is not fitted (fix: call fit or load a fitted folder)")
        dim = self.fit_stats.get("input_dim")
        if dim and (np.ndim(vectors) != 2 or np.shape(vectors)[1] != dim):
            raise DataError(f"vectors of shape {np.shape(vectors)}, but this tokenizer was fitted on {dim}-d "
                            "vectors", fix="encode vectors made the same way as the fitted ones")
        row = self._lookup(vectors)
        out = np.empty((len(vectors), self.codes.shape[1]), dtype=np.int64)
        known = row >= 0
        out[known] = self.codes[row[known]]
        new = np.flatnonzero(~known)
        if len(new):
            need_last = self.config.collisions == "reassign"
            raw, last = self.quantize(np.asarray(vectors)[new], need_last)
            existing = self.codes if need_last else self.raw_codes
            out[new] = resolve(raw, self.config.collisions, last, existing=existing)
            if add:
                ids = [str(item_ids[i]) for i in new] if item_ids is not None else None
                self.extend(np.asarray(vectors)[new], out[new], ids, raw=raw)
        return out

    def extend(self, vectors: np.ndarray, codes: np.ndarray, item_ids: list[str] | None = None,
               raw: np.ndarray | None = None) -> None:
        """Append items with already-assigned final codes to the table (what `encode(add=True)` does after
        choosing codes), e.g. to restore items a server added earlier without re-deciding their codes."""
        codes = np.asarray(codes, dtype=np.int64).reshape(len(vectors), self.codes.shape[1])
        if raw is None:  # `append` added one level to the raw code; the other modes keep its length
            raw = codes[:, : self.raw_codes.shape[1]]
        start = len(self.codes)
        self.raw_codes = np.concatenate([self.raw_codes, np.asarray(raw, dtype=np.int64)])
        self.codes = np.concatenate([self.codes, codes])
        self._set_fingerprints(np.concatenate([self._fp, fingerprints(np.asarray(vectors))]))
        if self.item_ids is not None:
            self.item_ids += ([str(i) for i in item_ids] if item_ids is not None
                              else [f"new-{start + i}" for i in range(len(codes))])

    def table(self) -> CodeTable:
        """The fitted items' final codes as a CodeTable (row = item_idx)."""
        sizes = list(self.codebook_sizes)
        if self.codes.shape[1] > len(sizes):
            sizes.append(int(self.codes[:, -1].max(initial=0)) + 1)
        return CodeTable(self.codes, sizes, self.item_ids)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Folder: tokenizer.json, tokenizer.safetensors (codebooks, codes, fingerprints), codes.safetensors."""
        from safetensors.torch import save_file

        with atomic_dir(path, "tokenizer") as tmp:
            info = {"tokenizer": self.name, "config": dataclasses.asdict(self.config), "fit_stats": self.fit_stats,
                    "item_ids": self.item_ids}
            (tmp / "tokenizer.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
            state = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
            state["raw_codes"] = torch.from_numpy(self.raw_codes)
            state["codes"] = torch.from_numpy(self.codes)
            state["fingerprints"] = torch.from_numpy(self._fp.view(np.uint8).reshape(-1, 16).copy())
            save_file(state, str(tmp / "tokenizer.safetensors"))
            self.table().save(tmp / "codes.safetensors")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> "Tokenizer":
        """Rebuild a fitted tokenizer from its folder; a missing, corrupt or foreign part is a DataError."""
        path = Path(path)
        fix = "pass a folder written by `semrec ids fit`"
        if not (path / "tokenizer.json").exists():
            raise DataError("not a semantic-ID folder (no tokenizer.json)", path=path, fix=fix)
        info = read_json(path / "tokenizer.json")
        name = info.get("tokenizer")
        if name not in TOKENIZERS:
            raise DataError(f"unknown tokenizer {name!r}", path=path / "tokenizer.json", field="tokenizer", fix=fix)
        tcls = TOKENIZERS[name]
        known = {f.name for f in dataclasses.fields(tcls.Config)}
        try:
            cfg = tcls.Config(**{k: v for k, v in dict(info.get("config") or {}).items() if k in known})
        except (TypeError, ValueError) as e:
            raise DataError(f"invalid tokenizer config: {e}", path=path / "tokenizer.json", fix=fix) from None
        if device is not None:
            cfg = dataclasses.replace(cfg, device=device)
        tok = tcls(cfg)
        state = load_safetensors(path / "tokenizer.safetensors", "tokenizer weights", fix=fix)
        missing = [k for k in ("raw_codes", "codes", "fingerprints") if k not in state]
        if missing:
            raise DataError(f"lacks tensors {missing}", path=path / "tokenizer.safetensors", fix=fix)
        try:
            tok.load_state_dict({k[6:]: v.to(cfg.device) for k, v in state.items() if k.startswith("model.")})
        except (RuntimeError, KeyError, ValueError) as e:
            raise DataError(f"weights do not fit the tokenizer config ({str(e).splitlines()[0][:160]})",
                            path=path / "tokenizer.safetensors", fix=fix) from None
        tok.raw_codes, tok.codes = state["raw_codes"].numpy(), state["codes"].numpy()
        tok._set_fingerprints(state["fingerprints"].numpy().copy().view(np.dtype((np.void, 16))).ravel())
        tok.item_ids, tok.fit_stats = info.get("item_ids"), info.get("fit_stats", {})
        return tok
