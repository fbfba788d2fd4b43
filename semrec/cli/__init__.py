"""The `semrec` command line: a thin layer over the library; each sub-command group lives in its own file."""

from __future__ import annotations

import sys

import typer

from semrec.errors import SemrecError

app = typer.Typer(name="semrec", help="Language- and semantic-ID-based recommendation.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


def _register() -> None:
    from semrec.cli import data, quickstart

    app.add_typer(data.app, name="data")
    quickstart.register(app)
    __import__("semrec.cli.train", fromlist=["register"]).register(app)
    __import__("semrec.cli.ids", fromlist=["register"]).register(app)
    __import__("semrec.cli.recommend", fromlist=["register"]).register(app)


def main() -> None:
    """Entry point: known errors become one red line and exit code 2, not a traceback."""
    _register()
    try:
        app(standalone_mode=False)
    except SemrecError as e:
        from semrec.cli.console import err

        err.print(f"[bold red]error:[/] {e}")
        sys.exit(2)
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", getattr(e, "code", 0))
        sys.exit(code or 0)
    except typer.Abort:
        sys.exit(1)
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise
