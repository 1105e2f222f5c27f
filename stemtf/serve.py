"""Serve an exported SavedModel over TensorFlow Serving's REST API, plus a file-upload endpoint.

Endpoints (the subset of TF Serving's REST API that clients use, so the same client code works
against ``tensorflow/serving`` with the same SavedModel):

- ``GET /v1/models/NAME[/versions/V]``: version status.
- ``GET /v1/models/NAME[/versions/V]/metadata``: signatures, inputs and outputs.
- ``POST /v1/models/NAME[/versions/V]:predict``: ``{"signature_name": ..., "instances": [...]}``
  (row format) or ``{"inputs": ...}`` (columnar); strings as ``{"b64": "..."}``; outputs whose
  name ends in ``_bytes`` come back as ``{"b64": "..."}``.
- ``POST /v1/separate``: an audio file in any format the CLI reads (multipart field ``file`` or the
  raw body) -> a zip of ``STEM.wav`` files with the upload's rate and channels.

Every error is a 4xx JSON ``{"error": "..."}`` (5xx only for a bug); bodies and durations are
limited; inference runs in worker threads, at most ``max_concurrency`` at a time.
"""

import asyncio
import base64
import binascii
import contextlib
import io
import json
import os
import pathlib
import re
import socket
import tempfile
import threading
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from stemtf import audio
from stemtf.errors import AudioError, ModelError, StemtfError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
DEFAULT_MAX_UPLOAD_MB = 100.0
DEFAULT_MAX_DURATION = 600.0
DEFAULT_MAX_CONCURRENCY = 2
_MODEL_PATH = re.compile(r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?P<rest>/metadata|:predict)?$")
_DTYPES = {"float32": np.float32, "string": object}


