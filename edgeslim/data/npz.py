"""A user's own ``.npz``: inputs, targets and (optionally) the task, by key.

Keys, for each split ``S`` in train, test and (optionally) val:

- inputs: ``x_S`` for one input, or ``x_S_<name>`` for several named inputs (``x_train_audio``,
  ``x_train_meta``: a model whose ``keras.Input``s are named ``audio`` and ``meta``);
- targets: ``y_S`` for one output, or ``y_S_<name>`` for several named outputs;
- ``task`` (optional, a string array): classification, regression or reconstruction. Without it the
  targets decide: integer targets classify, float targets regress, and no targets at all means
  reconstruction (the target is the input). With ``task`` classification, float labels are accepted
  when every value is a whole number;
- ``anomaly_test`` (optional, reconstruction): one 0/1 flag per test sample, 1 for anomalous.

A single ``x_S`` with three dimensions holds images (N, H, W) and gains a channel axis, as before;
other inputs are taken as they are. Integer inputs are raw values scaled by their true range (uint8 by
255, uint16 by 65535: :mod:`edgeslim.data.validate` gives the rules); float inputs are taken as already
preprocessed. Classification labels are class ids 0..K-1, every class present in training. Without
``x_val``, 10 % of train validates (stratified by class when classifying).

Every array is checked before anything is read into memory (its header against the file) and before
anything trains (finite values, labels, row counts): :mod:`edgeslim.data.validate`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from edgeslim.data.dataset import Arrays, Dataset, Preprocessing
from edgeslim.data.split import stratified_split
from edgeslim.data.validate import Column, Split, check_npz_members, check_splits, raw_scale
from edgeslim.errors import EdgeslimError
from edgeslim.tasks import TASK_NAMES

VAL_FRACTION = 0.1
SPLITS = ("train", "test", "val")


def load_npz(path: str | Path, seed: int = 0) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise EdgeslimError(f"{path}: no such file", "pass --data-dir path/to/data.npz")
    try:
        check_npz_members(path)  # a forged header must be refused before numpy allocates what it claims
        with np.load(path, allow_pickle=False) as npz:  # no pickles: a data file must not run code
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise EdgeslimError(f"{path}: not a readable .npz file ({exc})", "save it with numpy.savez") from None
    xs = {split: _group(arrays, f"x_{split}") for split in SPLITS}
    ys = {split: _group(arrays, f"y_{split}") for split in SPLITS}
    missing = [f"x_{s}" for s in ("train", "test") if xs[s] is None]
    if missing:
        raise EdgeslimError(
            f"{path}: missing arrays {missing}",
            "the .npz needs x_train and x_test (or x_train_<input>, x_test_<input> per named input)",
        )
    task = _task(arrays, ys, path)
    if task != "reconstruction":
        absent = [f"y_{s}" for s in ("train", "test") if ys[s] is None]
        if absent:
            raise EdgeslimError(
                f"{path}: missing arrays {absent}", f"a {task} .npz needs targets y_train, y_test"
            )
    for split in SPLITS:
        xs[split] = _inputs(xs[split], path, split)
        if ys[split] is not None:
            ys[split] = _targets(ys[split], path, split, task)
    anomaly = arrays.get("anomaly_test")
    _check(path, task, xs, ys, anomaly)
    for split in SPLITS:
        if ys[split] is not None:  # the checks passed: labels are whole numbers, targets finite
            ys[split] = _cast(ys[split], task)
    _check_matching(xs, path)
    if xs["val"] is None or (task != "reconstruction" and ys["val"] is None):
        _hold_out_validation(xs, ys, task, seed, path)
    prep = _preprocessing(xs, path)
    for split in SPLITS:
        xs[split] = _apply(prep, xs[split])
        if task == "reconstruction" and ys[split] is None:
            ys[split] = xs[split]  # an autoencoder's target is its (preprocessed) input
    num_classes = 0
    if task == "classification" and not isinstance(ys["train"], dict):  # several outputs: per output
        num_classes = int(np.max(ys["train"])) + 1  # validated: every class 0..max is in training
    if anomaly is not None:
        if task != "reconstruction":
            raise EdgeslimError(f"{path}: anomaly_test is for reconstruction, not {task}", "drop the array")
        anomaly = np.asarray(anomaly).reshape(-1).astype(bool)
    return Dataset(
        name=path.stem,
        x_train=xs["train"],
        y_train=ys["train"],
        x_val=xs["val"],
        y_val=ys["val"],
        x_test=xs["test"],
        y_test=ys["test"],
        class_names=[str(i) for i in range(num_classes)],
        preprocessing=prep,
        task=task,
        anomaly=anomaly,
    )


def _group(arrays: dict[str, np.ndarray], key: str) -> Arrays | None:
    """``key`` alone, or every ``key_<name>`` as a dict by name (both at once is ambiguous)."""
    named = {
        k[len(key) + 1 :]: v for k, v in arrays.items() if k.startswith(key + "_") and len(k) > len(key) + 1
    }
    if key in arrays and named:
        raise EdgeslimError(
            f"npz has both {key} and {sorted(key + '_' + n for n in named)}",
            f"use {key} for one array or {key}_<name> for several, not both",
        )
    if key in arrays:
        return arrays[key]
    return named or None


def _task(arrays: dict[str, np.ndarray], ys: dict[str, Arrays | None], path: Path) -> str:
    if "task" in arrays:
        task = str(np.asarray(arrays["task"]).reshape(-1)[0]) if np.asarray(arrays["task"]).size else ""
        if task not in TASK_NAMES:
            raise EdgeslimError(
                f"{path}: task {task!r} is unknown", f"the task array holds one of {TASK_NAMES}"
            )
        return task
    train = ys["train"]
    if train is None:
        return "reconstruction"
    first = np.asarray(next(iter(train.values())) if isinstance(train, dict) else train)
    if _one_hot(first):  # float rows of one 1 and 0s elsewhere: labels, not regression targets
        raise EdgeslimError(
            f"{path}: y_train is one-hot encoded ({first.shape[1]} columns of 0 and 1, one 1 per row)",
            "store class ids instead: y_train = y_train.argmax(axis=1) (and the same for val and test)",
        )
    return "classification" if np.issubdtype(first.dtype, np.integer) else "regression"


def _one_hot(y: np.ndarray) -> bool:
    if y.ndim != 2 or y.shape[1] < 2 or not len(y) or y.dtype.kind not in "fiub":
        return False
    return bool(np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all())


def _inputs(x: Arrays | None, path: Path, split: str) -> Arrays | None:
    if x is None:
        return None
    if isinstance(x, dict):
        return {name: _input(v, path, f"x_{split}_{name}", images=False) for name, v in x.items()}
    return _input(x, path, f"x_{split}", images=True)


def _input(x: np.ndarray, path: Path, key: str, images: bool) -> np.ndarray:
    if images and x.ndim == 3:  # (N, H, W): add the channel axis
        x = x[..., None]
    if x.ndim < 2 or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise EdgeslimError(
            f"{path}: {key} has shape {x.shape} and dtype {x.dtype}",
            "expected numbers with a sample axis first: (N, features...), e.g. (N, H, W, C)",
        )
    return x


def _targets(y: Arrays, path: Path, split: str, task: str) -> Arrays:
    if isinstance(y, dict):
        return {name: _target(v, path, f"y_{split}_{name}", task) for name, v in y.items()}
    return _target(y, path, f"y_{split}", task)


def _target(y: np.ndarray, path: Path, key: str, task: str) -> np.ndarray:
    if task == "classification":
        return np.asarray(y).reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y  # labels: validate's
    if y.ndim < 1 or y.dtype.kind not in "biuf":
        raise EdgeslimError(
            f"{path}: {key} must hold numbers for a {task} task, got {y.dtype}", "store float targets"
        )
    return y


def _cast(y: Arrays, task: str) -> Arrays:
    dtype = np.int64 if task == "classification" else np.float32
    return {k: v.astype(dtype) for k, v in y.items()} if isinstance(y, dict) else y.astype(dtype)


def _check(
    path: Path,
    task: str,
    xs: dict[str, Arrays | None],
    ys: dict[str, Arrays | None],
    anomaly: np.ndarray | None,
) -> None:
    """The shared checks (edgeslim.data.validate), on the arrays as the file names them."""
    inputs = {s: _columns(xs[s], f"x_{s}", "input") for s in SPLITS if xs[s] is not None}
    targets = {s: _columns(ys[s], f"y_{s}", "output") for s in SPLITS if ys[s] is not None}
    if anomaly is not None:  # one flag per test sample: checked for its row count and finite values
        inputs["test"] = {**inputs["test"], "(anomaly flags)": Column("anomaly_test", np.asarray(anomaly))}
    check_splits(path, task, inputs, targets)


def _columns(arrays: Arrays, key: str, single: str) -> Split:
    if isinstance(arrays, dict):
        return {name: Column(f"{key}_{name}", a) for name, a in sorted(arrays.items())}
    return {single: Column(key, arrays)}


def _check_matching(xs: dict[str, Arrays | None], path: Path) -> None:
    train, test = xs["train"], xs["test"]
    names = (sorted(train), sorted(test)) if isinstance(train, dict) and isinstance(test, dict) else None
    if isinstance(train, dict) != isinstance(test, dict) or (names and names[0] != names[1]):
        raise EdgeslimError(f"{path}: x_train and x_test name different inputs", "give both the same inputs")
    for key, tr in _items(train):
        te = test[key] if isinstance(test, dict) else test
        if tr.shape[1:] != te.shape[1:]:
            raise EdgeslimError(
                f"{path}: x_train{_suffix(key)} samples {tr.shape[1:]} differ from x_test {te.shape[1:]}",
                "give every split samples of one shape",
            )


def _hold_out_validation(
    xs: dict[str, Arrays | None], ys: dict[str, Arrays | None], task: str, seed: int, path: Path
) -> None:
    rows = len(next(v for _, v in _items(xs["train"])))
    if task == "classification":  # stratified by the (first) output's classes
        labels = ys["train"]
        labels = labels[sorted(labels)[0]] if isinstance(labels, dict) else labels
        fit, val = stratified_split(np.asarray(labels), VAL_FRACTION, seed)
    else:
        order = np.random.default_rng(seed).permutation(rows)
        n_val = int(round(rows * VAL_FRACTION))
        fit, val = np.sort(order[n_val:]), np.sort(order[:n_val])
    if len(val) == 0:
        raise EdgeslimError(
            f"{path}: x_train has {rows} samples, too few to hold out {VAL_FRACTION:.0%} for validation",
            "add samples, or give the validation split as x_val and y_val",
        )
    for group in (xs, ys):
        if group["train"] is not None:
            whole = group["train"]
            group["val"] = _rows(whole, val)
            group["train"] = _rows(whole, fit)


def _preprocessing(xs: dict[str, Arrays | None], path: Path) -> Preprocessing:
    # One scale for every input of every split, from their true range (edgeslim.data.validate).
    columns = [Column(f"x_{s}{_suffix(k)}", v) for s in SPLITS for k, v in _items(xs[s])]
    return raw_scale(path, columns)


def _apply(prep: Preprocessing, x: Arrays | None) -> Arrays | None:
    if isinstance(x, dict):
        return {k: prep.apply(v) for k, v in x.items()}
    return None if x is None else prep.apply(x)


def _rows(arrays: Arrays, idx: np.ndarray) -> Arrays:
    return {k: v[idx] for k, v in arrays.items()} if isinstance(arrays, dict) else arrays[idx]


def _items(arrays: Arrays | None) -> list[tuple[str, np.ndarray]]:
    if arrays is None:
        return []
    return sorted(arrays.items()) if isinstance(arrays, dict) else [("", arrays)]


def _suffix(name: str) -> str:
    return f"_{name}" if name else ""
