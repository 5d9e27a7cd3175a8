"""Your own images: one subfolder per class, the layout of Keras' ``image_dataset_from_directory``.

    DIR/<class>/*.png|*.jpg          split with a seed, stratified: 72 % train, 8 % validation, 20 % test
    DIR/{train,val,test}/<class>/    the splits as given; no val takes 10 % of train, no test 20 % of it;
                                     a folder with only test/ is for evaluating on a device

Class names are the folder names, sorted (or, when evaluating a model, its own class names, so that
label i is the model's output i). Images are read with Pillow, converted to grayscale or RGB and resized
(bilinear) to one size. numpy and Pillow only: the base install (a device) evaluates on its own images.

Pixels are scaled by their bit depth: 8-bit images by 255; when any image is 16-bit (a 16-bit grayscale
PNG, Pillow mode I;16 or I) every image is read as 16-bit (8-bit ones scaled up by 257, so 255 stays
full scale) and divided by 65535, recorded as raw uint16. The labels go through the checks every
dataset shares (:mod:`edgeslim.data.validate`): two classes or more in training, no test class
missing from training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeslim.data.dataset import Dataset, Preprocessing
from edgeslim.data.split import stratified_split
from edgeslim.data.validate import Column, check_splits
from edgeslim.errors import EdgeslimError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "val", "test")
COLOR_MODES = {"grayscale": "L", "rgb": "RGB"}
# Pillow modes that hold no colour: such a folder loads as grayscale unless color_mode says otherwise.
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
# Pillow modes of 16-bit grayscale PNGs: their pixels run to 65535, which a conversion to "L" would clip.
DEEP_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
DEEP_MAX = 65535
TEST_FRACTION = 0.2
VAL_FRACTION = 0.1
PREPROCESSING = Preprocessing(scale=1.0 / 255.0, offset=0.0, raw_dtype="uint8")
DEEP_PREPROCESSING = Preprocessing(scale=1.0 / DEEP_MAX, offset=0.0, raw_dtype="uint16")
_LAYOUT_HINT = "put the images in DIR/<class>/ (one subfolder per class), or DIR/{train,val,test}/<class>/"


@dataclass(frozen=True)
class _Image:
    path: Path
    label: int
    mode: str
    size: tuple[int, int]  # (height, width)


def load_folder(
    data_dir: str | Path | None,
    seed: int = 0,
    image_size: int | str | Sequence[int] | None = None,
    color_mode: str | None = None,
    class_names: Sequence[str] | None = None,
) -> Dataset:
    """Load ``data_dir`` (see the module docstring).

    ``image_size``: (height, width), one int for a square, or "HxW"; None keeps the images' own size,
    which must then be the same for all. ``color_mode``: grayscale or rgb; None takes grayscale when no
    image has colour. ``class_names``: the model's classes; each class folder must be one of them.
    """
    if data_dir is None:
        raise EdgeslimError("dataset folder needs a folder of images", f"pass --data-dir DIR; {_LAYOUT_HINT}")
    root = Path(data_dir)
    if not root.is_dir():
        raise EdgeslimError(f"--data-dir {root}: no such directory", _LAYOUT_HINT)
    size = parse_image_size(image_size)
    if color_mode is not None and color_mode not in COLOR_MODES:
        raise EdgeslimError(
            f"color mode {color_mode!r} is not one of {sorted(COLOR_MODES)}",
            "pass grayscale or rgb",
        )
    splits = _split_folders(root)
    names = _class_names(root, splits, class_names)
    listed = {split: _list_images(folder, names) for split, folder in splits.items()}
    every = [image for images in listed.values() for image in images]
    target = size or _common_size(root, every)
    colourless = all(image.mode in _GRAY_MODES for image in every)
    mode = COLOR_MODES[color_mode] if color_mode else ("L" if colourless else "RGB")
    deep = any(image.mode in DEEP_MODES for image in every)
    arrays = {split: _read_all(images, target, mode, deep) for split, images in listed.items()}
    _check(root, splits, arrays, names)
    x_tr, y_tr, x_val, y_val, x_te, y_te = _assign_splits(arrays, target, mode, seed)
    prep = DEEP_PREPROCESSING if deep else PREPROCESSING
    return Dataset(
        name=root.resolve().name,
        x_train=prep.apply(x_tr),
        y_train=y_tr,
        x_val=prep.apply(x_val),
        y_val=y_val,
        x_test=prep.apply(x_te),
        y_test=y_te,
        class_names=names,
        preprocessing=prep,
    )


def parse_image_size(value: int | str | Sequence[int] | None) -> tuple[int, int] | None:
    """``28``, ``"28"``, ``"28x32"`` (height x width) or ``(28, 32)`` -> (height, width); None stays None."""
    if value is None:
        return None
    if isinstance(value, int):
        parts: list[Any] = [value, value]
    elif isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
        parts = parts * 2 if len(parts) == 1 else parts
    else:
        parts = list(value)
    try:
        height, width = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise EdgeslimError(
            f"image size {value!r} is not HxW", "pass e.g. --image-size 28x28 or 28"
        ) from None
    if height < 1 or width < 1:
        raise EdgeslimError(f"image size {value!r} must be positive", "pass e.g. --image-size 28x28")
    return height, width


def folder_options_for_model(
    input_shape: Sequence[int | None],
    class_names: Sequence[str] | None,
    image_size: int | str | Sequence[int] | None = None,
    color_mode: str | None = None,
) -> dict[str, Any]:
    """The folder options that make images fit a model taking ``input_shape`` (N, H, W, C).

    What the user gave wins; the rest comes from the model, so `edgeslim eval` resizes to its input.
    """
    dims = list(input_shape)
    if len(dims) == 4:
        height, width, channels = dims[1:]
        if image_size is None and height is not None and width is not None:
            image_size = (int(height), int(width))
        if color_mode is None and channels in (1, 3):
            color_mode = "grayscale" if channels == 1 else "rgb"
    return {"image_size": image_size, "color_mode": color_mode, "class_names": class_names}


def _split_folders(root: Path) -> dict[str, Path]:
    """{"all": root} for DIR/<class>/, else the split folders of DIR/{train,val,test}/."""
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        raise EdgeslimError(f"{root}: no class subfolders", _LAYOUT_HINT)
    split_names = [p.name for p in subfolders if p.name in SPLITS]
    if not split_names:
        return {"all": root}
    others = [p.name for p in subfolders if p.name not in SPLITS]
    if others:
        raise EdgeslimError(
            f"{root}: mixes split folders {split_names} with class folders {others[:5]}", _LAYOUT_HINT
        )
    return {p.name: p for p in subfolders}


def _class_folders(folder: Path) -> list[Path]:
    found = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise EdgeslimError(f"{folder}: no class subfolders", _LAYOUT_HINT)
    return found


def _class_names(root: Path, splits: dict[str, Path], model_classes: Sequence[str] | None) -> list[str]:
    found = sorted({p.name for folder in splits.values() for p in _class_folders(folder)})
    if model_classes is None:
        return found
    model_classes = [str(c) for c in model_classes]
    unknown = [name for name in found if name not in model_classes]
    if unknown:
        raise EdgeslimError(
            f"{root}: class folders {unknown[:5]} are not among the model's classes {model_classes[:20]}",
            "name each class folder after one of the model's classes",
        )
    return model_classes


def _list_images(split_folder: Path, names: list[str]) -> list[_Image]:
    images = []
    for folder in _class_folders(split_folder):
        files = sorted(
            p
            for p in folder.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
        )
        if not files:
            raise EdgeslimError(
                f"{folder}: class folder holds no PNG or JPEG images", "add images to it or remove it"
            )
        label = names.index(folder.name)
        for path in files:
            with _open_image(path) as image:
                images.append(_Image(path, label, image.mode, (image.height, image.width)))
    return images


def _common_size(root: Path, images: list[_Image]) -> tuple[int, int]:
    first = images[0]
    other = next((i for i in images if i.size != first.size), None)
    if other is not None:
        raise EdgeslimError(
            f"{root}: images have different sizes ({first.path} is {first.size[0]}x{first.size[1]}, "
            f"{other.path} is {other.size[0]}x{other.size[1]})",
            "pass --image-size HxW (e.g. --image-size 28x28) to resize them all to one size",
        )
    return first.size


def _read_all(
    images: list[_Image], size: tuple[int, int], mode: str, deep: bool
) -> tuple[np.ndarray, np.ndarray]:
    channels = 1 if mode == "L" else 3
    x = np.empty((len(images), size[0], size[1], channels), np.uint16 if deep else np.uint8)
    for row, item in enumerate(images):
        with _open_image(item.path) as image:
            try:
                pixels = _pixels(image, size, mode, deep, item.path)
            except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt image data
                raise _unreadable(item.path, exc) from None
        x[row] = pixels.reshape(size[0], size[1], -1)
    return x, np.array([i.label for i in images], np.int64)


def _pixels(image: Any, size: tuple[int, int], mode: str, deep: bool, path: Path) -> np.ndarray:
    """One image's pixels at ``size`` in ``mode``: uint8, or uint16 when the folder holds 16-bit images."""
    resample = _pillow().Resampling.BILINEAR
    if image.mode not in DEEP_MODES:
        converted = image.convert(mode)
        if converted.size != (size[1], size[0]):
            converted = converted.resize((size[1], size[0]), resample)
        pixels = np.asarray(converted, np.uint8)
        return pixels.astype(np.uint16) * 257 if deep else pixels  # 8-bit full scale stays full scale
    gray = image if image.mode == "I" else image.convert("I")  # 32-bit integers: no clipping, resizable
    if gray.size != (size[1], size[0]):
        gray = gray.resize((size[1], size[0]), resample)
    values = np.asarray(gray, np.int64)
    if values.size and (values.min() < 0 or values.max() > DEEP_MAX):
        raise EdgeslimError(
            f"{path}: pixel values run from {values.min()} to {values.max()}, outside 16-bit 0..{DEEP_MAX}",
            "save the image as an 8-bit or 16-bit PNG",
        )
    values = values[..., None] if mode == "L" else np.repeat(values[..., None], 3, axis=-1)
    return values.astype(np.uint16)


