"""The checks every dataset goes through before anything trains: one place, called by every loader.

A refusal is an :class:`EdgeslimError` naming the source (file or folder), the array's key as the source
names it (``x_train``, ``y_test_digit``, an IDX file, an image folder) and the first bad index.

- Sizes: a split a source gives holds at least one sample; the inputs and targets of a split have the
  same number of rows. An array's declared size is checked against its file before it is read
  (:func:`check_npz_members`; the IDX reader does the same) and capped at :data:`MAX_ARRAY_BYTES`.
- Values: inputs and regression/reconstruction targets are finite (no NaN, no Inf); inputs are
  numbers or booleans.
- Labels (classification): integers (a float array is accepted as labels only when every value is a
  whole number), non-negative, and below the class count where class names fix it. The training split
  holds at least two classes; without class names the classes are 0..K-1 with K = the largest training
  label + 1, and every one of them must appear in training (so a stray label of 1,000,000 among 100
  samples is refused instead of building a 1,000,001-class model). Validation and test labels must be
  classes the training split has.
- Scale (:func:`raw_scale`): raw integer inputs are scaled by their true range, recorded in the
  dataset's preprocessing (and so in every exported sidecar). uint8 is divided by 255 and uint16 by
  65535, whatever values they hold, because the type says what the device delivers. Other integer types
  (int8 to int64, uint32, uint64) hold no fixed range: they are divided by 255 when every value fits
  0..255 and by 65535 when every value fits 0..65535, recorded as raw uint8 or uint16; negative values
  or values above 65535 are refused (store such data as float, already scaled). Float and boolean inputs
  are taken as already preprocessed (scale 1).
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeslim.data.dataset import Preprocessing
from edgeslim.errors import EdgeslimError

# The largest array a dataset may declare (4 GiB): a forged header must not make us allocate terabytes.
MAX_ARRAY_BYTES = 4 * 2**30
# Raw integer ranges edgeslim scales by, smallest first: 8-bit and 16-bit sensor or pixel values.
RAW_BITS = (8, 16)


@dataclass(frozen=True)
class Column:
    """One array as its source names it: ``key`` (x_train, y_test_digit, an IDX file) and the array."""

    key: str
    array: np.ndarray


Split = Mapping[str, Column]  # input or output name -> its array in one split


def check_splits(
    source: str | Path,
    task: str,
    inputs: Mapping[str, Split],
    targets: Mapping[str, Split],
    class_names: Sequence[str] | None = None,
) -> None:
    """Check the splits a source gives (``split -> name -> Column``) against the rules above.

    ``targets`` may lack a split (reconstruction: the input is the target). ``class_names`` fixes the
    class count where the source knows it (MNIST, an image folder); without it the training labels do.
    """
    for split, columns in inputs.items():
        _check_rows(source, split, [*columns.values(), *targets.get(split, {}).values()])
        for column in columns.values():
            _check_input(source, column)
    if task != "classification":
        for columns in targets.values():
            for column in columns.values():
                _check_finite(source, column)
        return
    names = {name for columns in targets.values() for name in columns}
    for name in sorted(names):
        _check_output_labels(source, {s: c[name] for s, c in targets.items() if name in c}, class_names)


def check_labels(source: str | Path, column: Column, classes: int | None = None) -> None:
    """Class ids: integers (or whole-number floats), >= 0 and, when ``classes`` is known, < classes."""
    y = column.array
    if y.ndim != 1:
        raise EdgeslimError(
            f"{source}: {column.key} has shape {y.shape}; class labels are one id per sample",
            "store the labels as a 1-D integer array (N,)",
        )
    if y.dtype.kind == "f":
        _check_finite(source, column)
        _refuse_first(
            source,
            column,
            y != np.round(y),
            lambda v: f"{v}: a classifier's labels are class ids, not fractions ({column.key} is {y.dtype})",
            "store integer class ids 0..K-1; for float targets drop the task array (regression)",
        )
    elif y.dtype.kind not in "iu":
        raise EdgeslimError(
            f"{source}: {column.key} is {y.dtype}; a classifier's labels are integer class ids",
            "store integer class ids 0..K-1",
        )
    if y.size == 0:
        return
    _refuse_first(
        source, column, y < 0, lambda v: f"label {_show(v)}; class ids start at 0", "store class ids 0..K-1"
    )
    if classes is not None:
        _refuse_first(
            source,
            column,
            y >= classes,
            lambda v: f"label {_show(v)}, outside the {classes} classes 0..{classes - 1}",
            "use the class ids of this dataset's classes",
        )


def _refuse_first(
    source: str | Path, column: Column, bad: np.ndarray, says: Callable[[Any], str], fix: str
) -> None:
    """Refuse the first sample where ``bad`` holds: ``source: key[i] is <what says of its value>``."""
    where = np.flatnonzero(bad)
    if where.size:
        i = int(where[0])
        raise EdgeslimError(f"{source}: {column.key}[{i}] is {says(column.array[i])}", fix)


def raw_scale(source: str | Path, columns: Sequence[Column]) -> Preprocessing:
    """The preprocessing that maps every input's raw values to model input (rules in the docstring)."""
    integer = [c for c in columns if c.array.dtype.kind in "iu"]
    if not integer:
        return Preprocessing()
    if len(integer) != len(columns):
        other = next(c for c in columns if c.array.dtype.kind not in "iu")
        raise EdgeslimError(
            f"{source}: {integer[0].key} holds raw integers ({integer[0].array.dtype}) but {other.key} "
            f"holds {other.array.dtype}; one scale maps every input",
            "store every input as float (already scaled), or every input as raw uint8 (or uint16)",
        )
    bits = {c.key: _raw_bits(source, c) for c in integer}
    if len(set(bits.values())) > 1:
        raise EdgeslimError(
            f"{source}: the inputs hold raw values of different ranges "
            f"({', '.join(f'{k}: {b}-bit' for k, b in bits.items())}); one scale maps every input",
            "store every input with the same raw type (all uint8 or all uint16), or as float",
        )
    width = next(iter(bits.values()))
    return Preprocessing(scale=1.0 / (2**width - 1), offset=0.0, raw_dtype=f"uint{width}")


