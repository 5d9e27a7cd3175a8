"""The folder dataset on real image files: the digits and MNIST images written as PNG and JPEG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeslim.cli import main
from edgeslim.data import load_dataset
from edgeslim.errors import EdgeslimError


def _digit_pixels(x: np.ndarray) -> np.ndarray:
    """digits model input (raw 0..16 / 16) as 8-bit pixels, the way a camera would give them."""
    return np.round(x[..., 0] * 255).astype(np.uint8)


def _write(folder: Path, images: np.ndarray, labels: np.ndarray, suffix: str = ".png") -> list[Path]:
    paths = []
    for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        path = folder / str(int(label)) / f"img{i:04d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def digits_folder(digits, tmp_path_factory) -> Path:
    """The digits test split as 8x8 grayscale PNGs in DIR/<class>/."""
    root = tmp_path_factory.mktemp("digits_png")
    _write(root, _digit_pixels(digits.x_test), digits.y_test)
    return root


def test_flat_folder_is_split_stratified_and_seeded(digits, digits_folder):
    data = load_dataset("folder", digits_folder, seed=0)
    assert data.class_names == [str(i) for i in range(10)]
    assert data.input_shape == (8, 8, 1)  # grayscale PNGs load as one channel
    assert data.preprocessing.scale == pytest.approx(1 / 255) and data.preprocessing.raw_dtype == "uint8"
    sizes = len(data.x_train), len(data.x_val), len(data.x_test)
    assert sum(sizes) == len(digits.x_test) and len(data.x_test) == pytest.approx(0.2 * sum(sizes), abs=10)
    assert set(np.unique(data.y_test)) == set(range(10))  # stratified: every class in the test split
    # Lossless PNG: every image comes back pixel for pixel, under its folder's label.
    loaded = np.concatenate([data.x_train, data.x_val, data.x_test])[..., 0]
    labels = np.concatenate([data.y_train, data.y_val, data.y_test])
    written = _digit_pixels(digits.x_test)
    key = lambda x, y: sorted(zip(y.tolist(), (a.tobytes() for a in x), strict=True))  # noqa: E731
    assert key(np.round(loaded * 255).astype(np.uint8), labels) == key(written, digits.y_test)
    again, other = (
        load_dataset("folder", digits_folder, seed=0),
        load_dataset("folder", digits_folder, seed=1),
    )
    np.testing.assert_array_equal(again.x_test, data.x_test)
    assert not np.array_equal(other.y_test, data.y_test) or not np.array_equal(other.x_test, data.x_test)


def test_train_val_test_layout_is_respected(digits, tmp_path):
    pixels = _digit_pixels(digits.x_test)
    _write(tmp_path / "train", pixels[:200], digits.y_test[:200])
    _write(tmp_path / "test", pixels[200:], digits.y_test[200:])
    data = load_dataset("folder", tmp_path)
    assert len(data.x_test) == len(pixels) - 200  # the given test folder, untouched
    assert len(data.x_train) + len(data.x_val) == 200 and len(data.x_val) > 0  # val: 10 % of train

    only_test = tmp_path / "device"
    _write(only_test / "test", pixels[:50], digits.y_test[:50])
    data = load_dataset("folder", only_test)  # a device evaluating on its own labelled images
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (0, 0, 50)
    np.testing.assert_array_equal(np.sort(data.y_test), np.sort(digits.y_test[:50]))


def test_jpeg_rgb_resize_and_color_mode(mnist, tmp_path):
    gray = np.round(mnist.x_test[:40, ..., 0] * 255).astype(np.uint8)
    rgb = np.stack([gray, 255 - gray, gray // 2], axis=-1)  # real colour: the channels differ
    _write(tmp_path, rgb, mnist.y_test[:40], suffix=".jpg")
    data = load_dataset("folder", tmp_path, image_size="14x12")
    assert data.input_shape == (14, 12, 3)  # colour JPEGs load as RGB
    assert load_dataset("folder", tmp_path, image_size=20, color_mode="grayscale").input_shape == (20, 20, 1)
    # The pixels are the JPEG's, resized bilinearly: compare one image with Pillow's own result.
    path = sorted((tmp_path / str(int(mnist.y_test[0]))).iterdir())[0]
    expected = np.asarray(Image.open(path).convert("RGB").resize((12, 14), Image.Resampling.BILINEAR))
    all_x = np.concatenate([data.x_train, data.x_val, data.x_test])
    assert any(np.array_equal(np.round(x * 255).astype(np.uint8), expected) for x in all_x)


def test_model_class_names_fix_the_label_order(digits, tmp_path):
    pixels = _digit_pixels(digits.x_test[:30])
    _write(tmp_path, pixels, np.array([i % 2 for i in range(30)]))  # folders "0" and "1"
    data = load_dataset("folder", tmp_path, class_names=["1", "0", "7"])
    assert data.class_names == ["1", "0", "7"]
    all_y = np.concatenate([data.y_train, data.y_val, data.y_test])
    assert sorted(set(all_y.tolist())) == [0, 1]  # folder "1" is label 0 now, folder "0" label 1
    with pytest.raises(EdgeslimError, match=r"class folders \['0'\] are not among the model's classes"):
        load_dataset("folder", tmp_path, class_names=["1", "2"])


def test_clear_errors_name_the_path(digits, tmp_path):
    pixels = _digit_pixels(digits.x_test[:20])
    good = tmp_path / "good"
    _write(good, pixels, digits.y_test[:20])

    empty = tmp_path / "empty"
    _write(empty, pixels, digits.y_test[:20])
    (empty / "extra").mkdir()
    with pytest.raises(EdgeslimError, match=rf"{empty / 'extra'}: class folder holds no PNG or JPEG"):
        load_dataset("folder", empty)

    broken = tmp_path / "broken"
    _write(broken, pixels, digits.y_test[:20])
    garbage = broken / "3" / "garbage.png"
    garbage.write_bytes(b"this is not a png")
    with pytest.raises(EdgeslimError, match=rf"{garbage}: not a readable PNG or JPEG image"):
        load_dataset("folder", broken)
    garbage.unlink()
    truncated = broken / "3" / "truncated.png"
    big = np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)  # noise: PNG cannot compress it
    Image.fromarray(big).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:600])
    with pytest.raises(EdgeslimError, match=rf"{truncated}: not a readable PNG or JPEG image"):
        load_dataset("folder", broken, image_size=8)

    mixed = tmp_path / "mixed"
    _write(mixed, pixels, digits.y_test[:20])
    odd = mixed / "5" / "big.png"
    Image.fromarray(np.zeros((16, 12), np.uint8)).save(odd)
    with pytest.raises(EdgeslimError, match=rf"images have different sizes .*{odd} is 16x12") as info:
        load_dataset("folder", mixed)
    assert "--image-size" in str(info.value)
    assert load_dataset("folder", mixed, image_size="8x8").input_shape == (8, 8, 1)

    layout = tmp_path / "layout"
    _write(layout / "train", pixels, digits.y_test[:20])
    (layout / "cats").mkdir()
    with pytest.raises(EdgeslimError, match="mixes split folders"):
        load_dataset("folder", layout)
    with pytest.raises(EdgeslimError, match="no such directory"):
        load_dataset("folder", tmp_path / "absent")
    with pytest.raises(EdgeslimError, match="no class subfolders"):
        load_dataset("folder", good / "0")
    with pytest.raises(EdgeslimError, match="is not HxW"):
        load_dataset("folder", good, image_size="8 by 8")
    with pytest.raises(EdgeslimError, match="color mode 'cmyk'"):
        load_dataset("folder", good, color_mode="cmyk")
    with pytest.raises(EdgeslimError, match="only the folder dataset takes it"):
        load_dataset("digits", image_size=8)


def test_eval_cli_resizes_to_the_model_and_matches_the_arrays(default_run, digits, tmp_path, capsys):
    """`edgeslim eval --dataset folder`: 16x16 PNGs are resized to the model's 8x8 input."""
    run_dir, _ = default_run
    artifact = run_dir / "exports" / "cpu" / "model_int8.tflite"
    pixels = _digit_pixels(digits.x_test)
    _write(tmp_path / "imgs" / "test", pixels, digits.y_test)
    assert (
        main(["eval", str(artifact), "--dataset", "folder", "--data-dir", str(tmp_path / "imgs"), "--json"])
        == 0
    )
    from_folder = json.loads(capsys.readouterr().out)
    assert main(["eval", str(artifact), "--json"]) == 0  # the same test images as arrays (digits)
    from_arrays = json.loads(capsys.readouterr().out)
    assert from_folder["samples"] == from_arrays["samples"] == len(digits.x_test)
    assert from_folder["accuracy"] == pytest.approx(from_arrays["accuracy"], abs=0.02)

    big = np.stack(
        [np.asarray(Image.fromarray(p).resize((16, 16), Image.Resampling.NEAREST)) for p in pixels]
    )
    _write(tmp_path / "big" / "test", big, digits.y_test)
    assert (
        main(["eval", str(artifact), "--dataset", "folder", "--data-dir", str(tmp_path / "big"), "--json"])
        == 0
    )
    resized = json.loads(capsys.readouterr().out)
    assert resized["samples"] == len(digits.x_test) and resized["accuracy"] > 0.8

    assert main(["eval", str(artifact), "--dataset", "folder", "--data-dir", str(tmp_path / "none")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_folder_loads_without_tensorflow_or_scikit_learn(digits_folder):
    """What a device has: numpy and Pillow. The loader must not touch TensorFlow, Keras or scikit-learn."""
    code = (
        "import sys\n"
        "for m in ('tensorflow', 'keras', 'sklearn'): sys.modules[m] = None\n"
        "from edgeslim.data import load_dataset\n"
        f"d = load_dataset('folder', {str(digits_folder)!r})\n"
        "print(d.input_shape, len(d.x_test))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("(8, 8, 1)")
