"""Shared rich consoles: results to stdout, messages and progress to stderr.

Markup is off: item titles, paths and error messages print verbatim (a title such as `Serum [1.0 oz]` or a
message quoting `[1.0]` must not be swallowed as a style tag); styles are passed explicitly with `style=`.
"""

from rich.console import Console

out = Console(markup=False, highlight=False)
err = Console(stderr=True, markup=False, highlight=False)
