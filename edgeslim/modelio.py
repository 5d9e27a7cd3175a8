"""Loading and saving Keras models: safe mode by default, atomic writes, errors that say what to do.

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


def load_keras_model(path: str | Path, unsafe: bool = False) -> keras.Model:
    """Load a ``.keras`` file with ``safe_mode=True`` unless ``unsafe`` (the CLI's ``--unsafe-load``)."""
    path = Path(path)
    if not path.is_file():
        raise EdgeslimError(
            f"{path}: no such model file", "check the path, or train one with `edgeslim train`"
        )
    if path.suffix != ".keras":
        raise EdgeslimError(
            f"{path}: expected a Keras 3 '.keras' file", "re-save the model with model.save('m.keras')"
        )
    if not zipfile.is_zipfile(path):
        raise EdgeslimError(
            f"{path}: not a valid .keras archive (corrupt or truncated)", "re-save or re-train it"
        )
    import keras

    import edgeslim.layers  # noqa: F401 - registers edgeslim's own layers (fake-quant, low-rank cells)

    try:
        return keras.saving.load_model(path, safe_mode=not unsafe, compile=False)
    except ValueError as exc:
        text = str(exc)
        if "safe_mode" in text or "Lambda" in text or "lambda" in text:
            raise EdgeslimError(
                f"{path}: refused under safe mode: the model carries Python code (a Lambda layer)",
                "pass --unsafe-load only if you trust where this file came from",
            ) from None
        if "Could not locate" in text or "Unknown layer" in text or "custom" in text.lower():
            raise EdgeslimError(
                f"{path}: the model uses a custom class Keras cannot find ({text.splitlines()[0][:160]})",
                "register the class with keras.saving.register_keras_serializable, or rebuild the model from "
                "standard layers",
            ) from None
        raise EdgeslimError(
            f"{path}: cannot load the model ({text.splitlines()[0][:200]})", "re-save it"
        ) from None
    except (OSError, KeyError, zipfile.BadZipFile, TypeError, EOFError) as exc:
        raise EdgeslimError(
            f"{path}: corrupt .keras file ({type(exc).__name__}: {exc})", "re-save it"
        ) from None


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
