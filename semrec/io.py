"""Safe outputs, implemented once: nothing semrec writes can destroy a user's files or be left half-written.

The rule every writer follows (library `save` methods and every CLI `--out`):

- an existing output is replaced only when it is semrec's own output of the same kind (a folder whose
  `.semrec.json` marker says so, or a file whose metadata does) and the caller allows it (`--overwrite` on the
  command line); an empty folder counts as free; anything else is refused with a message and left untouched;
- content is written into a temporary sibling (`.NAME.tmp-PID-XXXX`) and renamed into place only when complete;
- temporaries left by a killed earlier process (its pid is gone) are removed by the next writer of that path.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

MARKER = ".semrec.json"

# Folders written by semrec versions before the marker existed, recognised by the files they always hold.
_LEGACY_SIGNATURES: dict[str, tuple[str, ...]] = {
    "dataset": ("manifest.json", "items.parquet", "interactions.parquet"),
    "split": ("split.json", "split.npz"),
    "model": ("config.json", "model.safetensors"),
    "run": ("config.json", "model"),
    "ids": ("tokenizer.json", "tokenizer.safetensors"),
    "eval": ("result.json",),
    "quickstart": ("dataset", "split", "runs"),
}


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-"


def clean_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove `.NAME.tmp-PID-*` siblings of `path` whose writing process no longer exists; return them."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    prefix = _temp_prefix(path)
    for p in path.parent.iterdir():
        if not p.name.startswith(prefix):
            continue
        pid = p.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def folder_kind(path: str | Path) -> str | None:
    """The semrec kind of folder `path` ('dataset', 'run', ...), or None when it is not semrec's."""
    path = Path(path)
    marker = path / MARKER
    if marker.is_file():
        try:
            kind = json.loads(marker.read_text()).get("kind")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, OSError):
            return None
        return kind if isinstance(kind, str) else None
    for kind, names in _LEGACY_SIGNATURES.items():
        if all((path / n).exists() for n in names):
            return kind
    return None


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def check_output(path: str | Path, kind: str, overwrite: bool = False, *, is_file: bool = False,
                 file_kind: str | None = None) -> None:
    """Refuse, before any work, an output path whose current content must not be replaced.

    `is_file` outputs may replace an existing file only with `overwrite`, and only when `file_kind` (read from
    the file's own metadata by the caller) equals `kind`; folder outputs follow the marker rule above.
    """
    from semrec.errors import OutputError

    path = Path(path)
    flag = "--overwrite"
    if path.is_symlink() and not path.exists():
        raise OutputError(f"{path} is a dangling symbolic link", fix="remove it or choose another --out")
    if not path.exists():
        if path.parent.exists() and not path.parent.is_dir():
            raise OutputError(f"{path.parent} is a file, so {path} cannot be created", fix="choose another --out")
        return
    if is_file:
        if path.is_dir():
            raise OutputError(f"{path} is a folder; {_a(kind)} file was expected", fix="give a file path as --out")
        if file_kind != kind:
            raise OutputError(f"{path} exists and is not a semrec {kind} file; refusing to replace it",
                              fix="choose another --out (semrec never overwrites files it did not write)")
        if not overwrite:
            raise OutputError(f"{path} exists (a semrec {kind} file)", fix=f"pass {flag} to replace it, or choose "
                              "another --out")
        return
    if not path.is_dir():
        raise OutputError(f"{path} is a file; {_a(kind)} folder was expected", fix="choose another --out")
    if not any(path.iterdir()):
        return  # an empty folder holds nothing to lose
    found = folder_kind(path)
    if found is None:
        raise OutputError(f"{path} exists and is not a semrec folder; refusing to replace it",
                          fix="choose another --out (semrec only replaces folders it wrote)")
    if found != kind:
        raise OutputError(f"{path} is a semrec {found} folder, not {_a(kind)} folder; refusing to replace it",
                          fix="choose another --out")
    if not overwrite:
        raise OutputError(f"{path} exists (a semrec {kind} folder)", fix=f"pass {flag} to replace it, or choose "
                          "another --out")


def write_marker(folder: str | Path, kind: str, **info: Any) -> None:
    """Write the `.semrec.json` marker that makes `folder` recognisably semrec's `kind` output."""
    from semrec import __version__

    (Path(folder) / MARKER).write_text(json.dumps({"kind": kind, "semrec": __version__, **info}, indent=2) + "\n")


