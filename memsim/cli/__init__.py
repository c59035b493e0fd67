"""The ``memsim`` command line. Each subcommand lives in its own module of this package.

Start-up must stay fast: command modules import only typer and memsim's light core at
import time; numba.cuda, plotly and the trace simulator are imported inside the command
that needs them. Bad input (:class:`memsim.errors.InputError`, pydantic's
``ValidationError``) prints ``error: field=value rule`` and exits 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="memsim",
    help="GPU memory-hierarchy simulator and cost model for LLM attention.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _root() -> None:
    """memsim: FLOPs, bytes per memory level, VRAM, time and $ for LLM attention on GPUs."""


# Subcommand modules register themselves on `app` when imported.
_COMMAND_MODULES = ("attention", "gpus", "op", "predict", "validate", "report", "trace")


def _register() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(f"memsim.cli.{name}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``memsim`` console script."""
    from pydantic import ValidationError

    from memsim.errors import InputError, format_validation_error

    _register()
    try:
        app(args=argv, standalone_mode=True)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except ValidationError as exc:
        print("error: " + format_validation_error(exc), file=sys.stderr)
        sys.exit(2)


def user_errors(fn):  # type: ignore[no-untyped-def]
    """Decorator for command functions: bad input → 'error: ...' on stderr and exit code 2."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        from pydantic import ValidationError

        from memsim.errors import InputError, format_validation_error

        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except ValidationError as exc:
            typer.echo("error: " + format_validation_error(exc), err=True)
            raise typer.Exit(2) from None

    return wrapper
