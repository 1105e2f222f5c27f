"""A real stemtf server with the web page and job API, on a free 127.0.0.1 port in a thread (used by the web tests)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

from stemtf import serve
from stemtf.serve.jobs import JobManager


@contextlib.contextmanager
def running_server(
    models, cache_dir, *, served_model=None, max_upload_mb: float = 5.0, read_timeout: float = serve.DEFAULT_READ_TIMEOUT,
    max_connections: int = serve.DEFAULT_MAX_CONNECTIONS, app_options=None, connection_options=None, **options,
):
    """Start the app under uvicorn with a started :class:`JobManager`; yields ``(base_url, manager)``.

    Args:
        models: ``{name: Separator or model name}`` offered by the page.
        cache_dir: The job manager's cache folder.
        served_model: A ``ServedModel`` for the TF Serving routes, or None.
        max_upload_mb: Largest upload.
        read_timeout: Seconds an upload may stall before a 408.
        max_connections: Connections served at once (see :func:`serving`).
        app_options: More :func:`~stemtf.serve.create_app` keyword arguments (``allowed_origins``, ...).
        connection_options: More :func:`~stemtf.serve.uvicorn_config` keyword arguments (``idle_timeout``, ...).
        **options: More :class:`JobManager` keyword arguments (``max_queue``, ``expiry``, ...).
    """
    with JobManager(models, cache_dir, **options) as manager:
        app = serve.create_app(served_model, max_upload_mb=max_upload_mb, read_timeout=read_timeout, jobs=manager,
                               **(app_options or {}))
        with serving(app, max_connections=max_connections, **(connection_options or {})) as url:
            yield url, manager


@contextlib.contextmanager
def serving(app, *, max_connections: int = serve.DEFAULT_MAX_CONNECTIONS, **connection_options):
    """Run ``app`` under uvicorn as ``stemtf serve`` does, on a free 127.0.0.1 port in a thread; yields its base URL."""
    import uvicorn

    sock = serve.bind_socket("127.0.0.1", 0)
    instance = uvicorn.Server(serve.uvicorn_config(app, max_connections=max_connections, **connection_options))
    thread = threading.Thread(target=lambda: asyncio.run(instance.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        instance.should_exit = True
        thread.join(timeout=10)
        sock.close()
