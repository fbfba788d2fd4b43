"""Options shared by every command, validated before any work or write: `key=value` lists (`-o`, `--set`),
cut-offs, devices, threads, and the `--overwrite` / `--threads` / `--device` declarations themselves."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from semrec.errors import ConfigError
from semrec.training.config import check_device  # noqa: F401  (re-exported for the commands)

Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output of the same kind "
                                         "(semrec never replaces folders or files it did not write).")]
Threads = Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads (default: torch's; "
                                                "1 is fastest on a busy 2-core machine).")]
Device = Annotated[str, typer.Option("--device", help="torch device: cpu, cuda, cuda:1, mps.")]


def parse_key_values(pairs: list[str], flag: str = "--option") -> dict[str, object]:
    """`key=value` pairs to a dict; values parsed as JSON when possible (ints, floats, lists, null)."""
    opts: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair or not pair.split("=", 1)[0].strip():
            raise ConfigError(f"{flag} {pair!r} is not key=value (e.g. {flag} item_text=path/items.json)")
        key, value = pair.split("=", 1)
        try:
            opts[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            opts[key.strip().replace("-", "_")] = value
    return opts


def parse_ks(text: str, flag: str = "--ks") -> tuple[int, ...]:
    """'5,10,20' -> (5, 10, 20): distinct cut-offs >= 1, sorted."""
    try:
        ks = tuple(sorted({int(k) for k in text.split(",") if k.strip()}))
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: give comma-separated whole numbers, e.g. {flag} 5,10,20") from None
    if not ks:
        raise ConfigError(f"{flag} needs at least one cut-off, e.g. {flag} 5,10,20")
    if ks[0] < 1:
        raise ConfigError(f"{flag} {text!r}: cut-offs must be >= 1")
    return ks


def set_threads(threads: int | None) -> None:
    """Apply `--threads` to torch (and to the BLAS pools numpy/faiss use) before any compute."""
    if threads is None:
        return
    import torch

    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # numpy's BLAS keeps its own default
        pass
