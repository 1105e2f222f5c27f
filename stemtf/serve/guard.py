"""Which pages and host names may use the server: the Origin and Host checks against other web sites and DNS rebinding.

A web page the user happens to visit can send "simple" cross-origin requests (a form POST) to
``http://127.0.0.1:8501`` without asking, and with DNS rebinding (its own name resolving to
127.0.0.1) it can even read the answers. So every request is checked:

- ``Host`` must be a name of this server: an IP address (a rebinding needs a domain name),
  ``localhost`` (and ``*.localhost``), the name the server is bound to (``host``), or the host of an
  allowed origin.
- ``Origin``, when a browser sends one, must be the server's own (``scheme://Host``) or an allowed
  origin (``allow_origins``; ``stemtf serve --allow-origin``). Browsers send it on every POST and
  DELETE and on cross-origin reads.
- ``Sec-Fetch-Site: cross-site`` (another site's page fetching, embedding or posting) is refused
  under ``/v1/`` unless its ``Origin`` is allowed: results cannot be embedded by another site.

Refusals are a 403 ``{"error": sentence, "kind": "forbidden"}``.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from stemtf.errors import OptionError

LOOPBACK_NAMES = ("localhost",)


def parse_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case from an origin as a person writes it (``http://box:8501/`` too).

    Raises:
        OptionError: not an ``http``/``https`` origin (the message names the ``allow_origins`` keyword).
    """
    text = origin.strip()
    parts = urlsplit(text if "://" in text else f"http://{text}")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise OptionError("allow_origins", f"{{option}} takes origins like https://stems.example.com or http://studio.lan:8501. Received {origin!r}.")
    try:
        port = parts.port
    except ValueError:
        raise OptionError("allow_origins", f"{{option}} has a bad port in {origin!r}.") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


class OriginGuard:
    """ASGI middleware refusing requests whose ``Host`` or ``Origin`` is not this server's (see the module).

    Args:
        app: The ASGI app to guard.
        host: The address the server is bound to (a name there is allowed as a Host).
        allowed_origins: More origins allowed to use the server (a reverse proxy's public name, another page).
    """

    def __init__(self, app, *, host: str | None = None, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.origins = {parse_origin(origin) for origin in allowed_origins}
        self.hosts = set(LOOPBACK_NAMES)
        self.hosts.update(urlsplit(origin).hostname for origin in self.origins)
        if host in ("0.0.0.0", "::", ""):  # every interface: this machine's name too
            name = socket.gethostname().lower()
            self.hosts.update({name, f"{name}.local"})
        elif host:
            self.hosts.add(host.strip("[]").lower())

    def host_allowed(self, host: str) -> bool:
        """Whether a ``Host`` header's name (``name[:port]``) is one of this server's."""
        name = urlsplit(f"//{host}").hostname if host else None
        if name is None:
            return False
        try:
            ipaddress.ip_address(name)
            return True  # an address is never rebound: only names are
        except ValueError:
            pass
        return name in self.hosts or name.endswith(".localhost")

    def refusal(self, scope) -> str | None:
        """Why a request is refused, or None."""
        headers = {}
        for key, value in scope.get("headers", []):
            headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
        host = headers.get("host")
        if host is not None and not self.host_allowed(host):
            return (f"This server does not answer requests for the host {host!r} (a web site trying to reach it "
                    "through DNS rebinding?); open it by its address, or restart it with that name among its "
                    "allowed origins.")
        origin = headers.get("origin")
        if origin is not None:
            own = f"{scope.get('scheme', 'http')}://{host}".lower() if host else None
            try:
                allowed = origin.lower() == own or parse_origin(origin) in self.origins
            except OptionError:
                allowed = False
            if not allowed:
                return (f"This server does not take requests from pages of other web sites (Origin {origin!r}); "
                        "open its own page, or restart the server with that site among its allowed origins.")
        elif headers.get("sec-fetch-site") == "cross-site" and scope.get("path", "").startswith("/v1/"):
            return "This server does not take requests from pages of other web sites; open its own page."
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        reason = self.refusal(scope)
        if reason is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": reason, "kind": "forbidden"}).encode()
        await send({"type": "http.response.start", "status": 403, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # the body, if any, is never read
        ]})
        await send({"type": "http.response.body", "body": body})
