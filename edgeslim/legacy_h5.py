"""Keras 2 / tf.keras HDF5 models (``.h5``) in Keras 3: translate what Keras 3 refuses, then load.

Tutorials and papers ship tf.keras ``model.save('m.h5')`` files (the MLPerf Tiny reference models
among them). Keras 3 reads that layout, but refuses a few arguments only tf.keras had (``groups=1``
on a DepthwiseConv2D, ``time_major`` on an LSTM, ...). This module reads the file's ``model_config``
JSON with h5py, rewrites those arguments where dropping them changes nothing (and refuses, naming the
layer, where it would), and hands an in-memory copy of the file to Keras 3's own HDF5 loader; every
translation comes back as one line for the user. The file on disk is never written.

Safety: a ``Lambda`` layer carries marshalled Python bytecode. The config is scanned for one (at any
depth, wrappers and nested models included) and refused before Keras sees the file unless the caller
allows code (``--unsafe-load``); Keras' own safe mode stays on as a second lock.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeslim.errors import EdgeslimError

if TYPE_CHECKING:
    import keras

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

_GROUPED = {
    "DepthwiseConv1D",
    "DepthwiseConv2D",
    "SeparableConv1D",
    "SeparableConv2D",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
}
_SEPARABLE = {"SeparableConv1D", "SeparableConv2D"}
_RECURRENT = {"LSTM", "GRU", "SimpleRNN"}
_SPATIAL_DROPOUT = {"SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D"}
_INITIALIZERS = {
    "Zeros",
    "Ones",
    "Constant",
    "RandomNormal",
    "RandomUniform",
    "TruncatedNormal",
    "VarianceScaling",
    "Orthogonal",
    "Identity",
    "GlorotNormal",
    "GlorotUniform",
    "HeNormal",
    "HeUniform",
    "LecunNormal",
    "LecunUniform",
}
_TF_OPS = {"TFOpLambda", "SlicingOpLambda"}  # tf.keras wraps a raw tf.* call in these; Keras 3 has neither


def _any(_value: Any) -> bool:
    return True


def _one_of(*allowed: Any) -> Callable[[Any], bool]:
    return lambda value: value in allowed


_UNUSED = "unused: the depthwise_ and pointwise_ ones hold the weights"

# (classes, tf.keras-only key, the values Keras 3 computes the same without it, why it can go).
# A value outside the allowed ones is refused, naming the layer: dropping it would change the model.
RULES: list[tuple[set[str], str, Callable[[Any], bool], str]] = [
    (_GROUPED, "groups", _one_of(1), "Keras 3 has no such argument; 1 was tf.keras' only value"),
    (_SEPARABLE, "kernel_initializer", _any, _UNUSED),
    (_SEPARABLE, "kernel_regularizer", _any, _UNUSED),
    (_SEPARABLE, "kernel_constraint", _any, _UNUSED),
    (_RECURRENT, "time_major", _one_of(False), "Keras 3 is always batch-major, which False meant"),
    (_SPATIAL_DROPOUT, "trainable", _any, "dropout has no weights to train"),
    (_SPATIAL_DROPOUT, "noise_shape", _one_of(None), "Keras 3 derives it from data_format"),
    (_INITIALIZERS, "dtype", _any, "Keras 3 initializers take the layer's dtype"),
]


def load_h5_model(path: Path, unsafe: bool = False) -> tuple[keras.Model, list[str]]:
    """Load a tf.keras / Keras HDF5 model file; return the model and one note per translation made.

    Raises EdgeslimError for a file that is not an HDF5 model, holds only weights, carries code without
    ``unsafe``, or uses a layer or argument Keras 3 cannot rebuild.
    """
    import h5py

    data = _read_hdf5_bytes(path)
    try:
        with h5py.File(io.BytesIO(data), "r+") as h5:  # an in-memory copy: the user's file stays as it is
            config = _model_config(h5, path)
            notes = translate(config, path)
            _refuse_tf_ops(config, path)
            if not unsafe:
                _refuse_code(config, path)
            if notes:
                h5.attrs["model_config"] = json.dumps(config).encode("utf-8")
            model = _keras_load(h5, path, unsafe)
    except OSError as exc:  # h5py: a truncated or damaged file
        raise EdgeslimError(f"{path}: corrupt HDF5 file ({exc})", "re-save the model") from None
    return model, notes


def _read_hdf5_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if data.startswith(b"PK\x03\x04"):
        raise EdgeslimError(
            f"{path}: a Keras 3 '.keras' archive with an .h5 name", "rename it to end in .keras"
        )
    if not data.startswith(HDF5_SIGNATURE):  # HDF5 may sit after a user block; Keras never writes one
        raise EdgeslimError(
            f"{path}: not an HDF5 model file (no HDF5 signature: another format, or corrupt)",
            "pass the file tf.keras' model.save('m.h5') wrote, or a Keras 3 '.keras' file",
        )
    return data


def _model_config(h5: Any, path: Path) -> dict[str, Any]:
    raw = h5.attrs.get("model_config")
    if raw is None:
        if "layer_names" in h5.attrs or "vars" in h5 or "layers" in h5:
            raise EdgeslimError(
                f"{path}: holds only weights (save_weights), not the model's architecture",
                "build the model in code, call load_weights on this file, and save it with "
                "model.save('m.keras')",
            )
        raise EdgeslimError(
            f"{path}: an HDF5 file without a Keras model in it", "pass a file written by model.save('m.h5')"
        )
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    try:
        config = json.loads(raw)
    except ValueError:
        config = None
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise EdgeslimError(f"{path}: corrupt model_config in the HDF5 file", "re-save the model")
    return config


def _objects(node: Any, key: str = "") -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every serialized object ``{"class_name": ..., "config": {...}}`` in a config tree, depth first,
    with the key it sits under (``kernel_initializer``; "" in a list)."""
    if isinstance(node, dict):
        if isinstance(node.get("class_name"), str) and isinstance(node.get("config"), dict):
            yield key, node["class_name"], node["config"]
        for name, value in node.items():
            yield from _objects(value, name)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


