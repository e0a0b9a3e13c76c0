"""The ``vcritic`` command: wires the commands together and turns user errors into one-line messages.

Each command lives in its own module. At import it only declares its options, from typer and light constant modules;
torch, transformers, numpy and Pillow are imported inside the function bodies, so ``vcritic --help`` does not pay for
them (``tests/unit/test_layers.py`` holds it to that, ``benchmarks/startup.py`` measures the start).
"""

from __future__ import annotations

import os
import sys

import typer

from vcritic import __version__
from vcritic.cli import (
    bench,
    calibrate,
    chat,
    compare,
    data,
    demo,
    describe,
    download,
    models,
    rank,
    report,
    score,
    serve,
    train,
)
from vcritic.cli._exit import EXIT_INTERRUPTED
from vcritic.cli._help import Command, Group

app = typer.Typer(
    name="vcritic",
    help="Judge perceptual image quality with a multimodal model (VisualCritic). "
    "Scores are MOS on a 0-100 scale, higher is better.",
    no_args_is_help=True,
    add_completion=True,
    cls=Group,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.command("score", no_args_is_help=True, epilog=score.EPILOG, cls=Command)(score.score)
app.command("compare", no_args_is_help=True, epilog=compare.EPILOG, cls=Command)(compare.compare)
app.command("rank", no_args_is_help=True, epilog=rank.EPILOG, cls=Command)(rank.rank)
app.command("describe", no_args_is_help=True, epilog=describe.EPILOG, cls=Command)(describe.describe)
app.command("chat", no_args_is_help=True, epilog=chat.EPILOG, cls=Command)(chat.chat)
app.command("bench", no_args_is_help=True, epilog=bench.EPILOG, cls=Command)(bench.bench)
app.command("calibrate", no_args_is_help=True, epilog=calibrate.EPILOG, cls=Command)(calibrate.calibrate)
app.command("report", no_args_is_help=True, epilog=report.EPILOG, cls=Command)(report.report)
app.command("download", no_args_is_help=True, epilog=download.EPILOG, cls=Command)(download.download)
app.command("train", no_args_is_help=True, epilog=train.EPILOG, cls=Command)(train.train)
app.command("serve", epilog=serve.EPILOG, cls=Command)(serve.serve)
app.command("demo", epilog=demo.EPILOG, cls=Command)(demo.demo)
app.add_typer(models.models_app, name="models")
app.add_typer(data.data_app, name="data")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"vcritic {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Judge perceptual image quality with a multimodal model (VisualCritic)."""


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: one place where user errors become a message, a hint and an exit code.

    Set ``VCRITIC_DEBUG=1`` to see the full traceback instead.
    """
    from vcritic.cli._output import GuardedStdout
    from vcritic.errors import VcriticError

    real_stdout = sys.stdout
    sys.stdout = GuardedStdout(real_stdout)
    try:
        # Outside standalone mode click returns the exit code of a typer.Exit instead of raising it.
        code = app(args=argv, standalone_mode=False, prog_name="vcritic")
        sys.stdout.flush()  # a full disk shows here for output still buffered, not at exit
    except VcriticError as err:
        if os.environ.get("VCRITIC_DEBUG"):
            raise
        from rich.markup import escape

        from vcritic.cli._output import stderr

        # Messages quote file names and commands verbatim: `shot[x].png`, `pip install 'vcritic[plot]'`.
        stderr.print(f"[bold red]Error:[/] {escape(err.message)}", markup=True, highlight=False)
        if err.hint:
            stderr.print(f"[dim]Hint:[/] {escape(err.hint)}", markup=True, highlight=False)
        return err.exit_code
    except typer.Exit as exit_:
        return exit_.exit_code
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    except typer.TyperException as err:  # usage errors (bad option value, unknown command): exit 2
        show = getattr(err, "show", None)
        if show is None:
            raise
        show()
        return getattr(err, "exit_code", 2)
    finally:
        sys.stdout = real_stdout
    return code if isinstance(code, int) else 0


def run() -> None:
    code = main()
    if code == EXIT_INTERRUPTED:
        _forget_caught_interrupt()
    sys.exit(code)


def _forget_caught_interrupt() -> None:
    """Let ``python -m vcritic`` exit 130 after a Ctrl-C it handled, instead of dying by SIGINT.

    CPython (3.10-3.13) sets a process-wide "unhandled KeyboardInterrupt" flag whenever a KeyboardInterrupt leaves
    code run by a *string* ``exec``/``eval`` (``dataclasses`` builds methods that way while torch and transformers
    import), even when a caller catches it later; under ``-m``, ``Py_RunMain`` then kills the process with SIGINT
    whatever exit code was asked for. Every string ``exec`` clears the flag first, so a harmless one does.
    Only run after an interrupt was handled, so it never hides one that was not."""
    exec("pass", {})
