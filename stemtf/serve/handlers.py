"""What the endpoints do with a request body: a validated ``:predict`` call, or an uploaded file separated into a zip."""

from __future__ import annotations

import io
import json
import os
import pathlib
import re
import shutil
import tempfile
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from stemtf import apply, audio, options
from stemtf.errors import AudioError
from stemtf.serve.protocol import RequestError, _to_array, iter_predict_response

if TYPE_CHECKING:
    from stemtf.serve.engine_model import EngineModel
    from stemtf.serve.served_model import ServedModel

    RestModel = ServedModel | EngineModel


# Values of a JSON body decoded at most: 8 M numbers is 95 s of 44.1 kHz stereo, ~1 GB at peak
# (the parsed body, then one output per stem as JSON).
MAX_JSON_VALUES = 1 << 23


def max_json_values(model: RestModel) -> int:
    """Numbers a ``:predict`` body may hold: the duration limit's, at most :data:`MAX_JSON_VALUES`."""
    return int(min(MAX_JSON_VALUES, model.max_duration * model.sample_rate * model.num_channels))


def parse_predict_request(body: bytes, model: RestModel) -> tuple[str, dict[str, np.ndarray], bool]:
    """``(signature_name, inputs, row_format)`` from a ``:predict`` body, validated against the signature."""
    # json.loads makes a Python object of every number (~30x its bytes) and the response holds one
    # per stem and sample: count the values first (every one but the last is followed by a comma).
    limit = max_json_values(model)
    if body.count(b",") + 1 > limit:
        raise RequestError(
            f"The JSON body holds more than {limit} numbers; this server accepts at most {model.max_duration:g} s "
            f"of audio and {MAX_JSON_VALUES} numbers per request (send longer audio as WAV bytes with the "
            "separate_wav signature, or to /v1/separate).", 413,
        )
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(f"The body is not valid JSON: {error}.") from None
    except RecursionError:
        raise RequestError("The body is not valid JSON: it is nested too deeply.") from None
    if not isinstance(request, dict):
        raise RequestError("The body must be a JSON object with 'instances' or 'inputs'.")
    signature_name = request.get("signature_name") or "serving_default"
    if signature_name not in model.signatures:
        raise RequestError(f"Unknown signature_name {signature_name!r}; this model has {', '.join(sorted(model.signatures))}.")
    if ("instances" in request) == ("inputs" in request):
        raise RequestError("The body must have exactly one of 'instances' (row format) or 'inputs' (columnar format).")
    specs = model.signatures[signature_name].inputs
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


def predict(body: BinaryIO, model) -> tuple[BinaryIO, int]:
    """Answer a ``:predict`` body spooled in ``body``: ``(opened file of the JSON response, its size)``.

    Everything heavy happens while holding one of the model's ``max_concurrency`` slots: reading
    the body, parsing it, inference, and writing the response (a few thousand rows at a time) to a
    temporary file that is already unlinked. So at most ``max_concurrency`` requests hold their
    numbers in memory; the others wait with their bodies on disk, and the answer is streamed from disk.
    """
    with model.slot():
        body.seek(0)
        data = body.read()
        signature, inputs, row_format = parse_predict_request(data, model)
        del data
        outputs = model.infer(signature, inputs)
        del inputs
        answer = tempfile.TemporaryFile(prefix="stemtf-serve-")
        try:
            for piece in iter_predict_response(outputs, row_format):
                answer.write(piece)
            size = answer.tell()
            answer.seek(0)
        except BaseException:
            answer.close()
            raise
        return answer, size


def _check_duration(arrays: dict[str, np.ndarray], model: RestModel) -> None:
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


