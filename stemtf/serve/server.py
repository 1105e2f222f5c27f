"""Running the app under uvicorn on a socket, with the web page's job manager and one engine per model."""

import asyncio
import contextlib
import ipaddress
import os
import pathlib
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Sequence

from stemtf import options
from stemtf.config import load_model_config
from stemtf.errors import DependencyError, StemtfError
from stemtf.serve.app import DEFAULT_MAX_UPLOAD_MB, DEFAULT_READ_TIMEOUT, check_dependencies, create_app
from stemtf.serve.bodies import HEADER_TIMEOUT, IDLE_TIMEOUT, MIN_BODY_RATE
from stemtf.serve.engine_model import EngineModel
from stemtf.serve.guard import parse_origin
from stemtf.serve.jobs import DEFAULT_EXPIRY, DEFAULT_MAX_QUEUE, DEFAULT_QUOTA_MB, DEFAULT_WORKERS, JobManager, check_options
from stemtf.serve.jobs.runner import offered_model
from stemtf.serve.served_model import DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_DURATION, ServedModel, find_savedmodel
from stemtf.serve.web import DeviceFiles

DEFAULT_HOST = options.DEFAULT_HOST
DEFAULT_PORT = options.DEFAULT_PORT
DEFAULT_MAX_CONNECTIONS = options.DEFAULT_MAX_CONNECTIONS
# uvicorn's own default: an idle keep-alive connection is closed after this long, freeing its place
# under the connection cap (a longer one lets idle browsers fill the cap).
KEEP_ALIVE_TIMEOUT = 5


def _page_name(source: str | os.PathLike) -> str:
    """The name a model is offered under: a shipped model's name, or a model directory's config name."""
    if pathlib.Path(source).is_dir():
        config, _ = load_model_config(source)
        return config.name
    return str(source)


def serve(
    model: str | os.PathLike | None = options.DEFAULT_MODEL,
    *,
    models: Sequence[str] | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    name: str | None = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_duration: float = DEFAULT_MAX_DURATION,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    cache_dir: str | os.PathLike | None = None,
    quota_mb: float = DEFAULT_QUOTA_MB,
    expiry: float = DEFAULT_EXPIRY,
    max_queue: int = DEFAULT_MAX_QUEUE,
    workers: int = DEFAULT_WORKERS,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    allow_origins: Sequence[str] = (),
    on_status: Callable[[str], None] | None = None,
) -> None:
    """Serve ``model`` and the web page until interrupted; what ``stemtf serve`` runs.

    Args:
        model: For TF Serving's REST API and ``/v1/separate``: an exported SavedModel (directory or
            TF Serving base path, run by TensorFlow), or a stemtf model name or directory, served by
            the same ``Separator`` as the page's jobs (one engine per model, the same signatures;
            see :class:`~stemtf.serve.engine_model.EngineModel`); None for the page alone.
        models: Model names or directories the page offers (default: ``model`` when it is a stemtf
            model; none when it is an export).
        host: Interface to bind; loopback by default (use 0.0.0.0 deliberately, behind a proxy).
        port: TCP port.
        name: Model name in URLs (default: the model's name).
        max_upload_mb: Largest request body, in MB.
        max_duration: Longest audio accepted, in seconds.
        max_concurrency: ``:predict`` and ``/v1/separate`` inferences run at the same time.
        cache_dir: Folder of the page's uploads and results (default: :func:`default_cache_dir`).
        quota_mb: Most megabytes of results kept; the oldest are deleted first.
        expiry: Seconds the results of a job are kept.
        max_queue: Jobs that may wait; more are refused with 503 and Retry-After.
        workers: Jobs separated at the same time.
        read_timeout: Seconds a request body or upload may go without a byte arriving; then 408.
        max_connections: Connections open at the same time; one more closes an idle or trickling
            one, or is answered 503 when all are busy.
        allow_origins: Origins (``https://stems.example.com``) besides the server's own whose pages
            may use it, e.g. a reverse proxy's public name; requests naming another host or coming
            from another site's page are refused with 403 (see :mod:`stemtf.serve.guard`).
        on_status: Called with each line for the console: what is loading, a warning when the
            address is reachable from other machines, the URL to open, and one line per job.
    """
    status = _console(on_status)
    uvicorn = check_serve_options(port=port, max_upload_mb=max_upload_mb, max_duration=max_duration,
                                  max_concurrency=max_concurrency, read_timeout=read_timeout, max_connections=max_connections,
                                  max_queue=max_queue, workers=workers, quota_mb=quota_mb, expiry=expiry)
    allow_origins = [parse_origin(origin) for origin in allow_origins]
    exported = model is not None and find_savedmodel(model) is not None
    if models is None:
        models = [] if model is None or exported else [str(model)]
    offered = page_models(models)
    remove_stale_temporary_folders()
    with contextlib.ExitStack() as stack:
        # Bound first, so a taken port fails at once; listening only once the model is loaded, so a
        # client that connects is answered at once, never left waiting on a load.
        sock = stack.enter_context(contextlib.closing(bind_socket(host, port, listen=False)))
        jobs = stack.enter_context(JobManager(
            offered, cache_dir or default_cache_dir(), max_queue=max_queue, workers=workers,
            quota_mb=quota_mb, expiry=expiry, max_duration=max_duration, preload=True, on_status=status,
        ))
        served = None if model is None else rest_model(model, exported=exported, jobs=jobs, name=name, max_duration=max_duration,
                                                       max_concurrency=max_concurrency, on_status=status)
        device = DeviceFiles()
        if offered:  # the page's models, also as files for separating in the browser (built once, cached)
            device.build(list(offered.values()), max_duration=max_duration, on_status=status)
            stack.callback(device.stop)
        app = create_app(served, max_upload_mb=max_upload_mb, read_timeout=read_timeout, jobs=jobs,
                         host=host, allowed_origins=allow_origins, device=device)
        run_server(uvicorn.Server(uvicorn_config(app, max_connections=max_connections)), sock, host=host, port=port,
                   on_status=status)


