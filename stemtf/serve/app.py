"""The FastAPI app: TF Serving's model status, metadata and ``:predict`` routes, ``POST /v1/separate``, and the web page's job API."""

import importlib.util
import json
import re
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stemtf import options
from stemtf.errors import DependencyError
from stemtf.serve.bodies import MIN_BODY_RATE, BodyClock, close_after
from stemtf.serve.guard import OriginGuard
from stemtf.serve.handlers import predict, separate_upload
from stemtf.serve.groups import GroupsProblem, check_fields, parse_fields
from stemtf.serve.names import content_disposition, download_stem
from stemtf.serve.protocol import RequestError
from stemtf.serve.zipping import iter_file, iter_zip

if TYPE_CHECKING:
    from stemtf.serve.engine_model import EngineModel
    from stemtf.serve.jobs import JobManager
    from stemtf.serve.served_model import ServedModel

DEFAULT_MAX_UPLOAD_MB = options.DEFAULT_MAX_UPLOAD_MB
DEFAULT_READ_TIMEOUT = options.DEFAULT_READ_TIMEOUT
_MODEL_PATH = re.compile(r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?P<rest>/metadata|:predict)?$")


def check_dependencies() -> None:
    """Fail with one line naming the ``serve`` extra unless FastAPI and python-multipart are installed."""
    if importlib.util.find_spec("fastapi") is None:
        raise DependencyError("stemtf serve", "FastAPI", "serve")
    if importlib.util.find_spec("python_multipart") is None and importlib.util.find_spec("multipart") is None:
        # Starlette asserts on the first upload without it: say so now, not as a 500 later.
        raise DependencyError("stemtf serve (uploads)", "python-multipart", "serve")


def create_app(
    model: "ServedModel | EngineModel | None",
    *,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    jobs: "JobManager | None" = None,
    host: str | None = None,
    allowed_origins: Sequence[str] = (),
    min_body_rate: float = MIN_BODY_RATE,
    device=None,
):
    """The FastAPI app serving ``model`` over TF Serving's REST API, and the web page if ``jobs`` is given.

    Args:
        model: The model for ``/v1/models/...`` and ``/v1/separate``: a loaded SavedModel
            (:class:`~stemtf.serve.ServedModel`) or the page's engine
            (:class:`~stemtf.serve.EngineModel`); None to serve only the page and the job API
            (those routes then answer 404).
        max_upload_mb: Largest request body or upload, in MB.
        read_timeout: Seconds a request body or upload may go without a byte arriving; then 408.
        jobs: A started :class:`~stemtf.serve.jobs.JobManager`: adds ``/``, ``/v1/separators`` and ``/v1/jobs``.
        host: The address the server is bound to; a name there is accepted as a ``Host`` (see
            :mod:`stemtf.serve.guard`: every request must name this server and come from its own page).
        allowed_origins: Other origins (``https://stems.example.com``) whose pages may use the server.
        min_body_rate: Bytes per second a request body must average after ``2 * read_timeout`` s; then 408.
        device: The page's on-device files (a :class:`~stemtf.serve.web.DeviceFiles`), with ``jobs``.
    """
    try:
        from fastapi import FastAPI
    except ImportError:
        raise DependencyError("stemtf serve", "FastAPI", "serve") from None
    check_dependencies()

    app = FastAPI(title="stemtf", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(OriginGuard, host=host, allowed_origins=allowed_origins)
    add_error_handlers(app)
    bodies = RequestBodies(max_upload_mb=max_upload_mb, read_timeout=read_timeout, min_body_rate=min_body_rate)
    add_model_routes(app, model, bodies)
    add_separate_route(app, model, bodies)
    if jobs is not None:
        from stemtf.serve.web import add_job_routes

        add_job_routes(app, jobs, max_upload_mb=max_upload_mb, read_timeout=read_timeout, min_body_rate=min_body_rate,
                       json_response=json_response, device=device)
    return app


def json_response(data: Any, status: int = 200):
    """A compact JSON ``Response`` (the app's encoder: every answer and error is one)."""
    from fastapi import Response

    return Response(json.dumps(data, separators=(",", ":")), status_code=status, media_type="application/json")


def add_error_handlers(app) -> None:
    """Answer every error as JSON ``{"error": sentence}``: a request's own (4xx) and, without details, a bug (500)."""
    from fastapi import Response
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    @app.exception_handler(RequestError)
    async def _request_error(request, error: RequestError):
        return close_after(json_response({"error": str(error)}, error.status), error.status)

    @app.exception_handler(HTTPException)
    async def _http_error(request, error: HTTPException):
        return json_response({"error": str(error.detail)}, error.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, error):
        details = "; ".join(str(item.get("msg", "")) for item in error.errors()[:3])
        return json_response({"error": f"Invalid request: {details}."}, 400)

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request, error):
        # The client hung up mid-upload: nobody reads an answer, and it is not a server error to log.
        return Response(status_code=400)

    @app.exception_handler(Exception)
    async def _internal_error(request, error: Exception):
        return json_response({"error": f"internal error: {type(error).__name__}"}, 500)


