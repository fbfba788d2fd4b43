"""The `semrec` command line: a thin layer over the library; each sub-command group lives in its own file.

Every failure ends in one line on stderr, never a traceback: a mistake in the input or the options is
`error: ...` naming the file or option and the fix (exit 2, like a usage error); a bug in semrec itself is
`internal error: ...` (exit 1). `--debug` anywhere on the line, or SEMREC_DEBUG=1, shows the traceback.
"""

from __future__ import annotations

import os
import sys

import typer

from semrec.errors import SemrecError

app = typer.Typer(name="semrec", help="Language- and semantic-ID-based recommendation. Add --debug (or set "
                  "SEMREC_DEBUG=1) to see the traceback of a failure.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

USAGE_EXIT = 2  # bad input or options (click uses 2 for usage errors too)
INTERNAL_EXIT = 1


def _register() -> None:
    from semrec.cli import data, quickstart

    app.add_typer(data.app, name="data")
    quickstart.register(app)
    for name in ("train", "ids", "recommend", "serve", "users"):
        __import__(f"semrec.cli.{name}", fromlist=["register"]).register(app)


def _click_exceptions() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(usage errors, aborts) of click and of the click copy newer typer versions vendor as typer._click."""
    import importlib

    usage, aborts = [], []
    for mod in ("click.exceptions", "typer._click.exceptions"):
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        usage += [getattr(m, "ClickException")] if hasattr(m, "ClickException") else []
        aborts += [getattr(m, "Abort")] if hasattr(m, "Abort") else []
    return tuple(usage), tuple(aborts)


def _debug(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("SEMREC_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turning every failure into one clear line and an exit code."""
    from semrec.cli.console import err

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug(argv)
    argv = [a for a in argv if a != "--debug"]
    _register()
    usage_errors, aborts = _click_exceptions()
    try:
        code = app(args=argv, prog_name="semrec", standalone_mode=False)
        if isinstance(code, int) and code:  # outside standalone mode click returns a typer.Exit's code
            sys.exit(code)
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", getattr(e, "code", 0))
        sys.exit(code or 0)
    except (typer.Abort, *aborts):
        err.print("aborted", style="red")
        sys.exit(INTERNAL_EXIT)
    except KeyboardInterrupt:
        err.print("interrupted; outputs are only ever replaced whole, so nothing was half-written", style="red")
        sys.exit(130)
    except usage_errors as e:  # usage mistakes: usage line + the error
        e.show()
        sys.exit(e.exit_code)
    except SemrecError as e:
        if debug:
            raise
        err.print(f"error: {e}", style="bold red", soft_wrap=True)
        sys.exit(USAGE_EXIT)
    except MemoryError:
        if debug:
            raise
        err.print("error: out of memory (fix: a smaller batch size, fewer threads, or a smaller input)",
                  style="bold red")
        sys.exit(USAGE_EXIT)
    except OSError as e:  # the environment refused: permissions, a full disk, a vanished file
        if debug:
            raise
        where = f" {e.filename}" if e.filename else ""
        err.print(f"error:{where}: {e.strerror or e}", style="bold red", soft_wrap=True)
        sys.exit(USAGE_EXIT)
    except Exception as e:  # a bug in semrec, not in the user's input: say so, and how to see it in full
        if debug:
            raise
        err.print(f"internal error: {type(e).__name__}: {e} (this is a bug in semrec; rerun with --debug for "
                  "the traceback and report it)", style="bold red", soft_wrap=True)
        sys.exit(INTERNAL_EXIT)
