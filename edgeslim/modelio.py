"""Loading and saving Keras models: safe mode by default, atomic writes, errors that say what to do.

``load_keras_model`` reads a Keras 3 ``.keras`` file, or a Keras 2 / tf.keras ``.h5`` file (translated
by edgeslim.legacy_h5; what it translated is in ``load_notes(model)``). Any other format (a TensorFlow
SavedModel folder, an exported .tflite, a PyTorch checkpoint) is refused with what to do instead.

A model file can carry edgeslim's own metadata (the quantization recipe a quantize stage set) as an
extra ``edgeslim.json`` entry in the ``.keras`` archive, so `edgeslim export` honours a recipe set
by `edgeslim compress` without being told again. Keras ignores the entry.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeslim.atomic import atomic_path
from edgeslim.errors import EdgeslimError

if TYPE_CHECKING:
    import keras

    from edgeslim.recipe import QuantRecipe

METADATA_ENTRY = "edgeslim.json"
LEGACY_SUFFIXES = (".h5", ".hdf5")  # Keras 2 / tf.keras HDF5 models, read by edgeslim.legacy_h5
KERAS_SUFFIXES = (".keras", *LEGACY_SUFFIXES)  # what load_keras_model reads

_SAVEDMODEL_HINT = (
    "load it in tf.keras (tf_keras.models.load_model) and save it as .h5 or .keras, or convert it to "
    ".tflite (tf.lite.TFLiteConverter.from_saved_model) and use edgeslim eval/inspect on that"
)


def load_keras_model(path: str | Path, unsafe: bool = False) -> keras.Model:
    """Load a ``.keras`` or tf.keras ``.h5`` file with safe mode unless ``unsafe`` (``--unsafe-load``).

    What an ``.h5`` needed translated for Keras 3 is in ``load_notes(model)``, one line each.
    """
    path = Path(path)
    if path.is_dir():
        raise _folder_error(path)
    if not path.is_file():
        raise EdgeslimError(
            f"{path}: no such model file", "check the path, or train one with `edgeslim train`"
        )
    suffix = path.suffix.lower()
    if suffix in LEGACY_SUFFIXES:
        from edgeslim.legacy_h5 import load_h5_model

        model, notes = load_h5_model(path, unsafe=unsafe)
        model = normalize_single_io(model)
        model.loaded_notes = tuple(notes)
        return model
    if suffix != ".keras":
        raise _format_error(path, suffix)
    if not zipfile.is_zipfile(path):
        raise EdgeslimError(
            f"{path}: not a valid .keras archive (corrupt or truncated)", "re-save or re-train it"
        )
    import keras

    import edgeslim.layers  # noqa: F401 - registers edgeslim's own layers (fake-quant, low-rank cells)

    try:
        model = keras.saving.load_model(path, safe_mode=not unsafe, compile=False)
    except ValueError as exc:
        text = str(exc)
        known = keras_refusal(path, text, text.splitlines()[0][:160])
        if known is not None:
            raise known from None
        raise EdgeslimError(
            f"{path}: cannot load the model ({text.splitlines()[0][:200]})", "re-save it"
        ) from None
    except (OSError, KeyError, zipfile.BadZipFile, TypeError, EOFError) as exc:
        raise EdgeslimError(
            f"{path}: corrupt .keras file ({type(exc).__name__}: {exc})", "re-save it"
        ) from None
    return normalize_single_io(model)


def normalize_single_io(model: keras.Model) -> keras.Model:
    """A graph model whose one input or output is a one-element list (``keras.Model([x], [y])``, or what
    Keras 3 makes of some tf.keras files), rewired to plain tensors once, at load: every stage, fine-tuning
    and export then sees ``model(x)`` return a tensor. The layers (and weights) are the same objects."""
    import keras

    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if isinstance(model, keras.Sequential) or not isinstance(inputs, list) or not isinstance(outputs, list):
        return model  # a subclassed model has no graph to rewire
    if len(inputs) != 1 or len(outputs) != 1:
        return model
    structure = (getattr(model, "_inputs_struct", None), getattr(model, "_outputs_struct", None))
    if not any(isinstance(s, (list, tuple)) for s in structure):
        return model
    return keras.Model(model.inputs[0], model.outputs[0], name=model.name)


def keras_refusal(path: Path, text: str, reason: str) -> EdgeslimError | None:
    """What Keras' loader refused, when it is one of the refusals a user can act on: safe mode (the
    model carries code) or a layer class Keras cannot find. ``.keras`` and ``.h5`` files share them."""
    if "safe_mode" in text or "Lambda" in text or "lambda" in text:
        return EdgeslimError(
            f"{path}: refused under safe mode: the model carries Python code (a Lambda layer)",
            "pass --unsafe-load only if you trust where this file came from",
        )
    if "Could not locate" in text or "Unknown layer" in text or "custom" in text.lower():
        return EdgeslimError(
            f"{path}: the model uses a layer class Keras cannot find ({reason})",
            "register the class with keras.saving.register_keras_serializable, or rebuild the model from "
            "standard layers",
        )
    return None


def load_notes(model: keras.Model) -> tuple[str, ...]:
    """What loading translated (a tf.keras ``.h5``'s arguments Keras 3 refuses), one line each."""
    return tuple(getattr(model, "loaded_notes", ()))


def _folder_error(path: Path) -> EdgeslimError:
    if (path / "saved_model.pb").is_file():
        return EdgeslimError(
            f"{path}: a TensorFlow SavedModel folder, which Keras 3 cannot load", _SAVEDMODEL_HINT
        )
    return EdgeslimError(f"{path}: a folder, not a model file", "pass the model file (.keras or .h5)")


def _format_error(path: Path, suffix: str) -> EdgeslimError:
    if suffix == ".pb":
        return EdgeslimError(
            f"{path}: a TensorFlow graph (a SavedModel's saved_model.pb), which Keras 3 cannot load",
            _SAVEDMODEL_HINT,
        )
    if suffix in (".tflite", ".onnx"):
        return EdgeslimError(
            f"{path}: an exported {suffix} model; this command needs the Keras model it came from",
            "pass the .keras or .h5 file, or use edgeslim eval/bench/inspect on the exported one",
        )
    if suffix in (".pt", ".pth", ".ckpt", ".safetensors", ".bin"):
        return EdgeslimError(
            f"{path}: not a Keras model ({suffix} is a PyTorch or checkpoint format)",
            "rebuild the model in Keras and save it with model.save('m.keras'), or export it to .onnx "
            "and use edgeslim eval/inspect on that",
        )
    return EdgeslimError(
        f"{path}: unknown model type {suffix or '(none)'!r}",
        "pass a Keras 3 '.keras' file or a tf.keras '.h5' file (model.save('m.keras') writes one)",
    )


def save_keras_model(model: keras.Model, path: str | Path, recipe: QuantRecipe | None = None) -> Path:
    """Save atomically (a crash mid-save leaves the previous file); ``recipe`` travels inside the file."""
    with atomic_path(path) as tmp:
        model.save(tmp)
        if recipe is not None:
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(METADATA_ENTRY, json.dumps({"quant_recipe": recipe.to_dict()}))
    return Path(path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """edgeslim's metadata in a ``.keras`` file ({} when it has none or cannot be read)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if METADATA_ENTRY not in archive.namelist():
                return {}
            data = json.loads(archive.read(METADATA_ENTRY))
    except (OSError, zipfile.BadZipFile, ValueError, KeyError):
        return {}
    return data if isinstance(data, dict) else {}


def read_recipe(path: str | Path) -> QuantRecipe | None:
    """The quantization recipe saved with the model, if any."""
    from edgeslim.recipe import QuantRecipe

    values = read_metadata(path).get("quant_recipe")
    return QuantRecipe.from_dict(values) if isinstance(values, dict) else None