class RequestBodies:
    """How the REST routes read a request body: at most ``max_upload_mb``, with the deadlines of :class:`BodyClock`.

    Args:
        max_upload_mb: Largest body, in MB; refused from ``Content-Length`` before reading, or
            while reading a body sent without one (413).
        read_timeout: Seconds a body may go without a byte arriving; then 408.
        min_body_rate: Bytes per second a body must average after ``2 * read_timeout`` s; then 408.
    """

    def __init__(self, *, max_upload_mb: float, read_timeout: float, min_body_rate: float) -> None:
        self.max_upload_mb = max_upload_mb
        self.max_bytes = int(max_upload_mb * 1e6)
        self.read_timeout = read_timeout
        self.min_body_rate = min_body_rate

    def check_declared(self, request) -> None:
        """Refuse (413) a body whose ``Content-Length`` is over the limit, before a byte of it is read."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise RequestError(f"The body is {int(declared) / 1e6:.1f} MB; this server accepts at most {self.max_upload_mb:g} MB.", 413)

    def reader(self, request):
        """A Starlette request reading ``request``'s body with the deadlines and the size limit."""
        from starlette.requests import Request

        clock = BodyClock(request, self.read_timeout, self.min_body_rate)

        async def receive() -> dict[str, Any]:
            message = await clock.receive()
            if message is None:
                raise RequestError(clock.problem, 408)
            if clock.received > self.max_bytes:
                raise RequestError(f"The body is larger than this server's limit of {self.max_upload_mb:g} MB.", 413)
            return message

        return Request(request.scope, receive)

    async def spool(self, request, *, memory: int = 0):
        """The body in an unlinked temporary file (its first ``memory`` bytes in memory), written as it arrives.

        Requests that wait for a slot hold their bodies on disk, not in memory; an unlinked file
        leaves nothing behind, whatever happens to the process.
        """
        self.check_declared(request)
        spool = tempfile.SpooledTemporaryFile(max_size=memory, prefix="stemtf-serve-")
        try:
            async for chunk in self.reader(request).stream():
                spool.write(chunk)
        except BaseException:
            spool.close()
            raise
        return spool


def model_path(model: "ServedModel | EngineModel | None", path: str, *, predict: bool) -> str | None:
    """The suffix (``/metadata``, ``:predict`` or None) of ``NAME[/versions/V][/metadata|:predict]``; raises 404 for another model."""
    if model is None:
        raise RequestError("This server has no exported model; it serves the web page and /v1/jobs only.", 404)
    found = _MODEL_PATH.match(path)
    if not found or (found["rest"] == ":predict") != predict:
        raise RequestError(f"Unknown endpoint /v1/models/{path}.", 404)
    if found["name"] != model.name or (found["version"] is not None and found["version"] != model.version):
        version = f"specific({found['version']})" if found["version"] else "Latest"
        raise RequestError(f"Servable not found for request: {version}({found['name']}); this server has {model.name!r}.", 404)
    return found["rest"]


def add_model_routes(app, model: "ServedModel | EngineModel | None", bodies: RequestBodies) -> None:
    """TF Serving's routes: ``GET /v1/models/NAME[/versions/V][/metadata]`` and ``POST .../NAME[/versions/V]:predict``."""
    from fastapi import Request
    from fastapi.responses import StreamingResponse
    from starlette.concurrency import run_in_threadpool

    @app.get("/v1/models/{path:path}")
    async def model_status(path: str):
        rest = model_path(model, path, predict=False)
        if rest == "/metadata":
            return json_response({
                "model_spec": {"name": model.name, "signature_name": "", "version": model.version},
                "metadata": {"signature_def": {"signature_def": model.signature_metadata()}},
            })
        return json_response({"model_version_status": [{
            "version": model.version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""},
        }]})

    @app.post("/v1/models/{path:path}")
    async def predict_route(path: str, request: Request):
        model_path(model, path, predict=True)
        body = await bodies.spool(request, memory=1 << 20)
        try:
            answer, size = await run_in_threadpool(predict, body, model)
        finally:
            body.close()
        return StreamingResponse(iter_file(answer), media_type="application/json", headers={"Content-Length": str(size)})


def add_separate_route(app, model: "ServedModel | EngineModel | None", bodies: RequestBodies) -> None:
    """``POST /v1/separate``: an audio file (multipart field ``file`` or the raw body) -> a zip of its stems."""
    from fastapi import Request
    from fastapi.responses import StreamingResponse
    from starlette.concurrency import run_in_threadpool

    @app.post("/v1/separate")
    async def separate(request: Request):
        if model is None:
            raise RequestError("This server has no exported model; use POST /v1/jobs.", 404)
        filename = request.query_params.get("filename", "")
        form = None
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            bodies.check_declared(request)  # parts over 1 MB are spooled to disk by the parser as they arrive
            form = await bodies.reader(request).form(max_files=1, max_fields=12)
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                await form.close()
                raise RequestError("The multipart body must have a file field named 'file' (curl -F file=@song.mp3).")
            data, filename = upload.file, upload.filename or ""
            group_fields, two_stems = form.getlist("group"), form.get("two_stems")
        else:
            data, group_fields, two_stems = await bodies.spool(request), [], None
        try:
            # Groups come as form fields or in the query string: ?group=accompaniment=drums,bass,other or ?two_stems=vocals.
            groups = request_groups([*group_fields, *request.query_params.getlist("group")],
                                    two_stems or request.query_params.get("two_stems"), model.stems)
            data.seek(0, 2)
            if data.tell() == 0:
                raise RequestError("The upload is empty; send an audio file (curl -F file=@song.mp3 ...).")
            files = await run_in_threadpool(lambda: separate_upload(data, filename, model, groups=groups))
        finally:
            if form is not None:
                await form.close()
            else:
                data.close()
        return StreamingResponse(iter_zip(files), media_type="application/zip",
                                 headers={"Content-Disposition": content_disposition(f"{download_stem(filename)}_stems.zip")})


def request_groups(group_fields: list, two_stems: Any, stems: Sequence[str]) -> dict[str, list[str]] | None:
    """The groups of a ``/v1/separate`` request (fields or query ``group``, ``two_stems``); RequestError 400 if bad."""
    try:
        groups = parse_fields([g for g in group_fields if isinstance(g, str)], two_stems)
        check_fields(groups, stems)
    except GroupsProblem as problem:
        raise RequestError(str(problem)) from None
    return groups