def translate(config: dict[str, Any], path: Path | str = "model") -> list[str]:
    """Rewrite, in place, the tf.keras-only arguments Keras 3 refuses; one note per class and reason:
    ``DepthwiseConv2D x4: dropped tf.keras-only groups=1 (why it changes nothing)``."""
    dropped: dict[tuple[str, str], dict[str, set[str]]] = {}  # (class, why) -> key -> the values seen
    places: Counter[tuple[str, str]] = Counter()
    for where, class_name, values in _objects(config):
        touched = set()
        for classes, key, harmless, why in RULES:
            if class_name not in classes or key not in values:
                continue
            if classes is _INITIALIZERS and not where.endswith("initializer"):
                continue  # a layer that shares an initializer's name (Identity) keeps its dtype
            if not harmless(values[key]):
                raise EdgeslimError(
                    f"{path}: layer {values.get('name', '?')!r} ({class_name}) uses the tf.keras-only "
                    f"{key}={values[key]!r}, which Keras 3 cannot express",
                    "rebuild that layer without it in tf.keras and re-save the model",
                )
            shown = "" if isinstance(values[key], (dict, list)) else repr(values[key])
            dropped.setdefault((class_name, why), {}).setdefault(key, set()).add(shown)
            touched.add((class_name, why))
            del values[key]
        places.update(touched)
    notes = []
    for (class_name, why), keys in dropped.items():
        shown = ", ".join(
            f"{k}={next(iter(v))}" if len(v) == 1 and "" not in v else k for k, v in keys.items()
        )
        notes.append(f"{class_name} x{places[(class_name, why)]}: dropped tf.keras-only {shown} ({why})")
    return notes


def _refuse_tf_ops(config: dict[str, Any], path: Path) -> None:
    ops = sorted(
        {str(values.get("function", "?")) for _, name, values in _objects(config) if name in _TF_OPS}
    )
    if ops:
        raise EdgeslimError(
            f"{path}: the model calls TensorFlow functions directly ({', '.join(ops[:4])}), which only "
            "tf.keras can rebuild",
            "in tf.keras, replace them with keras layers (Add, Multiply, Rescaling, ReLU, ...) and "
            "re-save; or convert the model to .tflite and use edgeslim eval/inspect on it",
        )


def _refuse_code(config: dict[str, Any], path: Path) -> None:
    objects = list(_objects(config))
    names = [str(values.get("name", "?")) for _, name, values in objects if name == "Lambda"]
    carries_code = names or any(  # marshalled bytecode outside a Lambda layer: refuse it all the same
        name == "__lambda__" or "lambda" in (values.get("function_type"), values.get("output_shape_type"))
        for _, name, values in objects
    )
    if carries_code:
        where = f"Lambda layer {', '.join(repr(n) for n in names[:3])}" if names else "marshalled bytecode"
        raise EdgeslimError(
            f"{path}: refused under safe mode: the model carries Python code ({where})",
            "pass --unsafe-load only if you trust where this file came from",
        )


def _keras_load(h5: Any, path: Path, unsafe: bool) -> keras.Model:
    # Keras 3 has no public name for its HDF5 reader that takes an open file (pinned: keras>=3.15,<3.16).
    from keras.src.legacy.saving.legacy_h5_format import load_model_from_hdf5

    import edgeslim.layers  # noqa: F401 - registers edgeslim's own layers (a Keras 3 .h5 may hold them)

    try:
        return load_model_from_hdf5(h5, compile=False, safe_mode=not unsafe)
    except (ValueError, TypeError, KeyError) as exc:
        from edgeslim.modelio import keras_refusal

        reason = _innermost(exc)
        known = keras_refusal(path, reason, reason)
        if known is not None:
            raise known from None
        if "mismatch" in reason:
            raise EdgeslimError(
                f"{path}: the saved weights do not fit the rebuilt model ({reason})", "re-save the model"
            ) from None
        raise EdgeslimError(
            f"{path}: Keras 3 cannot rebuild this tf.keras model ({reason})",
            "rebuild the named layer without that argument in tf.keras and re-save, or save it as .keras "
            "from Keras 3",
        ) from None


def _innermost(exc: BaseException) -> str:
    """The first line of the deepest cause (Keras wraps 'unrecognized argument' in a config dump)."""
    while exc.__cause__ is not None or (exc.__context__ is not None and not exc.__suppress_context__):
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return lines[0].split(". ")[0][:200]