def _new_temp(path: Path, is_dir: bool) -> Path:
    prefix = f"{_temp_prefix(path)}{os.getpid()}-"
    if is_dir:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path beside `path`; rename it onto `path` only if the block succeeds.

    For files semrec owns by construction (caches, files inside a folder being staged); user-facing file
    outputs call `check_output(..., is_file=True)` first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    tmp = _new_temp(path, is_dir=False)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        _remove(tmp) if tmp.exists() else None


@contextlib.contextmanager
def atomic_dir(path: str | Path, kind: str, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; swap it into place, marked as `kind`, only if the block succeeds.

    `check_output` runs first, so a foreign folder or another kind of semrec folder is never replaced; with
    `overwrite=False` an existing `kind` folder is refused too.
    """
    path = Path(path)
    check_output(path, kind, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    tmp = _new_temp(path, is_dir=True)
    try:
        yield tmp
        write_marker(tmp, kind)
        swap_into_place(tmp, path, kind, overwrite)
    finally:
        if tmp.exists():
            _remove(tmp)


def swap_into_place(tmp: Path, path: Path, kind: str, overwrite: bool) -> None:
    """Rename the finished folder `tmp` onto `path`, replacing an existing `kind` folder only if allowed."""
    check_output(path, kind, overwrite)  # the path may have changed while the work ran
    if path.exists():
        old = _new_temp(path, is_dir=True)
        os.rmdir(old)
        os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)
    else:
        os.replace(tmp, path)


# ---------------------------------------------------------------------------- resumable outputs
def partial_dir(path: str | Path) -> Path:
    """Where a long, resumable job (training) builds `path`: the hidden sibling `.NAME.partial`."""
    path = Path(path)
    return path.parent / f".{path.name}.partial"


def marker_info(folder: str | Path) -> dict[str, Any]:
    try:
        info = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


def open_partial(path: str | Path, kind: str, resume: bool = False) -> Path:
    """The `.NAME.partial` folder to build `path` in, marked incomplete and owned by this process.

    Without `resume` a partial folder left by a dead process is removed first; with `resume` it is kept (or,
    when only a finished `path` exists, copied from it) so the job continues where it stopped. A partial folder
    whose writer is still alive is refused.
    """
    from semrec.errors import OutputError

    path = Path(path)
    part = partial_dir(path)
    if part.exists():
        empty = part.is_dir() and not any(part.iterdir())  # killed between mkdir and marker: nothing to lose
        if marker_info(part).get("kind") != kind and not empty:  # never touch a folder semrec did not write
            raise OutputError(f"{part} exists and is not a semrec partial {kind}; refusing to touch it",
                              fix="move it away, or choose another --out")
        pid = marker_info(part).get("pid")
        if isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid):
            raise OutputError(f"another semrec process (pid {pid}) is writing {path}",
                              fix="wait for it to finish, or choose another --out")
        if not resume:
            _remove(part)
    if not part.exists():
        part.parent.mkdir(parents=True, exist_ok=True)
        if resume and path.is_dir() and folder_kind(path) == kind:
            shutil.copytree(path, part, symlinks=True)
        else:
            part.mkdir()
    write_marker(part, kind, complete=False, pid=os.getpid())
    return part


def commit_partial(path: str | Path, kind: str, overwrite: bool) -> None:
    """Mark the partial folder of `path` complete and swap it into place."""
    path = Path(path)
    part = partial_dir(path)
    write_marker(part, kind, complete=True)
    swap_into_place(part, path, kind, overwrite)


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically, pretty-printed and with a trailing newline."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | Path, expect: type | None = dict) -> Any:
    """Parse a JSON file; any failure is a DataError naming the file (and the line for syntax errors)."""
    from semrec.errors import DataError

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except IsADirectoryError:
        raise DataError("is a folder, expected a JSON file", path=path) from None
    except UnicodeDecodeError:
        raise DataError("not a text file (binary content), expected JSON", path=path,
                        fix="pass the JSON file semrec wrote, or repair it") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg}", path=path, line=e.lineno,
                        fix="repair the JSON syntax at that line") from None
    if expect is not None and not isinstance(obj, expect):
        names = {dict: "object", list: "array", str: "string", int: "number", float: "number"}
        raise DataError(f"expected a JSON {names.get(expect, expect.__name__)}, found a JSON "
                        f"{names.get(type(obj), type(obj).__name__)}", path=path,
                        fix="pass the file semrec wrote, or repair it")
    return obj


# ---------------------------------------------------------------------------- reading semrec's own files
def _must_exist(path: Path, what: str, fix: str) -> None:
    from semrec.errors import DataError

    if not path.exists():
        raise DataError(f"{what} not found", path=path, fix=fix)
    if path.is_dir():
        raise DataError(f"is a folder, expected a {what}", path=path, fix=fix)


def read_parquet(path: str | Path, what: str = "Parquet table", columns: dict[str, str] | None = None,
                 fix: str = "re-create it with the semrec command that wrote it") -> Any:
    """A polars DataFrame from `path`; a missing, truncated or foreign file, or one lacking `columns`
    ({name: kind}, kind one of 'int', 'float', 'str', 'any'), is a DataError naming the file."""
    import polars as pl

    from semrec.errors import DataError

    path = Path(path)
    _must_exist(path, what, fix)
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PAR1":
        raise DataError(f"not a Parquet file (starts with {head!r}); expected the {what}", path=path, fix=fix)
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:  # pyarrow, not polars: polars can abort the process on some corrupted pages (no except catches that)
        df = pl.from_arrow(pq.read_table(path))
    except (pa.ArrowException, pl.exceptions.PolarsError, OSError, ValueError, NotImplementedError) as e:
        raise DataError(f"unreadable Parquet ({str(e).splitlines()[0][:160]})", path=path, fix=fix) from None
    for name, kind in (columns or {}).items():
        if name not in df.columns:
            raise DataError(f"the {what} has no column {name!r} (columns: {df.columns})", path=path, field=name,
                            fix=fix)
        dtype = df.schema[name]
        ok = {"int": dtype.is_integer(), "float": dtype.is_numeric(), "str": dtype in (pl.String, pl.Categorical),
              "any": True}[kind]
        if not ok:
            raise DataError(f"column {name!r} has type {dtype}, expected {kind}", path=path, field=name, fix=fix)
    return df


def load_safetensors(path: str | Path, what: str = "weights file", device: str = "cpu",
                     fix: str = "re-create it with the semrec command that wrote it") -> dict[str, Any]:
    """Tensors of a safetensors file; a missing, truncated or foreign file is a DataError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from semrec.errors import DataError

    path = Path(path)
    _must_exist(path, what, fix)
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise DataError(f"not a readable safetensors {what} ({str(e).splitlines()[0][:160]})", path=path,
                        fix=fix) from None


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The metadata header of a safetensors file ({} when it has none or is not safetensors)."""
    import struct

    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100_000_000:
                return {}
            header = json.loads(f.read(n))
        meta = header.get("__metadata__", {}) if isinstance(header, dict) else {}
        return meta if isinstance(meta, dict) else {}
    except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError):
        return {}


def load_npz(path: str | Path, keys: tuple[str, ...] = (), what: str = "array file",
             fix: str = "re-create it with the semrec command that wrote it") -> dict[str, Any]:
    """Arrays of an .npz file, loaded eagerly without pickle; truncated/foreign files or missing `keys` are a
    DataError naming the file."""
    import zipfile

    import numpy as np

    from semrec.errors import DataError

    path = Path(path)
    _must_exist(path, what, fix)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as e:
        raise DataError(f"not a readable .npz {what} ({str(e).splitlines()[0][:160]})", path=path,
                        fix=fix) from None
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise DataError(f"the {what} lacks arrays {missing}", path=path, fix=fix)
    return arrays


def file_kind(path: str | Path) -> str | None:
    """The semrec kind of file `path` from its own metadata ('vectors', 'codes', 'recommendations', ...), or
    None for a file semrec did not write. Safetensors and Parquet files carry a `semrec_kind` metadata key."""
    path = Path(path)
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PAR1":
        try:
            import pyarrow.parquet as pq

            meta = pq.read_schema(path).metadata or {}
        except (OSError, ValueError):
            return None
        kind = meta.get(b"semrec_kind")
        return kind.decode() if kind else None
    meta = safetensors_metadata(path)
    if meta.get("semrec_kind"):
        return meta["semrec_kind"]
    return "vectors" if meta.get("rows") == "item_idx" else None  # vector files from before the marker


def check_output_file(path: str | Path, kind: str, overwrite: bool = False) -> None:
    """`check_output` for a file output, reading the existing file's kind from its own metadata."""
    check_output(path, kind, overwrite, is_file=True, file_kind=file_kind(path))