class RequestError(Exception):
    """A problem with a request: becomes ``{"error": message}`` with ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def find_savedmodel(path: str | os.PathLike) -> tuple[pathlib.Path, str] | None:
    """``(savedmodel_dir, version)`` for a SavedModel directory or a TF Serving base path; None otherwise.

    A base path holds numbered version folders; the highest one is served.
    """
    path = pathlib.Path(path)
    if (path / "saved_model.pb").is_file():
        return path, path.name if path.name.isdigit() else "1"
    if path.is_dir():
        versions = [p for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()]
        if versions:
            best = max(versions, key=lambda p: int(p.name))
            return best, best.name
    return None


class ServedModel:
    """A loaded SavedModel exported by :func:`stemtf.export.export_savedmodel`, thread-safe to call.

    Args:
        path: The SavedModel directory or a TF Serving base path.
        name: The name in URLs (default: the exported model's name).
        max_duration: Longest audio accepted, in seconds.
        max_concurrency: Inferences run at the same time; more requests wait.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        name: str | None = None,
        max_duration: float = DEFAULT_MAX_DURATION,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        import tensorflow as tf

        from stemtf.export import metadata_path

        found = find_savedmodel(path)
        if found is None:
            raise ModelError(f"{str(path)!r} is not a SavedModel directory; export one with `stemtf export MODEL --format savedmodel`.")
        self.path, self.version = found
        try:
            self.metadata = json.loads(metadata_path(self.path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ModelError(
                f"{str(metadata_path(self.path))!r} is missing or unreadable; export the model with `stemtf export`."
            ) from None
        self.name = name or self.metadata["model"]
        self.sample_rate = int(self.metadata["sample_rate"])
        self.num_channels = int(self.metadata["num_channels"])
        self.stems = list(self.metadata["stems"])
        self.max_duration = max_duration
        self._loaded = tf.saved_model.load(str(self.path))
        self.signatures = dict(self._loaded.signatures)
        self._semaphore = threading.BoundedSemaphore(max(1, max_concurrency))

    def signature_metadata(self) -> dict[str, Any]:
        """The signatures in TF Serving's ``GetModelMetadata`` JSON form."""
        result = {}
        for key, function in self.signatures.items():
            inputs = function.structured_input_signature[1]
            result[key] = {
                "inputs": {name: _tensor_json(spec, f"{key}_{name}:0") for name, spec in inputs.items()},
                "outputs": {name: _tensor_json(spec, f"StatefulPartitionedCall:{index}")
                            for index, (name, spec) in enumerate(sorted(function.structured_outputs.items()))},
                "method_name": "tensorflow/serving/predict",
            }
        return result

    def run(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a signature on numpy inputs, one of ``max_concurrency`` at a time."""
        import tensorflow as tf

        function = self.signatures[signature_name]
        with self._semaphore:
            try:
                outputs = function(**{name: tf.constant(value) for name, value in inputs.items()})
            except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
                raise RequestError(_tf_message(error)) from None
        return {name: value.numpy() for name, value in outputs.items()}

    def separate(self, waveform: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
        """Separate a waveform ``(num_samples, 1 or 2)`` of any rate; stems keep its shape and rate."""
        import soxr

        num_samples, num_channels = waveform.shape
        x = waveform
        if sample_rate != self.sample_rate:
            x = soxr.resample(x, sample_rate, self.sample_rate).reshape(-1, num_channels)
        x = audio.convert_channels(np.ascontiguousarray(x, dtype=np.float32), self.num_channels)
        outputs = self.run("serving_default", {"waveform": x})
        stems = {}
        for stem in self.stems:
            out = outputs[stem]
            if sample_rate != self.sample_rate:
                out = soxr.resample(out, self.sample_rate, sample_rate).reshape(-1, out.shape[1])
            out = audio.convert_channels(out, num_channels)
            stems[stem] = np.pad(out[:num_samples], ((0, max(0, num_samples - out.shape[0])), (0, 0)))
        return stems


def _tensor_json(spec, name: str) -> dict[str, Any]:
    dtype = {"float32": "DT_FLOAT", "string": "DT_STRING"}.get(spec.dtype.name, f"DT_{spec.dtype.name.upper()}")
    dims = [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape.as_list()]
    return {"dtype": dtype, "tensor_shape": {"dim": dims, "unknown_rank": False}, "name": name}


def _tf_message(error: Exception) -> str:
    """The useful line of a TensorFlow error (assertion text, or the first line)."""
    text = getattr(error, "message", None) or str(error)
    found = re.search(r"assertion failed: \[([^\]]*)\]", text)
    if found:
        return found.group(1)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(("[[", "Detected at", "<stack"))]
    return (lines[-1] if lines else "inference failed")[:500]


# Request decoding and response encoding (TF Serving's JSON mapping).


def _decode_strings(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise RequestError('A string value must be a JSON string or {"b64": "..."}.')
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise RequestError("A {\"b64\": ...} value is not valid base64.") from None
    if isinstance(value, list):
        return [_decode_strings(v) for v in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    raise RequestError(f"Expected a string value, received {type(value).__name__}.")


def _to_array(value: Any, spec, name: str) -> np.ndarray:
    """A JSON value as a numpy array matching ``spec`` (dtype and known dimensions)."""
    dtype = spec.dtype.name
    if dtype not in _DTYPES:
        raise RequestError(f"Input {name!r} has unsupported dtype {dtype}.")
    try:
        if dtype == "string":
            array = np.array(_decode_strings(value), dtype=object)
        else:
            array = np.array(value, dtype=_DTYPES[dtype])
    except (ValueError, TypeError):
        raise RequestError(f"Input {name!r} must be a rectangular array of numbers ({dtype}).") from None
    expected = spec.shape.as_list()
    if array.ndim != len(expected) or any(e is not None and e != a for e, a in zip(expected, array.shape)):
        shown = [-1 if d is None else d for d in expected]
        raise RequestError(f"Input {name!r} must have shape {shown}; received {list(array.shape)}.")
    if dtype != "string" and not np.all(np.isfinite(array)):
        raise RequestError(f"Input {name!r} contains NaN or infinite values.")
    return array


def _encode_output(name: str, value: np.ndarray) -> Any:
    if value.dtype == object:
        def encode(item):
            if isinstance(item, list):
                return [encode(i) for i in item]
            if name.endswith("_bytes"):
                return {"b64": base64.b64encode(item).decode("ascii")}
            try:
                return item.decode("utf-8")
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(item).decode("ascii")}

        return encode(value.tolist())
    return value.tolist()


def parse_predict_request(body: bytes, model: ServedModel) -> tuple[str, dict[str, np.ndarray], bool]:
    """``(signature_name, inputs, row_format)`` from a ``:predict`` body, validated against the signature."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(f"The body is not valid JSON: {error}.") from None
    if not isinstance(request, dict):
        raise RequestError("The body must be a JSON object with 'instances' or 'inputs'.")
    signature_name = request.get("signature_name") or "serving_default"
    if signature_name not in model.signatures:
        raise RequestError(f"Unknown signature_name {signature_name!r}; this model has {', '.join(sorted(model.signatures))}.")
    if ("instances" in request) == ("inputs" in request):
        raise RequestError("The body must have exactly one of 'instances' (row format) or 'inputs' (columnar format).")
    specs = model.signatures[signature_name].structured_input_signature[1]
    row_format = "instances" in request
    if row_format:
        rows = request["instances"]
        if not isinstance(rows, list) or not rows:
            raise RequestError("'instances' must be a non-empty list.")
        if all(isinstance(row, dict) and "b64" not in row for row in rows):
            names = set().union(*(row.keys() for row in rows))
            if names != set(specs) or any(set(row) != names for row in rows):
                raise RequestError(f"Every instance must have exactly the inputs {sorted(specs)}.")
            values = {name: [row[name] for row in rows] for name in specs}
        elif len(specs) == 1:
            values = {next(iter(specs)): rows}
        else:
            raise RequestError(f"Instances must be objects with the inputs {sorted(specs)}.")
    else:
        given = request["inputs"]
        if isinstance(given, dict) and "b64" not in given:
            if set(given) != set(specs):
                raise RequestError(f"'inputs' must have exactly the inputs {sorted(specs)}; received {sorted(given)}.")
            values = given
        elif len(specs) == 1:
            values = {next(iter(specs)): given}
        else:
            raise RequestError(f"'inputs' must be an object with the inputs {sorted(specs)}.")
    arrays = {name: _to_array(values[name], specs[name], name) for name in specs}
    _check_duration(arrays, model)
    return signature_name, arrays, row_format


def _check_duration(arrays: dict[str, np.ndarray], model: ServedModel) -> None:
    import soundfile as sf

    limit = model.max_duration
    for name, array in arrays.items():
        if array.dtype == object:
            for item in array.reshape(-1):
                try:
                    info = sf.info(io.BytesIO(item))
                except Exception:  # not a WAV soundfile reads: let decode_wav report it
                    continue
                if info.duration > limit:
                    raise RequestError(f"The audio is {info.duration:.1f} s long; this server accepts at most {limit:g} s.", 413)
        elif array.ndim == 2 and array.shape[0] > limit * model.sample_rate:
            seconds = array.shape[0] / model.sample_rate
            raise RequestError(f"Input {name!r} is {seconds:.1f} s long; this server accepts at most {limit:g} s.", 413)


def format_predict_response(outputs: dict[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """TF Serving's JSON response: ``predictions`` (row format) or ``outputs`` (columnar)."""
    names = sorted(outputs)
    if not row_format:
        if len(names) == 1:
            return {"outputs": _encode_output(names[0], outputs[names[0]])}
        return {"outputs": {name: _encode_output(name, outputs[name]) for name in names}}
    encoded = {name: _encode_output(name, outputs[name]) for name in names}
    if len(names) == 1:
        return {"predictions": encoded[names[0]]}
    rows = {len(value) for value in encoded.values()}
    if len(rows) != 1:
        raise RequestError("The outputs differ in their first dimension; use the columnar 'inputs' format.")
    return {"predictions": [{name: encoded[name][i] for name in names} for i in range(rows.pop())]}


def separate_upload(data: bytes, filename: str, model: ServedModel) -> bytes:
    """Separate an uploaded audio file; a zip of ``STEM.wav`` (16-bit PCM, the upload's rate and channels)."""
    import soundfile as sf

    suffix = pathlib.Path(filename).suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", pathlib.Path(filename).suffix) else ""
    with tempfile.TemporaryDirectory(prefix="stemtf-serve-") as work:
        path = pathlib.Path(work) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            reader = audio.open_audio(path)
        except AudioError as error:
            raise RequestError(str(error).replace(str(path), filename or "the upload")) from None
        try:
            limit = int(model.max_duration * reader.sample_rate)
            if reader.num_samples is not None and reader.num_samples > limit:
                seconds = reader.num_samples / reader.sample_rate
                raise RequestError(f"The audio is {seconds:.1f} s long; this server accepts at most {model.max_duration:g} s.", 413)
            if reader.num_channels not in (1, 2):
                raise RequestError(f"The audio has {reader.num_channels} channels; upload mono or stereo audio.")
            blocks, total = [], 0
            while True:
                block = reader.read(1 << 18)
                if not block.shape[0]:
                    break
                total += block.shape[0]
                if total > limit:
                    raise RequestError(f"The audio is longer than this server's limit of {model.max_duration:g} s.", 413)
                blocks.append(block)
            sample_rate = reader.sample_rate
        except AudioError as error:
            raise RequestError(str(error).replace(str(path), filename or "the upload")) from None
        finally:
            reader.close()
    if not blocks:
        raise RequestError("The upload holds no audio samples.")
    waveform = np.concatenate(blocks)
    stems = model.separate(waveform, sample_rate)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as bundle:
        for stem, out in stems.items():
            buffer = io.BytesIO()
            sf.write(buffer, np.clip(out, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
            bundle.writestr(f"{stem}.wav", buffer.getvalue())
    return archive.getvalue()


# The app.


def create_app(model: ServedModel, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB):
    """The FastAPI app serving ``model``."""
    try:
        from fastapi import FastAPI, Request, Response
        from fastapi.exceptions import RequestValidationError
        from starlette.concurrency import run_in_threadpool
        from starlette.exceptions import HTTPException
    except ImportError:
        raise StemtfError('Serving needs FastAPI and uvicorn: pip install "stemtf[serve]".') from None

    max_bytes = int(max_upload_mb * 1e6)
    app = FastAPI(title="stemtf", docs_url=None, redoc_url=None, openapi_url=None)

    def json_response(data: Any, status: int = 200) -> Response:
        return Response(json.dumps(data, separators=(",", ":")), status_code=status, media_type="application/json")

    @app.exception_handler(RequestError)
    async def _request_error(request, error: RequestError):
        return json_response({"error": str(error)}, error.status)

    @app.exception_handler(HTTPException)
    async def _http_error(request, error: HTTPException):
        return json_response({"error": str(error.detail)}, error.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, error):
        details = "; ".join(str(item.get("msg", "")) for item in error.errors()[:3])
        return json_response({"error": f"Invalid request: {details}."}, 400)

    @app.exception_handler(Exception)
    async def _internal_error(request, error: Exception):
        return json_response({"error": f"internal error: {type(error).__name__}"}, 500)

    def lookup(path: str, *, predict: bool) -> str | None:
        """The suffix (``/metadata``, ``:predict`` or None) of ``NAME[/versions/V][/metadata|:predict]``; raises 404 for another model."""
        found = _MODEL_PATH.match(path)
        if not found or (found["rest"] == ":predict") != predict:
            raise RequestError(f"Unknown endpoint /v1/models/{path}.", 404)
        if found["name"] != model.name or (found["version"] is not None and found["version"] != model.version):
            version = f"specific({found['version']})" if found["version"] else "Latest"
            raise RequestError(f"Servable not found for request: {version}({found['name']}); this server has {model.name!r}.", 404)
        return found["rest"]

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise RequestError(f"The body is {int(declared) / 1e6:.1f} MB; this server accepts at most {max_upload_mb:g} MB.", 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise RequestError(f"The body is larger than this server's limit of {max_upload_mb:g} MB.", 413)
            chunks.append(chunk)
        return b"".join(chunks)

    @app.get("/v1/models/{path:path}")
    async def model_status(path: str):
        rest = lookup(path, predict=False)
        if rest == "/metadata":
            return json_response({
                "model_spec": {"name": model.name, "signature_name": "", "version": model.version},
                "metadata": {"signature_def": {"signature_def": model.signature_metadata()}},
            })
        return json_response({"model_version_status": [{
            "version": model.version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""},
        }]})

    @app.post("/v1/models/{path:path}")
    async def predict(path: str, request: Request):
        lookup(path, predict=True)
        body = await read_body(request)

        def work() -> dict:
            signature, inputs, row_format = parse_predict_request(body, model)
            return format_predict_response(model.run(signature, inputs), row_format)

        return json_response(await run_in_threadpool(work))

    @app.post("/v1/separate")
    async def separate(request: Request):
        body = await read_body(request)
        filename = request.query_params.get("filename", "")
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            async def replay() -> dict:
                return {"type": "http.request", "body": body, "more_body": False}

            form = await Request(request.scope, replay).form(max_files=1, max_fields=4)
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise RequestError("The multipart body must have a file field named 'file' (curl -F file=@song.mp3).")
            data, filename = await upload.read(), upload.filename or ""
        else:
            data = body
        if not data:
            raise RequestError("The upload is empty; send an audio file (curl -F file=@song.mp3 ...).")
        zipped = await run_in_threadpool(separate_upload, data, filename, model)
        track = re.sub(r"[^A-Za-z0-9_.-]", "_", pathlib.Path(filename).stem or "track")
        return Response(zipped, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{track}_stems.zip"'})

    return app


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
    try:
        import uvicorn
    except ImportError:
        raise StemtfError('Serving needs FastAPI and uvicorn: pip install "stemtf[serve]".') from None
    if max_upload_mb <= 0 or max_duration <= 0 or max_concurrency < 1:
        raise StemtfError("--max-upload-mb and --max-duration must be > 0 and --max-concurrency >= 1.")
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
        raise StemtfError(f"Cannot listen on {host}:{port}: {error.strerror or error}.") from None
    sock.set_inheritable(True)
    return sock
