"""Bad data is refused before anything trains: one line naming the file, the key and the first bad index.

Real files written to tmp_path (npz, PNG, IDX) from the real digits; every promise of
edgeslim.data.validate has a test here, a few of them through the real CLI.
"""

from __future__ import annotations

import gzip
import io
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeslim.cli import main
from edgeslim.data import load_dataset, validate
from edgeslim.errors import EdgeslimError


@pytest.fixture(scope="module")
def arrays(digits) -> dict[str, np.ndarray]:
    """The digits as raw 0..16 uint8 pixels (N, 8, 8) and int64 labels: a good .npz to break."""
    raw = lambda x: np.rint(x[..., 0] * 16).astype(np.uint8)  # noqa: E731
    return {
        "x_train": raw(digits.x_train),
        "y_train": digits.y_train.copy(),
        "x_test": raw(digits.x_test),
        "y_test": digits.y_test.copy(),
    }


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _refused(path: Path, *parts: str) -> str:
    """load_dataset refuses ``path`` with a message holding the path and every part (regexes)."""
    with pytest.raises(EdgeslimError) as caught:
        load_dataset("npz", path)
    message = caught.value.message
    assert str(path) in message, message
    for part in parts:
        assert re.search(part, message), (part, message)
    assert caught.value.hint
    return message


def _cli_refuses(argv: list[str], capsys, *parts: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "; fix: " in lines[0] and "Traceback" not in err, err
    for part in parts:
        assert re.search(part, lines[0]), (part, lines[0])
    return lines[0]


def test_the_good_file_loads_and_records_the_8_bit_scale(arrays, tmp_path):
    data = load_dataset("npz", _npz(tmp_path / "good.npz", **arrays))
    assert data.preprocessing.to_dict() == {"scale": 1 / 255, "offset": 0.0, "raw_dtype": "uint8"}
    assert data.num_classes == 10


def test_nan_and_inf_inputs_are_refused_with_their_index(arrays, tmp_path, capsys):
    x = arrays["x_test"].astype(np.float32) / 16
    x[7, 2, 3] = np.nan
    nan = _npz(tmp_path / "nan.npz", **{**arrays, "x_train": arrays["x_train"] / 16.0, "x_test": x})
    _refused(nan, r"x_test\[7, 2, 3, 0\] is nan \(sample 7\)")
    _cli_refuses(
        [
            "train",
            "--dataset",
            "npz",
            "--data-dir",
            str(nan),
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
        ],
        capsys,
        re.escape(str(nan)),
        r"x_test\[7, 2, 3, 0\] is nan",
    )
    assert not (tmp_path / "run" / "model.keras").exists()
    y = (arrays["y_train"] / 3.0).astype(np.float32)  # a regression target, with one infinity
    y[11] = np.inf
    inf = _npz(
        tmp_path / "inf.npz",
        x_train=arrays["x_train"],
        y_train=y,
        x_test=arrays["x_test"],
        y_test=(arrays["y_test"] / 3.0).astype(np.float32),
    )
    _refused(inf, r"y_train\[11\] is inf")


def test_a_huge_label_does_not_make_a_huge_model(arrays, tmp_path, capsys):
    y = arrays["y_train"][:100].copy()
    y[42] = 1_000_000
    bad = _npz(tmp_path / "huge.npz", **{**arrays, "x_train": arrays["x_train"][:100], "y_train": y})
    _refused(bad, r"y_train\[42\] is label 1000000", "100 samples", r"0\.\.K-1")
    gap = arrays["y_train"].copy()
    gap[gap == 4] = 12  # classes 0..12 with 4, 10 and 11 missing
    _refused(_npz(tmp_path / "gap.npz", **{**arrays, "y_train": gap}), "no sample of class 4")
    _cli_refuses(
        ["train", "--dataset", "npz", "--data-dir", str(bad), "--epochs", "1", "--out", str(tmp_path / "r")],
        capsys,
        r"y_train\[42\] is label 1000000",
    )


def test_labels_must_be_whole_non_negative_class_ids(arrays, tmp_path):
    task = np.array("classification")
    fraction = arrays["y_train"].astype(np.float64)
    fraction[5] = 2.5
    _refused(
        _npz(tmp_path / "f.npz", **{**arrays, "y_train": fraction, "task": task}), r"y_train\[5\] is 2\.5"
    )
    # Whole-number floats are class ids (the documented rule), when the task says classification.
    whole = {**arrays, "y_train": arrays["y_train"].astype(np.float32), "task": task}
    data = load_dataset("npz", _npz(tmp_path / "w.npz", **whole))
    assert data.y_train.dtype == np.int64 and data.num_classes == 10
    negative = arrays["y_test"].copy()
    negative[3] = -1
    _refused(_npz(tmp_path / "n.npz", **{**arrays, "y_test": negative}), r"y_test\[3\] is label -1")


def test_one_class_in_training_is_refused(arrays, tmp_path):
    keep = arrays["y_train"] == 0
    one = {**arrays, "x_train": arrays["x_train"][keep], "y_train": arrays["y_train"][keep]}
    one["y_test"] = np.zeros_like(arrays["y_test"])
    _refused(_npz(tmp_path / "one.npz", **one), "every sample of y_train is class 0", "two classes")


def test_a_test_label_unseen_in_training_is_refused(arrays, tmp_path):
    keep = arrays["y_train"] != 9
    seen = {**arrays, "x_train": arrays["x_train"][keep], "y_train": arrays["y_train"][keep]}
    first = int(np.flatnonzero(arrays["y_test"] == 9)[0])
    _refused(_npz(tmp_path / "unseen.npz", **seen), rf"y_test\[{first}\] is class 9, which y_train never has")


def test_mismatched_lengths_and_empty_splits_are_refused(arrays, tmp_path):
    n = len(arrays["x_train"])
    short = {**arrays, "y_train": arrays["y_train"][:-3]}
    _refused(
        _npz(tmp_path / "short.npz", **short),
        "different numbers of samples",
        f"x_train: {n}",
        f"y_train: {n - 3}",
    )
    two = {
        "x_train_a": arrays["x_train"],
        "x_train_b": arrays["x_train"][:-1],
        "y_train": arrays["y_train"],
        "x_test_a": arrays["x_test"],
        "x_test_b": arrays["x_test"],
        "y_test": arrays["y_test"],
    }
    _refused(_npz(tmp_path / "two.npz", **two), f"x_train_a: {n}", f"x_train_b: {n - 1}")
    empty = {**arrays, "x_test": arrays["x_test"][:0], "y_test": arrays["y_test"][:0]}
    _refused(_npz(tmp_path / "empty.npz", **empty), "x_test holds no samples")


def _forged_npz(path: Path, shape: tuple[int, ...]) -> Path:
    """A real .npz whose x_train member's .npy header claims ``shape`` but holds 64 bytes of data."""
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": shape})
    member.write(bytes(64))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x_train.npy", member.getvalue())
        for key in ("y_train", "x_test", "y_test"):
            buffer = io.BytesIO()
            np.save(buffer, np.zeros(4, np.int64))
            archive.writestr(f"{key}.npy", buffer.getvalue())
    return path


def test_a_forged_header_is_refused_before_allocation(tmp_path, capsys):
    forged = _forged_npz(tmp_path / "forged.npz", (1_000_000, 1_000_000))  # 4 TB claimed, 1 kB on disk
    assert forged.stat().st_size < 2000
    start = time.perf_counter()
    _refused(forged, r"x_train declares shape \(1000000, 1000000\) of float32 \(4\.0 TB\)", "holds 64 B")
    assert time.perf_counter() - start < 1.0
    _cli_refuses(
        [
            "train",
            "--dataset",
            "npz",
            "--data-dir",
            str(forged),
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "r"),
        ],
        capsys,
        "x_train declares shape",
    )


