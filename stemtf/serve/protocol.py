"""TF Serving's REST JSON mapping: request errors, JSON values <-> numpy arrays (strings as ``{"b64": ...}``)."""

import base64
import binascii
import itertools
import json
from collections.abc import Iterator
from typing import Any

import numpy as np

_DTYPES = {"float32": np.float32, "string": object}


class RequestError(Exception):
    """A problem with a request: becomes ``{"error": message}`` with ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


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
    """A JSON value as a numpy array matching ``spec`` (a :class:`~stemtf.serve.signatures.TensorSpec`: dtype and known dimensions)."""
    dtype = spec.dtype
    if dtype not in _DTYPES:
        raise RequestError(f"Input {name!r} has unsupported dtype {dtype}.")
    try:
        if dtype == "string":
            array = np.array(_decode_strings(value), dtype=object)
        else:
            array = np.array(value, dtype=_DTYPES[dtype])
    except (ValueError, TypeError, OverflowError, RecursionError):  # OverflowError: a 401-digit number
        raise RequestError(f"Input {name!r} must be a rectangular array of numbers ({dtype}).") from None
    expected = list(spec.shape)
    if array.ndim != len(expected) or any(e is not None and e != a for e, a in zip(expected, array.shape)):
        shown = [-1 if d is None else d for d in expected]
        raise RequestError(f"Input {name!r} must have shape {shown}; received {list(array.shape)}.")
    if dtype != "string":
        _check_numbers(value, array.ndim, name)
        if not np.all(np.isfinite(array)):
            raise RequestError(f"Input {name!r} contains NaN or infinite values.")
    return array


def _check_numbers(value: Any, ndim: int, name: str) -> None:
    """Refuse JSON strings and true/false where numbers belong (numpy would quietly read "1.5" and true as numbers)."""
    items = value if ndim else [value]
    for _ in range(ndim - 1):  # the array is rectangular: flatten it level by level, in C
        items = itertools.chain.from_iterable(items)
    kinds = set(map(type, items))
    wrong = kinds - {int, float}
    if wrong:
        word = {str: "a string", bool: "true or false"}.get(next(iter(wrong)), "a value that is not a number")
        raise RequestError(f"Input {name!r} must hold JSON numbers; it holds {word}.")


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


def format_predict_response(outputs: dict[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """TF Serving's JSON response: ``predictions`` (row format) or ``outputs`` (columnar), as one object (small outputs)."""
    return json.loads(b"".join(iter_predict_response(outputs, row_format)))


def iter_predict_response(outputs: dict[str, np.ndarray], row_format: bool, *, rows: int = 1 << 14) -> Iterator[bytes]:
    """TF Serving's JSON response (``predictions`` or ``outputs``) as pieces of bytes, a few thousand rows at a time.

    What ``json.dumps`` of :func:`format_predict_response` writes, without ever holding the whole
    text or one Python object per number (the text of 10 minutes of stems is ~750 MB).
    """
    names = sorted(outputs)
    if not row_format:
        if len(names) == 1:
            yield b'{"outputs":'
            yield from _iter_value(names[0], outputs[names[0]], rows)
            yield b"}"
            return
        yield b'{"outputs":{'
        for index, name in enumerate(names):
            yield (b"," if index else b"") + json.dumps(name).encode() + b":"
            yield from _iter_value(name, outputs[name], rows)
        yield b"}}"
        return
    if len(names) == 1:
        yield b'{"predictions":'
        yield from _iter_value(names[0], outputs[names[0]], rows)
        yield b"}"
        return
    lengths = {len(outputs[name]) for name in names}
    if len(lengths) != 1:
        raise RequestError("The outputs differ in their first dimension; use the columnar 'inputs' format.")
    count = lengths.pop()
    keys = [json.dumps(name) for name in names]
    yield b'{"predictions":['
    for start in range(0, count, rows):
        pieces = {name: _encode_output(name, outputs[name][start:start + rows]) for name in names}
        text = ",".join("{" + ",".join(f"{key}:{json.dumps(pieces[name][i], separators=(',', ':'))}" for key, name in zip(keys, names)) + "}"
                        for i in range(len(pieces[names[0]])))
        yield (b"," if start else b"") + text.encode()
    yield b"]}"


def _iter_value(name: str, value: np.ndarray, rows: int) -> Iterator[bytes]:
    """One output as JSON, its first dimension a few thousand rows at a time."""
    if value.ndim == 0:
        yield json.dumps(_encode_output(name, value), separators=(",", ":")).encode()
        return
    yield b"["
    for start in range(0, len(value), rows):
        text = json.dumps(_encode_output(name, value[start:start + rows]), separators=(",", ":"))
        yield (b"," if start else b"") + text[1:-1].encode()
    yield b"]"
