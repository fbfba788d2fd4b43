"""On-disk vector cache keyed by a content hash of (model, text), so re-runs encode only what changed.

Layout: `<root>/<model_key>/shard-<n>.safetensors`, each shard holding `key` (uint8, n x 16: a
BLAKE2b digest of model + text) and `vectors` (float32, n x d). New vectors are appended as a new shard;
lookups are one vectorised `searchsorted` over all keys, so a 1M-item catalogue costs no Python loop.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from semrec.errors import DataError
from semrec.io import atomic_path

DIGEST_BYTES = 16


def content_keys(model_id: str, texts: list[str]) -> np.ndarray:
    """(n, 16) uint8 BLAKE2b digests of `model_id` + NUL + text, one row per text."""
    prefix = model_id.encode() + b"\x00"
    out = np.empty((len(texts), DIGEST_BYTES), dtype=np.uint8)
    buf = bytearray()
    for t in texts:  # hashing is C; the loop only concatenates digests (~1 us per item)
        buf += hashlib.blake2b(prefix + t.encode(), digest_size=DIGEST_BYTES).digest()
    if texts:
        out[:] = np.frombuffer(bytes(buf), dtype=np.uint8).reshape(len(texts), DIGEST_BYTES)
    return out


def _as_void(keys: np.ndarray) -> np.ndarray:
    """View (n, 16) uint8 rows as one sortable 16-byte scalar per row."""
    return np.ascontiguousarray(keys).view(np.dtype((np.void, DIGEST_BYTES))).ravel()


class VectorCache:
    """Cache of vectors for one model under `root`; `get` returns hits, `put` appends new rows."""

    def __init__(self, root: str | Path, model_id: str):
        self.model_id = model_id
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("_")[-60:]
        tag = hashlib.blake2b(model_id.encode(), digest_size=4).hexdigest()
        self.dir = Path(root) / f"{safe}-{tag}"
        self._keys: np.ndarray | None = None
        self._vectors: np.ndarray | None = None

    def _load(self) -> None:
        if self._keys is not None:
            return
        from safetensors.numpy import load_file

        keys, vecs = [], []
        for shard in sorted(self.dir.glob("shard-*.safetensors")):
            try:
                data = load_file(str(shard))
            except Exception as e:  # truncated or foreign file
                raise DataError(f"unreadable cache shard ({e})", path=shard,
                                fix="delete this shard; its vectors are re-encoded on the next run") from None
            keys.append(data["key"])
            vecs.append(data["vectors"])
        if keys:
            k = np.concatenate(keys)
            v = np.concatenate(vecs)
            order = np.argsort(_as_void(k), kind="stable")
            self._keys, self._vectors = _as_void(k)[order], v[order]
        else:
            self._keys, self._vectors = _as_void(np.zeros((0, DIGEST_BYTES), np.uint8)), None

    def __len__(self) -> int:
        self._load()
        return len(self._keys)

    def get(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Boolean hit mask (n,) and the hit vectors (n_hits, d) in query order."""
        self._load()
        q = _as_void(keys)
        if not len(self._keys):
            return np.zeros(len(q), dtype=bool), None
        pos = np.searchsorted(self._keys, q).clip(max=len(self._keys) - 1)
        hit = self._keys[pos] == q
        return hit, self._vectors[pos[hit]]

    def put(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Append a shard (atomic write) with the given rows; duplicates of cached keys are skipped."""
        if not len(keys):
            return
        from safetensors.numpy import save_file

        hit, _ = self.get(keys)
        keys, vectors = keys[~hit], np.asarray(vectors[~hit], dtype=np.float32)
        if not len(keys):
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        n = len(list(self.dir.glob("shard-*.safetensors")))
        with atomic_path(self.dir / f"shard-{n:05d}.safetensors") as tmp:
            save_file({"key": np.ascontiguousarray(keys), "vectors": np.ascontiguousarray(vectors)}, str(tmp),
                      metadata={"model": self.model_id})
        self._keys = self._vectors = None  # reload lazily with the new shard
