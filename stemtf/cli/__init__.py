"""The ``stemtf`` command line. Every command parses, calls one library function and reports.

One module per group of commands (:mod:`~stemtf.cli.separating`, :mod:`~stemtf.cli.live`,
:mod:`~stemtf.cli.training`, :mod:`~stemtf.cli.exporting`) registers them on the app of
:mod:`~stemtf.cli.app`; :func:`main` runs it and turns user errors into one line.

TensorFlow is imported inside the commands that need it, so ``stemtf --help`` is instant.
"""


from __future__ import annotations

import os
import sys

import typer

from stemtf.cli import exporting, live, separating, training  # noqa: F401 (importing registers the commands)
from stemtf.cli.app import app, report_error
from stemtf.errors import OptionError, StemtfError

def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and a non-zero exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's info lines are not for users
    try:
        result = app(args=argv, standalone_mode=False, prog_name="stemtf")
    except OptionError as error:  # the library names the keyword; the CLI user typed the flag
        report_error(error.for_cli())
        return 1
    except StemtfError as error:
        report_error(str(error))
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
    except KeyboardInterrupt:
        report_error("interrupted; no partial output was kept.")
        return 130
    return result if isinstance(result, int) else 0


def entry_point() -> None:
    """Console-script entry point."""
    sys.exit(main())
