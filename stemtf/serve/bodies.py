"""Reading a request body with deadlines, so a client that stops sending, or trickles, frees its request.

Two rules, both answered 408 (the caller closes the connection):

- no pause longer than ``read_timeout`` seconds between two pieces of the body;
- after its first ``2 * read_timeout`` seconds, the body must have averaged ``min_rate`` bytes per
  second (a byte every few seconds never pauses long, but would hold its connection for days).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

# The limits on slow clients (the connection's are applied by stemtf.serve.connections, which needs uvicorn).
IDLE_TIMEOUT = 10.0  # seconds a new connection may stay silent before its first request
HEADER_TIMEOUT = 10.0  # seconds from a request head's first byte to its end
MIN_BODY_RATE = 1000.0  # bytes per second a request body must average (after twice the read timeout)

_log = logging.getLogger(__name__)


class BodyClock:
    """The deadlines of one request body; :meth:`receive` its messages through it.

    Args:
        request: The Starlette request whose body is read.
        read_timeout: Longest pause between two pieces, in seconds.
        min_rate: Bytes per second the body must average once ``2 * read_timeout`` seconds have passed
            (0: no rate rule).
    """

    def __init__(self, request, read_timeout: float, min_rate: float = MIN_BODY_RATE) -> None:
        self.request = request
        self.read_timeout = read_timeout
        self.min_rate = min_rate
        self.received = 0
        self._start: float | None = None
        self.problem: str | None = None  # after a None from receive: a sentence for the client

    async def receive(self) -> dict[str, Any] | None:
        """The next ASGI message of the body, or None when a rule is broken (then :attr:`problem` says which).

        A None is logged once (one line, no traceback).
        """
        now = time.monotonic()
        if self._start is None:
            self._start = now
        # Twice the read timeout to start, then it must keep up: received / min_rate after its start.
        grace = 2 * self.read_timeout
        rate_deadline = self._start + max(grace, self.received / self.min_rate) if self.min_rate > 0 else float("inf")
        stalled = now + self.read_timeout <= rate_deadline  # which rule a timeout now breaks
        wait = min(self.read_timeout, rate_deadline - now)
        try:
            if wait <= 0:
                raise asyncio.TimeoutError
            message = await asyncio.wait_for(self.request.receive(), wait)
        except asyncio.TimeoutError:  # TimeoutError from Python 3.11 on; this name works on 3.10 as well
            self.problem = (f"No bytes of the body arrived for {self.read_timeout:g} s; send it without pausing."
                            if stalled else
                            f"The body arrived too slowly ({self.received} bytes in {time.monotonic() - self._start:.0f} s); "
                            f"this server needs at least {self.min_rate:g} bytes per second.")
            self._log(f"sent no bytes of its {{what}} body for {self.read_timeout:g} s" if stalled
                      else f"sent its {{what}} body at less than {self.min_rate:g} bytes/s")
            return None
        self.received += len(message.get("body", b""))
        return message

    def _log(self, template: str) -> None:
        client = self.request.client
        who = f"{client.host}:{client.port}" if client else "A client"
        what = f"{self.request.method} {self.request.url.path}"
        _log.warning("%s %s: answered 408 and closed the connection.", who, template.format(what=what))


async def receive_within(request, seconds: float) -> dict[str, Any] | None:
    """The next ASGI message of a Starlette ``request``'s body, or None when no byte came for ``seconds`` (no rate rule)."""
    return await BodyClock(request, seconds, min_rate=0).receive()


def close_after(response, status: int):
    """``response`` with ``Connection: close`` if ``status`` is 408: the client may still send the rest of its body."""
    if status == 408:  # RFC 9110 15.5.9: the server closes the connection; it is done with that request
        response.headers["Connection"] = "close"
    return response