def test_the_size_cap_holds_for_honest_headers(arrays, tmp_path, monkeypatch):
    path = _npz(tmp_path / "big.npz", **arrays)
    monkeypatch.setattr(validate, "MAX_ARRAY_BYTES", 50_000)  # the digits' x_train is about 83 kB
    _refused(path, rf"x_train declares shape \({len(arrays['x_train'])}, 8, 8\)", "up to 50.0 kB")


def test_an_idx_header_claiming_terabytes_is_refused_fast(mnist_dir, tmp_path):
    folder = tmp_path / "idx"
    folder.mkdir()
    header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (10**6, 10**6, 1))
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + bytes(100)))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    start = time.perf_counter()
    with pytest.raises(EdgeslimError, match=r"t10k-images-idx3-ubyte.gz: its header declares \[1000000"):
        load_dataset("mnist", folder)
    assert time.perf_counter() - start < 1.0


def test_integer_inputs_are_scaled_by_their_true_range(arrays, tmp_path):
    wide = {
        **arrays,
        "x_train": arrays["x_train"].astype(np.uint16) * 4000,
        "x_test": arrays["x_test"].astype(np.uint16) * 4000,
    }
    data = load_dataset("npz", _npz(tmp_path / "u16.npz", **wide))
    assert data.preprocessing.to_dict() == {"scale": 1 / 65535, "offset": 0.0, "raw_dtype": "uint16"}
    np.testing.assert_allclose(data.x_test[..., 0], wide["x_test"] / 65535, rtol=1e-6)
    assert data.x_train.max() == pytest.approx(64000 / 65535)  # not clipped, not 250x too large
    int64 = {
        **arrays,
        "x_train": arrays["x_train"].astype(np.int64),
        "x_test": arrays["x_test"].astype(np.int64),
    }
    data = load_dataset("npz", _npz(tmp_path / "i64.npz", **int64))
    assert data.preprocessing.raw_dtype == "uint8" and data.preprocessing.scale == pytest.approx(1 / 255)
    negative = int64["x_test"].copy()
    negative[4, 1, 2] = -3
    _refused(_npz(tmp_path / "neg.npz", **{**int64, "x_test": negative}), r"x_test\[4, 1, 2, 0\] is -3")
    mixed = {**arrays, "x_test": arrays["x_test"] / 16.0}
    _refused(_npz(tmp_path / "mixed.npz", **mixed), "x_train holds raw integers", "x_test holds float64")


