"""Shared rich consoles: results to stdout, messages and progress to stderr."""

from rich.console import Console

out = Console()
err = Console(stderr=True)
