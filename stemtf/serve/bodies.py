"""Reading a request body with a deadline between its chunks, so a client that stops sending frees its request."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

_log = logging.getLogger(__name__)


async def receive_within(request, seconds: float) -> dict[str, Any] | None:
    """The next ASGI message of a Starlette ``request``'s body, or None when no byte came for ``seconds``.

    A None is logged once (one line, no traceback); the caller answers 408, which closes the connection.
    """
    try:
        return await asyncio.wait_for(request.receive(), seconds)
    except asyncio.TimeoutError:  # TimeoutError from Python 3.11 on; this name works on 3.10 as well
        client = request.client
        who = f"{client.host}:{client.port}" if client else "A client"
        _log.warning("%s sent no bytes of its %s %s body for %g s: answered 408 and closed the connection.",
                     who, request.method, request.url.path, seconds)
        return None


def close_after(response, status: int):
    """``response`` with ``Connection: close`` if ``status`` is 408: the client may still send the rest of its body."""
    if status == 408:  # RFC 9110 15.5.9: the server closes the connection; it is done with that request
        response.headers["Connection"] = "close"
    return response