def test_sixteen_bit_pngs_are_scaled_by_65535(digits, tmp_path):
    rng = np.random.default_rng(0)
    written = []
    for label in (0, 1):
        for i in range(10):
            pixels = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
            path = tmp_path / str(label) / f"{i}.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(pixels).save(path)
            written.append(pixels)
    assert Image.open(tmp_path / "0" / "0.png").mode.startswith("I")  # a real 16-bit PNG
    eight = np.full((6, 5), 255, np.uint8)  # one 8-bit image: full scale stays full scale
    Image.fromarray(eight).save(tmp_path / "1" / "eight.png")
    data = load_dataset("folder", tmp_path)
    assert data.preprocessing.to_dict() == {"scale": 1 / 65535, "offset": 0.0, "raw_dtype": "uint16"}
    loaded = np.concatenate([data.x_train, data.x_val, data.x_test])[..., 0]
    got = sorted(np.rint(x * 65535).astype(np.uint16).tobytes() for x in loaded)
    assert got == sorted(p.tobytes() for p in [*written, eight.astype(np.uint16) * 257])
    assert (loaded > 0.999).mean() < 0.05  # clipping at 255 made 99.6 % of the pixels 1.0


def test_a_one_class_folder_is_refused(digits, tmp_path):
    for i in range(12):
        path = tmp_path / "cat" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((4, 4), i * 10, np.uint8)).save(path)
    with pytest.raises(
        EdgeslimError, match=rf"{tmp_path}: every sample of the class folders is class 0 \('cat'\)"
    ):
        load_dataset("folder", tmp_path)


def test_a_subprocess_sees_one_line_and_exit_2(arrays, tmp_path):
    y = arrays["y_train"].copy()
    y[0] = 10**6
    bad = _npz(tmp_path / "bad.npz", **{**arrays, "y_train": y})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeslim",
            "train",
            "--dataset",
            "npz",
            "--data-dir",
            str(bad),
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and r"y_train[0] is label 1000000" in errors[0] and str(bad) in errors[0]


def test_check_compatible_holds_labels_to_the_model_outputs(digits):
    import keras

    from edgeslim.data import Dataset
    from edgeslim.train.fit import check_compatible

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    y_test = digits.y_test.copy()
    y_test[6] = 10
    names = [str(i) for i in range(10)]
    data = Dataset(
        "py", digits.x_train, digits.y_train, digits.x_val, digits.y_val, digits.x_test, y_test, names
    )
    with pytest.raises(EdgeslimError, match=r"10 units\): y_test\[6\] is label 10, outside the 10 classes"):
        check_compatible(model, data)
    empty = Dataset(
        "py",
        digits.x_train,
        digits.y_train,
        digits.x_val[:0],
        digits.y_val[:0],
        digits.x_test,
        digits.y_test,
        names,
    )
    with pytest.raises(EdgeslimError, match="has no val samples"):
        check_compatible(model, empty)


def test_one_hot_labels_are_refused_with_the_fix(arrays, tmp_path):
    one_hot = {k: (np.eye(10)[v] if k.startswith("y") else v) for k, v in arrays.items()}
    _refused(_npz(tmp_path / "onehot.npz", **one_hot), "y_train is one-hot", r"3|10 columns")


def test_object_arrays_are_refused_without_unpickling(arrays, tmp_path):
    objects = dict(arrays, x_train=np.array([{"a": 1}] * len(arrays["y_train"]), dtype=object))
    _refused(_npz(tmp_path / "objects.npz", **objects), "x_train", "Python objects")