def check_npz_members(path: Path) -> None:
    """Every member of the .npz is a .npy array whose header's size the file can hold, under the cap,
    read from the header alone (nothing is allocated): a 1 kB file claiming 10^12 elements is refused."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            key = info.filename.removesuffix(".npy")
            with archive.open(info) as stream:
                try:
                    version = np.lib.format.read_magic(stream)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0  # 3.0 differs only in its text encoding
                    )
                    shape, _, dtype = read(stream)
                    if dtype.hasobject:  # only a pickle can hold those, and a data file must not run code
                        raise ValueError(f"{info.filename} holds Python objects (dtype {dtype})")
                except ValueError as exc:  # not an .npy member, or a malformed header
                    raise EdgeslimError(
                        f"{path}: member {info.filename} is not a numpy array ({str(exc)[:120]})",
                        "save the file with numpy.savez, holding arrays only",
                    ) from None
                header = stream.tell()
            claimed = math.prod(shape) * dtype.itemsize
            held = info.file_size - header
            if claimed > held:
                raise EdgeslimError(
                    f"{path}: {key} declares shape {tuple(shape)} of {dtype} ({_bytes(claimed)}) but the "
                    f"file holds {_bytes(max(held, 0))} for it",
                    "the file is corrupt or forged: save the arrays again with numpy.savez",
                )
            if claimed > MAX_ARRAY_BYTES:
                raise EdgeslimError(
                    f"{path}: {key} declares shape {tuple(shape)} of {dtype} ({_bytes(claimed)}); edgeslim "
                    f"reads arrays up to {_bytes(MAX_ARRAY_BYTES)}",
                    "use a smaller dataset (fewer or smaller samples)",
                )


def _check_rows(source: str | Path, split: str, columns: Sequence[Column]) -> None:
    rows = {c.key: len(c.array) for c in columns}
    if len(set(rows.values())) > 1:
        raise EdgeslimError(
            f"{source}: the {split} arrays have different numbers of samples "
            f"({', '.join(f'{k}: {n}' for k, n in rows.items())})",
            "give every input and target of a split one row per sample",
        )
    empty = [key for key, n in rows.items() if n == 0]
    if empty:
        raise EdgeslimError(f"{source}: {empty[0]} holds no samples", f"give the {split} split samples")


def _check_input(source: str | Path, column: Column) -> None:
    if column.array.dtype.kind not in "biuf":
        raise EdgeslimError(
            f"{source}: {column.key} holds {column.array.dtype}; inputs are real numbers",
            "store the inputs as float, integer or boolean arrays",
        )
    _check_finite(source, column)


def _check_finite(source: str | Path, column: Column) -> None:
    a = column.array
    if a.dtype.kind not in "fc":  # integers and booleans are always finite
        return
    bad = ~np.isfinite(a)
    if bad.any():
        where = np.unravel_index(int(bad.argmax()), a.shape)
        index = ", ".join(str(int(i)) for i in where)
        raise EdgeslimError(
            f"{source}: {column.key}[{index}] is {a[where]}"
            + (f" (sample {int(where[0])})" if a.ndim > 1 else "")
            + "; the data must be finite numbers",
            "remove or repair the samples holding NaN or Inf before training",
        )


def _check_output_labels(
    source: str | Path, splits: Mapping[str, Column], class_names: Sequence[str] | None
) -> None:
    known = len(class_names) if class_names else None
    for column in splits.values():
        check_labels(source, column, known)
    train = splits.get("train")
    if train is None:  # a source without training data (images to evaluate on): nothing to compare to
        return
    y = train.array
    if known is None:
        classes = int(y.max()) + 1
        if classes > len(y):  # checked before counting: bincount would allocate one slot per class
            i = int(y.argmax())
            raise EdgeslimError(
                f"{source}: {train.key}[{i}] is label {_show(y[i])}, but the training split has "
                f"{len(y)} samples: labels are class ids 0..K-1 and every class must appear in training",
                "number the classes 0..K-1 (e.g. with numpy.unique(y, return_inverse=True))",
            )
        missing = np.flatnonzero(np.bincount(y.astype(np.int64), minlength=classes) == 0)
        if missing.size:
            raise EdgeslimError(
                f"{source}: {train.key} has labels up to {classes - 1} but no sample of class "
                f"{int(missing[0])} ({missing.size} of the {classes} classes are absent); labels are class "
                "ids 0..K-1 and every class must appear in training",
                "number the classes 0..K-1 without gaps (e.g. with numpy.unique(y, return_inverse=True))",
            )
    seen = np.unique(y)
    if len(seen) < 2:
        label = _label(_show(seen[0]), class_names)
        raise EdgeslimError(
            f"{source}: every sample of {train.key} is class {label}; a classifier needs two classes or more",
            "add samples of the other classes to the training split",
        )
    for split, column in splits.items():
        if split == "train":
            continue
        unseen = np.flatnonzero(~np.isin(column.array, seen))
        if unseen.size:
            i = int(unseen[0])
            label = _label(_show(column.array[i]), class_names)
            raise EdgeslimError(
                f"{source}: {column.key}[{i}] is class {label}, which {train.key} never has; a model "
                "cannot learn a class it does not see",
                f"add samples of that class to the training split, or remove it from {split}",
            )


def _raw_bits(source: str | Path, column: Column) -> int:
    a = column.array
    if a.dtype == np.uint8:
        return 8
    if a.dtype == np.uint16:
        return 16
    if a.size == 0:
        return RAW_BITS[0]
    if a.min() < 0:
        where = np.unravel_index(int(a.argmin()), a.shape)
        raise EdgeslimError(
            f"{source}: {column.key}[{', '.join(str(int(i)) for i in where)}] is {a[where]}: raw integer "
            f"inputs ({a.dtype}) are unsigned pixel or sensor values, scaled by 255 or 65535",
            "store signed data as float, already scaled to the model's input",
        )
    top = int(a.max())
    bits = next((b for b in RAW_BITS if top <= 2**b - 1), None)
    if bits is None:
        where = np.unravel_index(int(a.argmax()), a.shape)
        raise EdgeslimError(
            f"{source}: {column.key}[{', '.join(str(int(i)) for i in where)}] is {top}: raw integer inputs "
            f"({a.dtype}) are scaled by 255 or 65535, and this value exceeds both",
            "store the data as float, already scaled to the model's input",
        )
    return bits


def _show(value: np.generic) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _label(label: str, class_names: Sequence[str] | None) -> str:
    if class_names and label.isdigit() and int(label) < len(class_names) and class_names[int(label)] != label:
        return f"{label} ({class_names[int(label)]!r})"
    return label


def _bytes(n: int) -> str:
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n} B"
