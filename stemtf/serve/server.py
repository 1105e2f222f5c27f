"""Running the app under uvicorn on a socket, exporting a stemtf model to a temporary SavedModel first if needed."""

import asyncio
import contextlib
import os
import pathlib
import socket
import tempfile
from collections.abc import Callable

from stemtf import options
from stemtf.errors import StemtfError
from stemtf.serve.app import DEFAULT_MAX_UPLOAD_MB, create_app
from stemtf.serve.served_model import DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_DURATION, ServedModel, find_savedmodel

DEFAULT_HOST = options.DEFAULT_HOST
DEFAULT_PORT = options.DEFAULT_PORT


@contextlib.contextmanager
def _savedmodel_for(model: str | os.PathLike, on_status: Callable[[str], None] | None):
    """A SavedModel path for ``model``: itself if exported, else a temporary export of the stemtf model."""
    if find_savedmodel(model) is not None:
        yield pathlib.Path(model)
        return
    from stemtf.export import export_savedmodel
    from stemtf.model import load_model

    network, config = load_model(model)
    with tempfile.TemporaryDirectory(prefix="stemtf-serve-") as work:
        if on_status is not None:
            on_status(f"exporting {config.name!r} to a temporary SavedModel")
        path = export_savedmodel(network, config, pathlib.Path(work) / config.name / "1")
        yield path


def serve(
    model: str | os.PathLike,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    name: str | None = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_duration: float = DEFAULT_MAX_DURATION,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    on_status: Callable[[str], None] | None = None,
) -> None:
    """Serve ``model`` until interrupted; what ``stemtf serve`` runs.

    Args:
        model: An exported SavedModel (directory or TF Serving base path), or a stemtf model name or
            directory (exported to a temporary SavedModel first).
        host: Interface to bind; loopback by default (use 0.0.0.0 deliberately, behind a proxy).
        port: TCP port.
        name: Model name in URLs (default: the model's name).
        max_upload_mb: Largest request body, in MB.
        max_duration: Longest audio accepted, in seconds.
        max_concurrency: Inferences run at the same time.
        on_status: Called with progress lines (export, listening address).
    """
    options.check_serving(port=port, max_upload_mb=max_upload_mb, max_duration=max_duration, max_concurrency=max_concurrency)
    try:
        import uvicorn
    except ImportError:
        raise StemtfError('Serving needs FastAPI and uvicorn: pip install "stemtf[serve]".') from None
    with _savedmodel_for(model, on_status) as path:
        served = ServedModel(path, name=name, max_duration=max_duration, max_concurrency=max_concurrency)
        app = create_app(served, max_upload_mb=max_upload_mb)
        sock = bind_socket(host, port)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        if on_status is not None:
            on_status(f"serving {served.name!r} (version {served.version}) on http://{host}:{port}/v1/models/{served.name}")
        try:
            asyncio.run(server.serve(sockets=[sock]))
        finally:
            sock.close()


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one); a clear error if it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise StemtfError(f"Cannot listen on {host}:{port}: {error.strerror or error}.") from error
    sock.set_inheritable(True)
    return sock
