"""The server's durable catalogue changes: one JSON file, replaced atomically, shared by every worker process.

`STATE_DIR/catalogue.json` holds the items added through `POST /items` (id, attributes, text vector, code) in
the order they were added, and the ids removed through `DELETE /items/{id}`. Every change is a read-modify-write
under an exclusive `flock` on `STATE_DIR/catalogue.lock`: the new content goes to a temporary sibling, is
fsynced, and renamed over the old file before the request is acknowledged, so a `kill -9` at any instant leaves
either the old or the new file, never half of one. Workers notice another worker's change by the file's
`version` (checked through a cheap `stat` before each request).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from semrec.errors import DataError
from semrec.io import atomic_path, clean_stale_temporaries

FORMAT_VERSION = 1
FILE = "catalogue.json"


def encode_vector(v: np.ndarray) -> str:
    """float32 vector -> base64 text (exact, 4/3 the binary size)."""
    return base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<f4").astype(np.float32)


@dataclass
class StoreState:
    """What the file holds: added items in order (dicts with item_id, attributes, vector?, code?) and deleted ids."""

    added: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    version: int = 0
    run: str = ""


class CatalogueStore:
    """Reads and atomically rewrites `STATE_DIR/catalogue.json`; `change()` is the only way to write."""

    def __init__(self, state_dir: str | Path, run_id: str):
        self.dir = Path(state_dir)
        self.path = self.dir / FILE
        self.run_id = run_id
        self._stamp: tuple[int, int] | None = None
        clean_stale_temporaries(self.path)  # left by a writer killed mid-write: never read, removed at start-up

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def changed(self) -> bool:
        """True when the file differs from the one last read or written by this process (one `stat`)."""
        return self._stat() != self._stamp

    def read(self) -> StoreState:
        """The current content (empty when the file does not exist yet); errors name the file."""
        stamp = self._stat()
        if stamp is None:
            self._stamp = None
            return StoreState(run=self.run_id)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"unreadable serving state ({e})", path=self.path,
                            fix="restore it from a backup or delete it to start from the trained catalogue") from None
        if data.get("format_version") != FORMAT_VERSION:
            raise DataError(f"unsupported format_version {data.get('format_version')}", path=self.path,
                            field="format_version")
        if data.get("run") and data["run"] != self.run_id:
            raise DataError(f"this state belongs to run {data['run']!r}, not {self.run_id!r}", path=self.path,
                            fix="pass --state with a folder of its own for each run")
        self._stamp = stamp
        return StoreState(added=list(data.get("added", [])), deleted=list(data.get("deleted", [])),
                          version=int(data.get("version", 0)), run=self.run_id)

    @contextlib.contextmanager
    def change(self) -> Iterator[StoreState]:
        """Exclusive read-modify-write: yields the current state to mutate; written durably when the block ends."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "catalogue.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                clean_stale_temporaries(self.path)  # a temporary left by a killed writer is never read
                state = self.read()
                yield state
                state.version += 1
                self._write(state)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, state: StoreState) -> None:
        body = {"format_version": FORMAT_VERSION, "run": self.run_id, "version": state.version,
                "added": state.added, "deleted": state.deleted}
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(body, f, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
        fd = os.open(self.dir, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._stamp = self._stat()
