"""``stemtf serve``."""

from __future__ import annotations

import pathlib
import signal
import sys
import threading
from typing import Optional

import typer

from stemtf.cli.app import app, import_tensorflow_quietly
from stemtf import options
from stemtf.errors import OptionError, StemtfError
from stemtf.interrupts import Interrupted


@app.command("serve")
def serve_command(
    model: str = typer.Argument(options.DEFAULT_MODEL, help="Model for TF Serving's REST API and the page: an exported SavedModel (folder or TF Serving base path), or a model name/directory."),
    models: Optional[str] = typer.Option(None, "--models", help="Comma-separated models the page offers, e.g. 2stems,4stems,5stems (default: MODEL).", show_default=False),
    host: str = typer.Option(options.DEFAULT_HOST, "--host", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(options.DEFAULT_PORT, "--port", "-p", help="TCP port (TF Serving's REST port by default)."),
    name: Optional[str] = typer.Option(None, "--name", help="Model name in URLs (default: the model's name).", show_default=False),
    max_upload_mb: float = typer.Option(options.DEFAULT_MAX_UPLOAD_MB, "--max-upload-mb", help="Largest request body or upload in MB."),
    max_duration: float = typer.Option(options.DEFAULT_MAX_DURATION, "--max-duration", help="Longest audio accepted, in seconds."),
    max_concurrency: int = typer.Option(options.DEFAULT_MAX_CONCURRENCY, "--max-concurrency", help="TF Serving API separations run at the same time."),
    cache_dir: Optional[pathlib.Path] = typer.Option(None, "--cache-dir", help="Folder for the page's uploads and stems (default: ~/.cache/stemtf/web).", show_default=False),
    cache_quota_mb: float = typer.Option(options.DEFAULT_QUOTA_MB, "--cache-quota-mb", help="Most MB of stems kept; the oldest are deleted first."),
    expiry_minutes: float = typer.Option(options.DEFAULT_EXPIRY / 60, "--expiry-minutes", help="Minutes the stems of a job are kept."),
    queue_length: int = typer.Option(options.DEFAULT_MAX_QUEUE, "--queue-length", help="Uploads that may wait; more get 'busy' (503)."),
    workers: int = typer.Option(options.DEFAULT_WORKERS, "--workers", help="Page jobs separated at the same time."),
    read_timeout: float = typer.Option(options.DEFAULT_READ_TIMEOUT, "--read-timeout", help="Seconds an upload may go without a byte arriving; then 408 and the connection is closed."),
    max_connections: int = typer.Option(options.DEFAULT_MAX_CONNECTIONS, "--max-connections", help="Connections served at the same time; one more gets 503."),
    allow_origin: Optional[list[str]] = typer.Option(None, "--allow-origin", help="Another origin whose pages may use this server, e.g. a proxy's https://stems.example.com (repeatable). Requests for other host names or from other sites' pages get 403.", show_default=False),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing, not even the URL."),
) -> None:
    """Serve the web page (upload a song, listen to its stems), its job API, and TF Serving's REST API; prints the URL to open."""
    from stemtf.config import load_model_config
    from stemtf.serve.jobs import check_options
    from stemtf.serve.guard import parse_origin
    from stemtf.serve.served_model import find_savedmodel

    options.check_serving(port=port, max_upload_mb=max_upload_mb, max_duration=max_duration, max_concurrency=max_concurrency,
                          read_timeout=read_timeout, max_connections=max_connections)
    if not expiry_minutes > 0:  # the CLI's own unit: the library's expiry is in seconds
        raise OptionError("expiry_minutes", f"{{option}} must be > 0. Received {expiry_minutes:g}.")
    check_options(max_queue=queue_length, workers=workers, quota_mb=cache_quota_mb, expiry=expiry_minutes * 60, max_duration=max_duration)
    origins = [parse_origin(item) for value in allow_origin or [] for item in value.split(",") if item.strip()]
    page_models = None
    if models is not None:
        page_models = [item.strip() for item in models.split(",") if item.strip()]
        if not page_models:
            raise StemtfError("--models must name at least one model, e.g. --models 2stems,4stems.")
        for item in page_models:
            load_model_config(item)
    if find_savedmodel(model) is None:
        load_model_config(model)  # neither an export nor a model: fail before the TensorFlow import
    if cache_dir is not None and cache_dir.exists() and not cache_dir.is_dir():
        raise StemtfError(f"--cache-dir {str(cache_dir)!r} is a file; give a folder.")

    from stemtf import runtimes

    if find_savedmodel(model) is not None or runtimes.resolve_runtime(options.DEFAULT_RUNTIME) == "keras":
        import_tensorflow_quietly()  # the SavedModel, or Keras models, need it; LiteRT does not
    from stemtf.serve import serve

    # The streams as they are now: a LiteRT conversion in a background thread swaps sys.stdout for
    # /dev/null while it runs (contextlib.redirect_stdout is process-wide), and the console's lines
    # from other threads must not vanish meanwhile.
    console, errors = sys.stdout, sys.stderr

    def status(line: str) -> None:
        if not quiet:
            typer.echo(line, file=errors if line.startswith("Warning:") else console)
        if "to LiteRT" in line:  # a model is converted once, with TensorFlow: import it without its chatter
            import_tensorflow_quietly()

    if threading.current_thread() is threading.main_thread():
        # uvicorn shuts down gracefully on SIGINT/SIGTERM only: a hang-up is turned into a SIGTERM.
        signal.signal(signal.SIGHUP, lambda signum, frame: signal.raise_signal(signal.SIGTERM))
    try:
        serve(model, models=page_models, host=host, port=port, name=name, max_upload_mb=max_upload_mb,
              max_duration=max_duration, max_concurrency=max_concurrency, cache_dir=cache_dir,
              quota_mb=cache_quota_mb, expiry=expiry_minutes * 60, max_queue=queue_length, workers=workers,
              read_timeout=read_timeout, max_connections=max_connections, allow_origins=origins, on_status=status)
    except (KeyboardInterrupt, Interrupted):  # how a server is stopped; uvicorn has already shut down cleanly
        pass
