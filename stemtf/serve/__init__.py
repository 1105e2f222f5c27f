"""Serve a model over TensorFlow Serving's REST API, a file-upload endpoint, and the web page with its job API.

The model is an exported SavedModel (:class:`ServedModel`, run by TensorFlow) or a stemtf model run
by the page's own ``Separator`` (:class:`EngineModel`: one engine per model, no temporary export).

Endpoints (the subset of TF Serving's REST API that clients use, so the same client code works
against ``tensorflow/serving`` with the same SavedModel):

- ``GET /v1/models/NAME[/versions/V]``: version status.
- ``GET /v1/models/NAME[/versions/V]/metadata``: signatures, inputs and outputs.
- ``POST /v1/models/NAME[/versions/V]:predict``: ``{"signature_name": ..., "instances": [...]}``
  (row format) or ``{"inputs": ...}`` (columnar); strings as ``{"b64": "..."}``; outputs whose
  name ends in ``_bytes`` come back as ``{"b64": "..."}``.
- ``POST /v1/separate``: an audio file in any format the CLI reads (multipart field ``file`` or the
  raw body) -> a zip of ``STEM.wav`` files with the upload's rate and channels.
- ``GET /``: the web page (upload a song, follow its progress, play its stems); ``/v1/jobs...``: the
  job API under it (queued separations with progress, cancel, cached results; see :mod:`stemtf.serve.web`).

Every error is a 4xx JSON ``{"error": "..."}`` (5xx only for a bug); bodies and durations are
limited, a body that stops arriving for ``read_timeout`` seconds or trickles is a 408, silent and
trickling connections are closed (:mod:`~stemtf.serve.connections`), requests from other sites'
pages or for other host names are a 403 (:mod:`~stemtf.serve.guard`), and bodies wait for one of
``max_concurrency`` slots on disk; parsing, inference and formatting happen inside the slot.
"""

from stemtf.serve.app import DEFAULT_MAX_UPLOAD_MB, DEFAULT_READ_TIMEOUT, create_app
from stemtf.serve.engine_model import EngineModel
from stemtf.serve.handlers import parse_predict_request, predict, separate_upload
from stemtf.serve.jobs import JobError, JobManager
from stemtf.serve.protocol import RequestError, format_predict_response
from stemtf.serve.served_model import DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_DURATION, ServedModel, find_savedmodel
from stemtf.serve.server import DEFAULT_HOST, DEFAULT_MAX_CONNECTIONS, DEFAULT_PORT, bind_socket, default_cache_dir, serve, uvicorn_config

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_DURATION",
    "DEFAULT_MAX_UPLOAD_MB",
    "DEFAULT_PORT",
    "DEFAULT_READ_TIMEOUT",
    "EngineModel",
    "JobError",
    "JobManager",
    "RequestError",
    "ServedModel",
    "bind_socket",
    "create_app",
    "default_cache_dir",
    "find_savedmodel",
    "format_predict_response",
    "parse_predict_request",
    "predict",
    "separate_upload",
    "serve",
    "uvicorn_config",
]
