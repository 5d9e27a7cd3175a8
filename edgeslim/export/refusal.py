"""Telling a converter's refusal of a model (the user's to fix) from a bug in the code calling it.

Converters raise many exception types, and so does our own code; catching them all turned our bugs
into "user errors" with exit code 2. The converters raise their refusals from their own code, so
the innermost frame of the traceback says who raised: a converter's file, or anything else (ours,
Keras tracing the model, numpy), which must propagate as a bug.
"""

from __future__ import annotations

import linecache

# Where the converters raise from (path fragments, '/'-separated).
TFLITE_CALIBRATOR = "tensorflow/lite/python/optimize/calibrator.py"
TF2ONNX = "/tf2onnx/"
ONNXRUNTIME_SHAPE_INFERENCE = "onnxruntime/tools/symbolic_shape_infer.py"


def innermost_file(exc: BaseException) -> str:
    """The source file of the frame that raised ``exc`` ('' without a traceback)."""
    tb = exc.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename.replace("\\", "/")


def raised_inside(exc: BaseException, *fragments: str) -> bool:
    """Whether ``exc`` was raised by code in a file whose path contains one of ``fragments``."""
    where = innermost_file(exc)
    return any(fragment in where for fragment in fragments)


def raised_at(exc: BaseException, fragment: str, call: str) -> bool:
    """Whether ``exc`` was raised in a file matching ``fragment`` by a line that calls ``call``: native
    code behind one Python line (the TFLite calibrator's ``QuantizeModel``) raises several kinds of
    failure, and the line tells them apart."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    if fragment not in code.co_filename.replace("\\", "/"):
        return False
    return call in linecache.getline(code.co_filename, tb.tb_lineno)


def first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
