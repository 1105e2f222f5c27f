"""TF Serving's REST JSON mapping: request errors, JSON values <-> numpy arrays (strings as ``{"b64": ...}``)."""

import base64
import binascii
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
    """A JSON value as a numpy array matching ``spec`` (dtype and known dimensions)."""
    dtype = spec.dtype.name
    if dtype not in _DTYPES:
        raise RequestError(f"Input {name!r} has unsupported dtype {dtype}.")
    try:
        if dtype == "string":
            array = np.array(_decode_strings(value), dtype=object)
        else:
            array = np.array(value, dtype=_DTYPES[dtype])
    except (ValueError, TypeError, OverflowError, RecursionError):  # OverflowError: a 401-digit number
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