def separate_upload(
    data: bytes | BinaryIO, filename: str, model: RestModel, *, groups: dict[str, list[str]] | None = None
) -> list[tuple[str, BinaryIO]]:
    """Separate an uploaded audio file into ``STEM.wav`` files (16-bit PCM, the upload's rate and channels).

    ``groups`` (``{name: [stem, ...]}``, see :func:`stemtf.options.check_groups`) sums stems into
    one file each; stems in no group are kept.

    ``data`` is the upload's bytes, or better an opened file of them (the body spooled to disk while
    it arrived, so that uploads waiting for a slot hold no memory). Decoding, separation and
    encoding stream chunk by chunk into temporary files, all while holding one of the model's
    concurrency slots, so memory stays flat whatever the upload decodes to. The
    work is bounded by the audio's duration (counted at the model's rate when the file does not
    say) and by the bytes of the stems it would produce (a 384 kHz upload is 9x a 44.1 kHz one).

    Returns:
        ``[(STEM.wav, opened file)]`` for :func:`stemtf.serve.zipping.iter_zip`; the files are
        already unlinked, so nothing is left on disk whatever happens to the response.

    Raises:
        RequestError: not audio, too long, too many bytes out, NaN samples, not mono or stereo.
    """
    suffix = pathlib.Path(filename).suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", pathlib.Path(filename).suffix) else ""
    shown = repr(filename) if filename else "the upload"
    plan = options.check_groups(groups, model.stems) or [(stem, (index,)) for index, stem in enumerate(model.stems)]
    with model.slot(), tempfile.TemporaryDirectory(prefix=f"stemtf-serve-{os.getpid()}-") as work:
        path = pathlib.Path(work) / f"upload{suffix}"
        if isinstance(data, (bytes, bytearray)):
            path.write_bytes(data)
        else:
            data.seek(0)
            with open(path, "wb") as out:
                shutil.copyfileobj(data, out, 1 << 20)
        del data
        try:
            reader = audio.open_audio(path)
        except AudioError as error:
            raise RequestError(str(error).replace(repr(str(path)), shown)) from None
        writers: list[audio.AudioWriter] = []
        try:
            rate, channels = reader.sample_rate, reader.num_channels
            if channels not in (1, 2):
                raise RequestError(f"The audio has {channels} channels; upload mono or stereo audio.")
            limits = _Limits(model, rate, channels, len(plan))
            if reader.num_samples is not None:
                limits.check(reader.num_samples / rate)
            source = apply.model_reader(audio.FiniteReader(reader, "The upload"), sample_rate=model.sample_rate,
                                        num_channels=model.num_channels)
            writers = [audio.AudioWriter(pathlib.Path(work) / f"{stem}.wav", sample_rate=rate, num_channels=channels,
                                         input_rate=model.sample_rate) for stem, _ in plan]
            done = 0
            for block in model.separate_stream(source):
                done += block.shape[1]
                limits.check(done / model.sample_rate)  # a file of unknown length stops at the limit
                for writer, (_, indices) in zip(writers, plan):  # groups: sums of the model's stems
                    writer.write(audio.convert_channels(block[list(indices)].sum(axis=0), channels))
            files = []
            for (stem, _), writer in zip(plan, writers):
                writer.write(np.zeros((0, channels), np.float32), last=True)
                files.append((f"{stem}.wav", open(writer.commit(overwrite=True), "rb")))
            return files
        except BaseException as error:
            for writer in writers:
                writer.abort()
            if isinstance(error, AudioError):
                raise RequestError(str(error).replace(repr(str(path)), shown)) from None
            raise
        finally:
            reader.close()


class _Limits:
    """The duration limit, and the bytes of 16-bit stems that a limit-long file at the model's rate gives."""

    def __init__(self, model: RestModel, sample_rate: int, num_channels: int, num_outputs: int) -> None:
        self.max_duration = model.max_duration
        self.bytes_per_second = sample_rate * num_channels * 2 * num_outputs
        self.max_bytes = model.max_duration * model.sample_rate * 2 * 2 * len(model.stems)
        self.sample_rate = sample_rate

    def check(self, seconds: float) -> None:
        if seconds > self.max_duration:
            raise RequestError(f"The audio is {seconds:.1f} s long or more; this server accepts at most {self.max_duration:g} s.", 413)
        if seconds * self.bytes_per_second > self.max_bytes:
            raise RequestError(
                f"At {self.sample_rate} Hz the stems of this file would be more than this server sends "
                f"({self.max_bytes / 1e6:.0f} MB); upload a shorter file or one at a lower sample rate.", 413,
            )
