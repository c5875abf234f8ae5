"""The ``inverity`` command line (typer). Thin: every command calls the public API.

Commands live in one module per area (``cli/_codecs.py``, ``cli/_pipeline.py``, ...), each registering onto
``app``; this module only wires them and applies the error convention of DESIGN.md: one line on stderr
beginning ``inverity: error:``, exit 2, no traceback unless ``--debug``.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from typer.exceptions import TyperException

from ..errors import error_line

__all__ = ["app", "main", "fail", "error_line"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="inverity: route every image to the codec stage that fits it, and verify it.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: corruptions, rd, routing.")
app.add_typer(bench_app, name="bench")

_state: dict[str, Any] = {"debug": False}

#: command modules, imported in this order
_COMMAND_MODULES = ("_codecs", "_pipeline", "_analyse", "_verify", "_bench", "_report", "_serve", "_train", "_review")


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors.")) -> None:
    _state["debug"] = debug


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print the one-line error and return an Exit to raise."""
    typer.echo(f"inverity: error: {message}", err=True)
    return typer.Exit(code)


for _name in _COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app with the error convention; returns the exit code.

    The command is invoked through its context directly (not typer's ``standalone_mode``), so every way out is
    ours to word: usage errors, Ctrl-C and failures each print one ``inverity: error:`` line. Only typer's own
    exception types are used (typer >= 0.28 vendors click; ``click`` is not a dependency of inverity).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        command = typer.main.get_command(app)
        with command.make_context("inverity", args) as ctx:
            rc = command.invoke(ctx)
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("inverity: error: interrupted", err=True)
        return 130
    except TyperException as exc:   # usage errors (missing argument, unknown option or command, bad value)
        if type(exc).__name__ == "NoArgsIsHelpError":   # the help text was printed already
            return 2
        where = getattr(getattr(exc, "ctx", None), "command_path", None) or "inverity"
        sub = where.partition(" ")[2]
        typer.echo(f"inverity: error: {sub + ': ' if sub else ''}{exc.format_message()} (see '{where} --help')",
                   err=True)
        return int(getattr(exc, "exit_code", 2) or 2)
    except Exception as exc:  # noqa: BLE001 - the CLI's single error boundary
        if debug:
            raise
        typer.echo(f"inverity: error: {error_line(exc)}", err=True)
        return 2
    return rc if isinstance(rc, int) else 0


def entry() -> None:
    sys.exit(main())
