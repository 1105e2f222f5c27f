"""Connections that send nothing, trickle their headers or their body: deadlines, and room made for other clients.

uvicorn closes an idle connection only after a response (keep-alive) and counts every open
connection against its cap, so 64 sockets that never send a request (or send a header line every
few seconds) used to lock every other client out with 503. This HTTP protocol adds:

- an idle limit: a connection that sends no byte of a request for ``idle_timeout`` seconds after
  it opens (or after its last response) is closed;
- a header deadline: a request head must be complete ``header_timeout`` seconds after its first
  byte, else 408 and the connection is closed (a byte now and then does not reset it);
- room for others: when one more connection than ``max_connections`` is open, the one that is
  worth least is closed to let the new one in: first a connection waiting for a request head (the
  one silent longest), then a request body arriving slower than ``min_body_rate`` (the slowest).
  Only when every connection is busy does the new one get uvicorn's 503.

The body's own rules (no pause longer than the read timeout, at least ``min_body_rate`` on
average) are applied where the body is read, by :mod:`stemtf.serve.bodies`, which answers 408.

A connection closed while its client may still be sending (a 408 for a slow head or body) lingers:
the answer is sent and the write side shut down (FIN), and what the client still sends is read and
dropped for ``LINGER`` seconds before the socket closes. Closing at once with unread bytes makes the
kernel send a reset, which can destroy the 408 before the client reads it.
"""

from __future__ import annotations

import json
import logging
import time

from uvicorn.protocols.http.h11_impl import H11Protocol

from stemtf.serve.bodies import HEADER_TIMEOUT, IDLE_TIMEOUT, MIN_BODY_RATE

BODY_GRACE = 1.0  # seconds a body is given before its rate counts for making room
LINGER = 2.0  # seconds a connection closed mid-request still reads (and drops) what its client sends

_log = logging.getLogger(__name__)


class _LingeringTransport:
    """An asyncio transport whose ``close`` lingers while ``protocol`` says its client may still be sending."""

    def __init__(self, transport, protocol: GuardedProtocol) -> None:
        self._transport, self._protocol, self._lingering = transport, protocol, False

    def __getattr__(self, name: str):
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._lingering or self._transport.is_closing()

    def close(self) -> None:
        transport = self._transport
        if self._lingering or transport.is_closing():
            return
        if not self._protocol._client_may_send() or not transport.can_write_eof():
            transport.close()
            return
        self._lingering = True
        transport.write_eof()  # the answer goes out, then FIN; reading goes on
        transport.resume_reading()
        self._protocol.loop.call_later(LINGER, transport.close)

    def close_now(self) -> None:
        self._lingering = True
        self._transport.close()


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with the deadlines and the room-making of this module; see :func:`guarded_protocol`."""

    idle_timeout = IDLE_TIMEOUT
    header_timeout = HEADER_TIMEOUT
    min_body_rate = MIN_BODY_RATE
    max_connections = 64

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._phase = "head"  # "head": waiting for a request head; "body": receiving a body; "busy": answering
        self._timer = None
        self._head_bytes = 0
        self._body_bytes = 0
        self._body_start = 0.0
        self._last_byte = time.monotonic()
        self._seen_cycle = None

    # What uvicorn calls.

    def connection_made(self, transport) -> None:
        super().connection_made(_LingeringTransport(transport, self))
        self._wait_for_head()
        self._make_room()

    def connection_lost(self, exc) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # lingering after an answer: the rest of the request is dropped
        self._last_byte = time.monotonic()
        if self._phase == "head":
            if self._head_bytes == 0:  # the head started: it has header_timeout to end, whatever trickles in
                self._arm(self.header_timeout, self._head_too_slow)
            self._head_bytes += len(data)
        else:
            self._body_bytes += len(data)
        super().data_received(data)
        self._follow_cycle()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if not self._follow_cycle():  # no pipelined request: wait for the next head
            self._wait_for_head()

    # The state of the connection.

    def _client_may_send(self) -> bool:
        """True while a request head or body is only partly received: closing now would lose the answer."""
        return (self._phase == "head" and self._head_bytes > 0) or (
            self._phase == "body" and self.cycle is not None and self.cycle.more_body)

    def _follow_cycle(self) -> bool:
        """Update the phase after uvicorn parsed data; True if a new request head arrived."""
        cycle = self.cycle
        new = cycle is not None and cycle is not self._seen_cycle
        if new:
            self._seen_cycle = cycle
            self._cancel_timer()
            self._phase = "body"
            self._body_start, self._body_bytes = time.monotonic(), 0
        if self._phase == "body" and cycle is not None and not cycle.more_body:
            self._phase = "busy"
        return new

    def _wait_for_head(self) -> None:
        self._phase, self._head_bytes = "head", 0
        self._arm(self.idle_timeout, self._idle_too_long)

    def _arm(self, seconds: float, handler) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(seconds, handler)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle_too_long(self) -> None:
        self._timer = None
        if self._phase == "head" and self._head_bytes == 0 and not self.transport.is_closing():
            self.transport.close()  # a browser's spare connection, or nobody: nothing to answer

    def _head_too_slow(self) -> None:
        self._timer = None
        if self._phase != "head" or self.transport.is_closing():
            return
        _log.info("%s sent only %d bytes of a request head in %g s: answered 408 and closed the connection.",
                  self._who(), self._head_bytes, self.header_timeout)
        body = json.dumps({"error": f"The request's headers did not arrive within {self.header_timeout:g} s.",
                           "kind": "timeout"}).encode()
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(body), body))
        self.transport.close()

    def _who(self) -> str:
        return "%s:%d" % self.client if self.client else "A client"

    # Making room.

    def _worth(self, now: float) -> tuple[int, float] | None:
        """How much this connection is worth keeping when room is needed (lower goes first); None: keep it."""
        if self.transport is None or self.transport.is_closing():
            return None
        if self._phase == "head":
            return (0, self._last_byte)  # the one silent longest goes first
        if self._phase == "body":
            elapsed = now - self._body_start
            rate = self._body_bytes / max(elapsed, BODY_GRACE)
            if elapsed >= BODY_GRACE and rate < self.min_body_rate:
                return (1, rate)
        return None

    def _make_room(self) -> None:
        if len(self.connections) <= self.max_connections:
            return
        now = time.monotonic()
        ranked = [(worth, id(connection), connection) for connection in list(self.connections)
                  if connection is not self and isinstance(connection, GuardedProtocol)
                  and (worth := connection._worth(now)) is not None]
        if not ranked:
            return  # every connection is busy: the new one gets uvicorn's 503
        _, _, victim = min(ranked, key=lambda item: item[:2])
        _log.info("%s closed to make room for a new connection (%s).", victim._who(),
                  "waiting for a request" if victim._phase == "head" else "its body arrived too slowly")
        victim.transport.close_now()


def guarded_protocol(
    *,
    max_connections: int,
    idle_timeout: float = IDLE_TIMEOUT,
    header_timeout: float = HEADER_TIMEOUT,
    min_body_rate: float = MIN_BODY_RATE,
) -> type[GuardedProtocol]:
    """A :class:`GuardedProtocol` class with these limits, for ``uvicorn.Config(http=...)``."""
    return type("GuardedProtocol", (GuardedProtocol,), {
        "max_connections": max_connections, "idle_timeout": idle_timeout, "header_timeout": header_timeout,
        "min_body_rate": min_body_rate,
    })
