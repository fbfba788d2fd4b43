"""Parsing of repeatable `key=value` options shared by every command (`-o`, `--option`, `--set`)."""

from __future__ import annotations

import json

from semrec.errors import ConfigError


def parse_key_values(pairs: list[str], flag: str = "--option") -> dict[str, object]:
    """`key=value` pairs to a dict; values parsed as JSON when possible (ints, floats, lists, null)."""
    opts: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"{flag} {pair!r} is not key=value (e.g. {flag} item_text=path/items.json)")
        key, value = pair.split("=", 1)
        try:
            opts[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            opts[key.replace("-", "_")] = value
    return opts
