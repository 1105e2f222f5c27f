"""What the endpoints do with a request body: a validated ``:predict`` call, or an uploaded file separated into a zip."""

import io
import json
import pathlib
import re
import tempfile
import zipfile

import numpy as np

from stemtf import audio
from stemtf.errors import AudioError
from stemtf.serve.protocol import RequestError, _to_array
from stemtf.serve.served_model import ServedModel


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