def _console(on_status: Callable[[str], None] | None) -> Callable[[str], None]:
    """``on_status`` for lines that start with a capital (library lines such as "converting ..." start lower-case)."""
    def status(line: str) -> None:
        if on_status is not None:
            on_status(line[:1].upper() + line[1:])

    return status


def check_serve_options(*, max_queue: int, workers: int, quota_mb: float, expiry: float, **limits):
    """Fail with one line unless :func:`serve`'s options are usable and its extra is installed; returns ``uvicorn``.

    Checked before any model loads, so a bad option or a missing extra is one line at once.
    """
    options.check_serving(**limits)
    try:
        import uvicorn
    except ImportError:
        raise DependencyError("stemtf serve", "uvicorn", "serve") from None
    check_dependencies()
    check_options(max_queue=max_queue, workers=workers, quota_mb=quota_mb, expiry=expiry, max_duration=limits["max_duration"])
    return uvicorn


def page_models(models: Sequence[str | os.PathLike]) -> dict[str, str | os.PathLike]:
    """The page's models (names or directories) by the name they are offered under; the first of a name wins."""
    offered = {}
    for source in models:
        offered.setdefault(_page_name(source), source)
    return offered


def rest_model(model: str | os.PathLike, *, exported: bool, jobs: JobManager, name: str | None, max_duration: float,
               max_concurrency: int, on_status: Callable[[str], None]) -> ServedModel | EngineModel:
    """The model of the REST API, loaded now: a SavedModel (``exported``), or the engine of a stemtf model.

    One engine per model: a stemtf model the page offers too is served by the page's ``Separator``
    (loaded now, so the URL printed once the server listens answers at once), never a second copy.
    """
    if exported:
        on_status(f"Loading the SavedModel {str(model)!r}...")
        return ServedModel(model, name=name, max_duration=max_duration, max_concurrency=max_concurrency)
    key = _page_name(model)
    entry = jobs.offered(key) if key in {offered["name"] for offered in jobs.models()} else offered_model(model, on_status)
    entry.load()
    return EngineModel(entry, name=name or key, max_duration=max_duration, max_concurrency=max_concurrency)


def run_server(server, sock: socket.socket, *, host: str, port: int, on_status: Callable[[str], None]) -> None:
    """Listen on the bound ``sock``, print where, and run the ``uvicorn.Server`` until it is stopped."""
    try:
        sock.listen(128)
    except OSError as error:  # another server took the port while this one loaded
        raise StemtfError(f"Cannot listen on {host}:{port}: {error.strerror or error}.") from None
    for line in address_lines(host, sock.getsockname()[1]):
        on_status(line)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:  # uvicorn has finished the requests in flight; a stop signal may surface here
        on_status("Stopped.")


