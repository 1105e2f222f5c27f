"""The job API under the web page (``/v1/jobs...``), and the page itself from package data.

- ``GET /``: the page (``static/index.html``; ``/static/app.js`` and ``/static/app.css``).
- ``GET /v1/separators``: the models offered, their stems, and the limits.
- ``POST /v1/jobs``: multipart ``file`` (+ ``model``) -> ``202 {"id", "status_url", ...}``.
- ``GET /v1/jobs/ID``: status, progress 0..1, time left, queue position; stems when done.
- ``GET /v1/jobs/ID/stems/STEM.wav|mp3``, ``GET /v1/jobs/ID/stems.zip`` (streamed).
- ``DELETE /v1/jobs/ID``: cancel a waiting or running job, or delete a finished one's results.
- ``GET /device/PATH``: the files that let the page separate on the user's device (LiteRT.js and
  the models), once built; ``/v1/separators`` then says ``"device": "/device/"``.

Errors are ``{"error": sentence, "kind": word}``; a full queue is a 503 with ``Retry-After``; an
upload that stalls is a 408 ``timeout`` and its connection is closed.
"""


import importlib.resources
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from stemtf.serve.bodies import MIN_BODY_RATE, BodyClock, close_after
from stemtf.serve.groups import GroupsProblem, parse_fields
from stemtf.serve.jobs import JobError, JobManager
from stemtf.serve.names import content_disposition, download_stem
from stemtf.serve.zipping import iter_file, iter_zip

# The page's files, by URL name: a fixed table, so no request path ever reaches the file system.
_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}


# What stemtf.export.web.ISOLATION_HEADERS says (repeated here: importing it is not free): the page
# and its files are cross-origin isolated, so LiteRT.js can run on WebAssembly threads.
ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}


def static_file(name: str) -> bytes:
    """The bytes of one of the page's files shipped in ``stemtf/serve/static/``."""
    return importlib.resources.files("stemtf.serve").joinpath("static", name).read_bytes()


_BUILD_DEVICE_FILES = """
import json, sys
from stemtf.errors import StemtfError
from stemtf.export.web import device_folder
try:
    folder = device_folder(json.loads(sys.argv[1]), max_duration=float(sys.argv[2]),
                           on_status=lambda line: print("STATUS " + line, flush=True))
except StemtfError as error:
    print("ERROR " + str(error).replace("\\n", " "), flush=True)
    sys.exit(1)
print("FOLDER " + str(folder), flush=True)
"""