def _check(
    root: Path,
    splits: dict[str, Path],
    arrays: dict[str, tuple[np.ndarray, np.ndarray]],
    names: list[str],
) -> None:
    """The checks every dataset shares; the folder layout's pool ("all") is what training draws from."""
    keys = {
        split: ("the class folders" if split == "all" else f"{folder.name}/")
        for split, folder in splits.items()
    }
    named = {("train" if split == "all" else split): split for split in arrays}
    inputs = {s: {"input": Column(keys[split], arrays[split][0])} for s, split in named.items()}
    targets = {s: {"output": Column(keys[split], arrays[split][1])} for s, split in named.items()}
    check_splits(root, "classification", inputs, targets, names)


def _assign_splits(
    arrays: dict[str, tuple[np.ndarray, np.ndarray]], size: tuple[int, int], mode: str, seed: int
) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_val, y_val, x_test, y_test) from the folders found."""
    channels = 1 if mode == "L" else 3
    empty = (np.empty((0, *size, channels), np.uint8), np.empty((0,), np.int64))
    if "all" in arrays:
        pool, test = arrays["all"], None
    else:
        pool, test = arrays.get("train", empty), arrays.get("test")
    if test is None:  # hold out the test split from the pool, as the digits dataset does
        pool, test = _hold_out(pool, TEST_FRACTION, seed)
    val = arrays.get("val")
    if val is None:
        pool, val = _hold_out(pool, VAL_FRACTION, seed + 1)
    return pool[0], pool[1], val[0], val[1], test[0], test[1]


def _hold_out(
    pool: tuple[np.ndarray, np.ndarray], fraction: float, seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(kept, held): ``fraction`` of every class held out, seeded; an empty pool gives two empty ones."""
    x, y = pool
    if len(y) == 0:
        return pool, pool
    keep, held = stratified_split(y, fraction, seed)
    return (x[keep], y[keep]), (x[held], y[held])


@contextlib.contextmanager
def _open_image(path: Path) -> Iterator[Any]:
    """Image.open (reads the header; pixels on demand); an unreadable file becomes an EdgeslimError."""
    image_module = _pillow()
    try:
        image = image_module.open(path)
    except (OSError, ValueError, SyntaxError, image_module.DecompressionBombError) as exc:
        raise _unreadable(path, exc) from None
    with image:
        yield image


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise EdgeslimError("dataset folder needs Pillow to read images", "pip install pillow") from None
    return Image


def _unreadable(path: Path, exc: BaseException) -> EdgeslimError:
    reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
    return EdgeslimError(f"{path}: not a readable PNG or JPEG image ({reason})", "replace or remove the file")