def uvicorn_config(
    app,
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    idle_timeout: float = IDLE_TIMEOUT,
    header_timeout: float = HEADER_TIMEOUT,
    min_body_rate: float = MIN_BODY_RATE,
):
    """The ``uvicorn.Config`` that :func:`serve` runs ``app`` with: quiet, capped, short keep-alive, deadlines.

    Args:
        app: The ASGI app (see :func:`~stemtf.serve.app.create_app`).
        max_connections: Connections open at the same time; one more closes the idlest or slowest
            of them, or, when all are busy, is answered 503 and closed (see :mod:`stemtf.serve.connections`).
        idle_timeout: Seconds a connection may stay silent before a request; then it is closed.
        header_timeout: Seconds a request head may take from its first byte; then 408 and closed.
        min_body_rate: Bytes per second under which a body's connection may be closed to make room.
    """
    import uvicorn

    from stemtf.serve.connections import guarded_protocol

    protocol = guarded_protocol(max_connections=max_connections, idle_timeout=idle_timeout,
                                header_timeout=header_timeout, min_body_rate=min_body_rate)
    # uvicorn counts the connection that asks too (it refuses when open connections >= the limit),
    # so a limit of N + 1 serves N.
    return uvicorn.Config(app, http=protocol, log_level="warning", access_log=False,
                          limit_concurrency=max_connections + 1, timeout_keep_alive=KEEP_ALIVE_TIMEOUT)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name to bind) is reachable from this machine only."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost" or host.lower().endswith(".localhost")


def address_lines(host: str, port: int) -> list[str]:
    """The console's lines about where the server listens: a warning if other machines can reach it, then the URL to open.

    The URL is one that works from where it is read: for a wildcard address (``0.0.0.0``, ``::``)
    this machine's address on its network, for a loopback address the loopback URL.
    """
    lines = []
    if host in ("0.0.0.0", "::", ""):
        shown = _network_address() or socket.gethostname()
    else:
        shown = host
    shown = f"[{shown}]" if ":" in shown else shown
    if not is_loopback(host):
        lines.append(f"Warning: listening on {host or '*'}:{port}, reachable from other machines. This server has no "
                     "password: anyone who can reach it can upload songs and download their stems. Keep it on a "
                     "trusted network or behind a proxy that checks who comes in.")
    lines.append(f"Open http://{shown}:{port}/ in a browser. Ctrl-C to stop.")
    return lines


def _network_address() -> str | None:
    """This machine's address on its network (the one its default route uses), or None; sends nothing."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: a UDP connect only picks the route
        address = probe.getsockname()[0]
        if not ipaddress.ip_address(address).is_loopback and address != "0.0.0.0":
            return address
    return None


def remove_stale_temporary_folders(temp_dir: str | os.PathLike | None = None) -> list[pathlib.Path]:
    """Delete the ``stemtf-serve-PID-*`` folders of servers that are gone (killed with -9); returns them.

    A request's folder is removed when the request ends, however it ends; only a process killed
    outright leaves one behind, and the next server removes it. Folders of running servers stay.
    """
    removed = []
    for path in pathlib.Path(temp_dir or tempfile.gettempdir()).glob("stemtf-serve-*"):
        found = re.match(r"stemtf-serve-(\d+)-", path.name)
        if not found or not path.is_dir() or int(found[1]) == os.getpid():
            continue
        try:
            os.kill(int(found[1]), 0)
            continue  # that server still runs
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        except (PermissionError, OverflowError):
            continue  # another user's process, or not a pid
    return removed


def default_cache_dir() -> pathlib.Path:
    """``$XDG_CACHE_HOME/stemtf/web`` (``~/.cache/stemtf/web``): where the page's results are kept."""
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "stemtf" / "web"


def bind_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one), listening unless ``listen`` is False; a clear error if it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        if listen:
            sock.listen(128)
    except OSError as error:
        sock.close()
        raise StemtfError(f"Cannot listen on {host}:{port}: {error.strerror or error}.") from error
    sock.set_inheritable(True)
    return sock
