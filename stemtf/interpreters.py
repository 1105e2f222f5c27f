"""Running an exported ``.tflite`` (ai-edge-litert) or ``.onnx`` (onnxruntime) file as a numpy function.

Shared by the library's LiteRT masks (:mod:`stemtf.runtimes`) and the phone runner
(:mod:`stemtf.litert_runner`); never imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys
from collections.abc import Callable

import numpy as np

ModelFunction = Callable[[np.ndarray], dict]
_MADV_DONTNEED = 4  # <sys/mman.h> on every Linux architecture


def open_model(path: pathlib.Path, signature: str | None, input_name: str, num_threads: int | None) -> ModelFunction:
    """``input -> {output name: array}`` of a ``.tflite`` (ai-edge-litert) or ``.onnx`` (onnxruntime) file."""
    if path.suffix == ".onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        return lambda value: dict(zip(names, session.run(names, {input_name: value})))
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
    run = signature_function(interpreter, signature or "serving_default", input_name)
    release_file_pages(path)
    return run


def signature_function(interpreter, signature: str, input_name: str) -> ModelFunction:
    """``input -> {output name: array}`` of a LiteRT interpreter's signature, its tensors allocated once.

    LiteRT's ``SignatureRunner`` resizes and re-allocates every tensor on every call (20 ms per chunk of
    the 4stems model, 6% of it); the input shape of an exported model is fixed, so this allocates once
    and then only sets, invokes and reads.
    """
    interpreter.allocate_tensors()  # before the runner exists (it holds views of the interpreter's data)
    runner = interpreter.get_signature_runner(signature)
    if getattr(runner, "_subgraph_index", 0) != 0:  # not the main graph: let the runner choose it
        return lambda value: runner(**{input_name: value})
    input_index = runner.get_input_details()[input_name]["index"]
    outputs = {name: details["index"] for name, details in runner.get_output_details().items()}

    def run(value: np.ndarray) -> dict:
        interpreter.set_tensor(input_index, value)
        interpreter.invoke()
        return {name: interpreter.get_tensor(index) for name, index in outputs.items()}

    return run


def release_file_pages(path: str | os.PathLike) -> int:
    """Give back the resident pages of this process's read-only mappings of ``path`` (Linux; elsewhere nothing).

    LiteRT maps a ``.tflite`` file and XNNPACK copies (packs) every weight out of it when the tensors
    are allocated; the mapped pages stay resident although they are not read again (a Spleeter
    4stems masks model: 196 MB of a 0.9 GB process). ``madvise(MADV_DONTNEED)`` drops them; a later
    read (an operator XNNPACK does not run) faults the page in from the file again, so nothing changes
    but memory. Call it after ``allocate_tensors``.

    Returns:
        The bytes of mappings released (0 where there is no ``/proc/self/maps`` or no mapping).
    """
    if not sys.platform.startswith("linux"):
        return 0
    try:
        with open("/proc/self/maps") as maps:
            lines = maps.read().splitlines()
    except OSError:
        return 0
    import ctypes

    target = os.path.realpath(path)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released = 0
    for line in lines:
        fields = line.split(maxsplit=5)  # address, permissions, offset, device, inode, path
        if len(fields) < 6 or fields[5] != target or "w" in fields[1]:
            continue
        start, end = (int(value, 16) for value in fields[0].split("-"))
        if libc.madvise(start, end - start, _MADV_DONTNEED) == 0:
            released += end - start
    return released


@contextlib.contextmanager
def quiet_native_stderr():
    """Keep native start-up chatter (LiteRT's "Created ... XNNPACK delegate", the converter's warnings) off stderr.

    Those lines are written by C++ straight to file descriptor 2, so it is pointed at /dev/null for
    the duration; Python exceptions raised meanwhile keep their messages.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