class DeviceFiles:
    """The page's files for separating on the user's device (``/device/...``), once they are built.

    :meth:`build` makes them in a child process (:func:`stemtf.export.web.device_folder`: a
    LiteRT.js runtime and each model's ``.tflite``, converted with TensorFlow the first time, then
    cached), so the server neither holds TensorFlow for it nor has to wait for a conversion when it
    stops (:meth:`stop` ends the child). Until then, or if it fails (no runtime installed), the page
    offers separation on the server only.
    """

    def __init__(self) -> None:
        self.folder: pathlib.Path | None = None
        self._process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def build(self, models: list, *, max_duration: float, on_status: Callable[[str], None] | None = None) -> None:
        """Start building the folder for the page's ``models`` (names or directories); returns at once."""
        tell = on_status or (lambda line: None)
        self._process = subprocess.Popen(
            [sys.executable, "-c", _BUILD_DEVICE_FILES, json.dumps([str(model) for model in models]), str(max_duration)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )

        def follow(process: subprocess.Popen) -> None:
            error = None
            for line in process.stdout:
                kind, _, text = line.rstrip("\n").partition(" ")
                if kind == "STATUS":  # the background build's own lines (a conversion) say whose they are
                    tell(f"On-device separation: {text[:1].lower()}{text[1:]}")
                elif kind == "FOLDER":
                    self.folder = pathlib.Path(text)
                    tell("On-device separation: on (the page can separate in the browser, nothing uploaded).")
                elif kind == "ERROR":
                    error = text
            if process.wait() != 0 and self.folder is None and process.returncode > 0:
                tell(f"On-device separation: off ({(error or 'the files could not be built').rstrip('.')}).")

        self._thread = threading.Thread(target=follow, args=(self._process,), name="stemtf-device-files", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End a build still running (it resumes from scratch next time)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def file(self, path: str) -> pathlib.Path | None:
        """The file at URL path ``path`` under ``/device/``, or None (not built, or not a file of the folder)."""
        if self.folder is None:
            return None
        from stemtf.export.web import device_file

        return device_file(self.folder, path)


def add_job_routes(app, jobs: JobManager, *, max_upload_mb: float, read_timeout: float, json_response,
                   min_body_rate: float = MIN_BODY_RATE, device: DeviceFiles | None = None) -> None:
    """Add the page and the job API to the FastAPI ``app``.

    Args:
        app: The FastAPI app (its JSON error handlers already installed).
        jobs: The started job manager.
        max_upload_mb: Largest upload, in MB; refused from ``Content-Length`` before reading, or
            while reading a body sent without one.
        read_timeout: Seconds an upload may go without a byte arriving; then 408 ``timeout``.
        json_response: ``(data, status) -> Response``, the app's JSON encoder.
        min_body_rate: Bytes per second an upload must average after ``2 * read_timeout`` s; then 408 ``timeout``.
        device: The page's on-device files (``GET /device/PATH``, named in ``/v1/separators`` once built).
    """

    @app.exception_handler(JobError)
    async def _job_error(request, error: JobError):
        response = close_after(json_response({"error": str(error), "kind": error.kind}, error.status), error.status)
        if error.retry_after is not None:
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    add_page_routes(app, device)

    @app.get("/v1/separators")
    async def separators():
        answer = {
            "models": jobs.models(), "max_upload_mb": max_upload_mb, "max_duration": jobs.max_duration,
            "max_queue": jobs.max_queue, "workers": jobs.workers, "expiry": jobs.expiry,
        }
        if device is not None and device.folder is not None:
            answer["device"] = "/device/"
        return json_response(answer)

    uploads = Uploads(max_upload_mb=max_upload_mb, read_timeout=read_timeout, min_body_rate=min_body_rate)
    add_submit_route(app, jobs, uploads, json_response)
    add_result_routes(app, jobs, json_response)


def add_page_routes(app, device: DeviceFiles | None) -> None:
    """``GET /`` and ``/static/NAME`` (the page, from package data) and ``GET /device/PATH`` (its on-device files)."""
    from fastapi import Response

    def page_file(name: str) -> Response:
        # Cross-origin isolated (every resource of the page is its own): LiteRT.js may use threads.
        return Response(static_file(name), media_type=_STATIC[name], headers={"Cache-Control": "no-cache", **ISOLATION})

    @app.get("/")
    async def index():
        return page_file("index.html")

    @app.get("/static/{name}")
    async def static(name: str):
        if name not in _STATIC:
            raise JobError(f"No such file: {name!r}.", 404, "not_found")
        return page_file(name)

    @app.get("/device/{path:path}")
    async def device_route(path: str):
        from fastapi.responses import FileResponse

        found = device.file(path) if device is not None else None
        if found is None:
            raise JobError(f"No such file: {path!r}.", 404, "not_found")
        from stemtf.export.web import MEDIA_TYPES

        return FileResponse(found, media_type=MEDIA_TYPES.get(found.suffix, "application/octet-stream"),
                            headers={"Cache-Control": "no-cache", **ISOLATION})


class Uploads:
    """How ``POST /v1/jobs`` reads an upload: at most ``max_upload_mb``, with the deadlines of :class:`BodyClock`.

    Its refusals are :class:`JobError` (413 ``too_big``, 408 ``timeout``), worded for the page.
    """

    def __init__(self, *, max_upload_mb: float, read_timeout: float, min_body_rate: float) -> None:
        self.max_bytes = int(max_upload_mb * 1e6)
        self.too_big = f"The file is larger than this server's limit of {max_upload_mb:g} MB."
        self.read_timeout = read_timeout
        self.min_body_rate = min_body_rate

    def check_declared(self, request) -> None:
        """Refuse an upload whose ``Content-Length`` is over the limit, before a byte of it is read."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise JobError(self.too_big, 413, "too_big")

    async def form(self, request):
        """The request's multipart form (one file, a few fields), read under the limit and the deadlines."""
        from starlette.requests import Request

        clock = BodyClock(request, self.read_timeout, self.min_body_rate)

        async def counting_receive() -> dict[str, Any]:
            # Bodies without Content-Length (chunked) are counted as they arrive.
            message = await clock.receive()
            if message is None:
                problem = clock.problem.replace("of the body", "of the file").replace("The body", "The file")
                raise JobError(f"{problem} Check the connection and upload it again.", 408, "timeout")
            if clock.received > self.max_bytes:
                raise JobError(self.too_big, 413, "too_big")
            return message

        return await Request(request.scope, counting_receive).form(max_files=1, max_fields=12)


def add_submit_route(app, jobs: JobManager, uploads: Uploads, json_response) -> None:
    """``POST /v1/jobs``: multipart ``file`` (+ ``model``, ``group``, ``two_stems``) -> ``202`` and the job's status."""
    from fastapi import Request
    from starlette.concurrency import run_in_threadpool

    @app.post("/v1/jobs")
    async def create_job(request: Request):
        uploads.check_declared(request)  # answered before a byte of the body is read
        jobs.check_room()
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise JobError("Send the file as multipart/form-data with a field named 'file' (curl -F file=@song.mp3).")
        form = await uploads.form(request)
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise JobError("The form must have a file field named 'file' (curl -F file=@song.mp3).")
            models = jobs.models()
            model = form.get("model") or request.query_params.get("model") or (models[0]["name"] if models else "")
            if not isinstance(model, str):
                raise JobError("The field 'model' must be text, e.g. 4stems.")
            jobs.check_model(model)
            groups = form_groups(form.getlist("group"), form.get("two_stems"))
            filename = upload.filename or "upload"
            path = jobs.upload_path(filename)
            await save_upload(upload.file, path)
            job = await run_in_threadpool(lambda: jobs.submit(path, filename, model, groups=groups))
        finally:
            await form.close()
        return json_response({**job, "status_url": f"/v1/jobs/{job['id']}"}, 202)


async def save_upload(source, path: pathlib.Path) -> None:
    """Copy an upload's file to ``path`` in a thread; nothing is left there if that fails or the file is empty (400 ``not_audio``)."""
    from starlette.concurrency import run_in_threadpool

    def copy() -> None:
        with open(path, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)

    try:
        await run_in_threadpool(copy)
    except BaseException:  # a failed copy, or the request cancelled while it runs
        path.unlink(missing_ok=True)
        raise
    if path.stat().st_size == 0:
        path.unlink(missing_ok=True)
        raise JobError("The file is empty; choose an audio file.", 400, "not_audio")


def add_result_routes(app, jobs: JobManager, json_response) -> None:
    """A job's status and cancel (``GET``/``DELETE /v1/jobs/ID``), and its stems one by one or zipped."""
    from fastapi.responses import StreamingResponse
    from starlette.concurrency import run_in_threadpool

    @app.get("/v1/jobs/{job_id}")
    async def job_status(job_id: str):
        return json_response(jobs.status(job_id))

    @app.delete("/v1/jobs/{job_id}")
    async def job_delete(job_id: str):
        return json_response(jobs.cancel(job_id))

    @app.get("/v1/jobs/{job_id}/stems/{stem_file}")
    async def job_stem(job_id: str, stem_file: str):
        stem, _, fmt = stem_file.rpartition(".")
        path = await run_in_threadpool(jobs.stem_file, job_id, stem, fmt)
        track = download_stem(jobs.status(job_id)["filename"])
        media = "audio/wav" if fmt == "wav" else "audio/mpeg"
        try:
            handle = open(path, "rb")  # opened now: expiry may delete the file while it streams
        except FileNotFoundError:
            raise JobError("This job's results have expired; separate the file again.", 404, "not_found") from None
        size = os.fstat(handle.fileno()).st_size
        headers = {"Content-Disposition": content_disposition(f"{track}_{stem}.{fmt}"), "Content-Length": str(size)}
        return StreamingResponse(iter_file(handle), media_type=media, headers=headers)

    @app.get("/v1/jobs/{job_id}/stems.zip")
    async def job_zip(job_id: str):
        track, files = jobs.open_stems(job_id)
        return StreamingResponse(iter_zip(files), media_type="application/zip",
                                 headers={"Content-Disposition": content_disposition(f"{download_stem(track)}_stems.zip")})


def form_groups(values: list, two_stems: Any) -> dict[str, list[str]] | None:
    """Groups from form fields ``group`` (``NAME=STEM,STEM``, repeatable) and ``two_stems`` (``STEM``); JobError 400 if malformed."""
    try:
        return parse_fields(values, two_stems)
    except GroupsProblem as problem:
        raise JobError(str(problem), 400, "bad_groups") from None
