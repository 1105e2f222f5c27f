"""Stop signals for the command line: Ctrl-C, SIGTERM and SIGHUP unwind a command the same way.

Only the CLI installs the handler (library code never touches signals); it lives here so that
``cli.py`` stays a list of commands.
"""

from __future__ import annotations

import contextlib
import signal


class Interrupted(BaseException):
    """Ctrl-C, SIGTERM or SIGHUP: raised from the signal handler so that every ``finally`` runs.

    A BaseException that is not a KeyboardInterrupt: no ``except Exception`` swallows it, and Click,
    which turns KeyboardInterrupt into a bare Abort (printing an empty line), lets it through.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Signals:
    """Where a stop signal turns into :class:`Interrupted`.

    An exception raised from a signal handler surfaces at whatever bytecode runs next, and inside
    TensorFlow's C++ bindings that becomes a SystemError or is lost. So while a command is inside a
    loop that calls back between chunks or steps (``deferred``), the handler only records the
    signal and :meth:`check`, called from those callbacks, raises it at a safe point. Elsewhere, or
    on a second signal, it raises at once.
    """

    def __init__(self) -> None:
        self.pending: int | None = None
        self.deferred = False

    def handle(self, signum: int, frame) -> None:
        """The signal handler: record the signal while deferred, else raise :class:`Interrupted`."""
        if self.deferred and self.pending is None:
            self.pending = signum
            return
        raise Interrupted(signum)

    def check(self) -> None:
        """Raise :class:`Interrupted` for a recorded signal; call it between chunks or steps."""
        if self.pending is not None:
            signum, self.pending = self.pending, None
            raise Interrupted(signum)

    @contextlib.contextmanager
    def at_callbacks(self):
        """Defer stop signals to :meth:`check` within the block."""
        self.deferred = True
        try:
            yield
        finally:
            self.deferred = False
            self.check()
