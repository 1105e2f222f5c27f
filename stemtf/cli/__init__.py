"""The ``stemtf`` command line. Every command parses, calls one library function and reports.

One module per group of commands (:mod:`~stemtf.cli.separating`, :mod:`~stemtf.cli.live`,
:mod:`~stemtf.cli.training`, :mod:`~stemtf.cli.exporting`, :mod:`~stemtf.cli.serving`) registers them on the app of
:mod:`~stemtf.cli.app`; :func:`main` runs it and turns user errors into one line.

TensorFlow is imported inside the commands that need it, so ``stemtf --help`` is instant.
"""


from __future__ import annotations

import os
import signal
import sys
import threading

import typer

from stemtf.cli import separating, importing, batch, live, training, distilling, exporting, serving  # noqa: F401 (importing registers the commands, in this order)
from stemtf.cli.app import app, report_error, signals
from stemtf.errors import StemtfError
from stemtf.interrupts import STOP_SIGNALS, Interrupted

def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and a non-zero exit code.

    Ctrl-C, SIGTERM and SIGHUP all unwind the command the same way (temporary files deleted, no
    partial output kept) and end with one line saying so and exit code 128 + the signal number.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's info lines are not for users
    previous = {}
    signals.pending, signals.deferred = None, False
    if threading.current_thread() is threading.main_thread():  # handlers can only be set there
        previous = {signum: signal.signal(signum, signals.handle) for signum in STOP_SIGNALS}
    try:
        return _run(argv)
    except (Interrupted, KeyboardInterrupt) as error:
        signum = getattr(error, "signum", signal.SIGINT)
        report_error(f"interrupted ({signal.Signals(signum).name}); no partial output was kept.")
        return 128 + signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run(argv: list[str] | None) -> int:
    try:
        result = app(args=argv, standalone_mode=False, prog_name="stemtf")
    except StemtfError as error:  # the library names the keyword; the CLI user typed the flag
        report_error(error.for_cli())
        return 1
    except typer.TyperException as error:  # usage errors: unknown option, missing argument, bad type
        context = getattr(error, "ctx", None)
        if type(error).__name__ == "NoArgsIsHelpError" and context is not None:
            typer.echo(context.get_help())
            return 2
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        report_error(f"{error.format_message()}{hint}")
        return getattr(error, "exit_code", 2)
    except typer.Abort:
        report_error("interrupted.")
        return 130
    return result if isinstance(result, int) else 0


def entry_point() -> None:
    """Console-script entry point."""
    sys.exit(main())
