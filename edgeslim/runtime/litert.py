"""LiteRT (the TFLite interpreter) for ``.tflite`` files, with the Edge TPU delegate for compiled files."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np

from edgeslim.runtime.errors import RuntimeModelError
from edgeslim.runtime.model import RuntimeModel
from edgeslim.runtime.spec import TensorSpec
from edgeslim.runtime.tflite_file import TFLiteModelInfo

EDGETPU_OP = "edgetpu-custom-op"  # what edgetpu_compiler puts in place of the ops it maps
_EDGETPU_LIBRARY = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
EDGETPU_INSTALL = "sudo apt-get install libedgetpu1-std"
EDGETPU_DOCS = "https://coral.ai/software/#debian-packages"


class LiteRTModel(RuntimeModel):
    backend = "litert"

    def __init__(
        self,
        path: Path,
        data: bytes,
        info: TFLiteModelInfo,
        sidecar: dict[str, Any] | None,
        threads: int | None,
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        delegates = []
        if EDGETPU_OP in info.op_names():
            delegates.append(_edgetpu_delegate(path))
            self.backend = "litert+edgetpu"
        try:
            self._interp = Interpreter(
                model_content=data, num_threads=threads, experimental_delegates=delegates
            )
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            flex = "Flex" in text or "custom op" in text.lower()
            raise RuntimeModelError(
                f"{path}: LiteRT cannot load this model ({text})",
                "it uses TensorFlow (Flex) ops, which need full TensorFlow: re-export with builtin ops only"
                if flex
                else "the file is damaged or was not written by a TFLite converter: re-export it",
            ) from None
        in_details = self._interp.get_input_details()
        out_details = self._interp.get_output_details()
        self._in_index = [d["index"] for d in in_details]
        self._out_index = [d["index"] for d in out_details]
        self._shapes = [tuple(int(v) for v in d["shape"]) for d in in_details]
        # A fused LSTM keeps its state in variable tensors across invocations; every call here is a
        # new batch of independent sequences, so the state starts from zero each time.
        self._stateful = info.stateful
        super().__init__(
            path, [_spec(d) for d in in_details], [_spec(d) for d in out_details], sidecar, threads
        )
        self.input_keys, self.output_keys = info.input_keys, info.output_keys

    def _invoke(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        interp = self._interp
        if self._stateful:
            interp.reset_all_variables()
        if len(feeds) == 1 and feeds[0].shape == self._shapes[0]:  # the per-sample path, kept lean
            interp.set_tensor(self._in_index[0], feeds[0])
            interp.invoke()
            return [interp.get_tensor(index) for index in self._out_index]
        for i, (index, feed) in enumerate(zip(self._in_index, feeds, strict=True)):
            if feed.shape != self._shapes[i]:  # a new batch size: resize once, then reuse the plan
                interp.resize_tensor_input(index, list(feed.shape), strict=True)
                self._shapes[i] = feed.shape
                interp.allocate_tensors()
            interp.set_tensor(index, feed)
        interp.invoke()
        return [interp.get_tensor(index) for index in self._out_index]


def _spec(detail: dict[str, Any]) -> TensorSpec:
    signature = detail.get("shape_signature")
    dims = [int(d) for d in (signature if signature is not None and len(signature) else detail["shape"])]
    scale, zero = detail.get("quantization", (0.0, 0))
    dtype = np.dtype(detail["dtype"]).name
    return TensorSpec(
        name=detail["name"],
        shape=tuple(None if d < 0 else d for d in dims),
        dtype=dtype,
        scale=float(scale) if scale else None,
        zero_point=int(zero) if scale else None,
    )


def _edgetpu_delegate(path: Path) -> Any:
    import ctypes

    from ai_edge_litert.interpreter import load_delegate

    library = _EDGETPU_LIBRARY.get(platform.system(), "libedgetpu.so.1")
    cpu_file = path.stem.removesuffix("_edgetpu") + path.suffix
    try:
        # Checked first: load_delegate on a missing library leaves a half-built Delegate whose __del__
        # prints a traceback ("Exception ignored in Delegate.__del__") even when the error is handled.
        ctypes.CDLL(library)
    except OSError:
        raise RuntimeModelError(
            f"{path} is compiled for the Edge TPU, but the Edge TPU runtime {library} is not installed "
            f"(install it with `{EDGETPU_INSTALL}`, from Coral's package repository {EDGETPU_DOCS})",
            f"install it, or run the uncompiled {cpu_file} on the CPU",
        ) from None
    try:
        return load_delegate(library)
    except (ValueError, OSError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__  # its message spans lines
        raise RuntimeModelError(
            f"{path} is compiled for the Edge TPU, but the Edge TPU delegate {library} cannot start "
            f"({reason}): is the Coral device plugged in?",
            f"plug it in, or run the uncompiled {cpu_file} on the CPU",
        ) from None


def edgetpu_available() -> bool:
    """Whether libedgetpu can be found (a Coral runtime is installed), without opening a device."""
    import ctypes.util

    return ctypes.util.find_library("edgetpu") is not None
