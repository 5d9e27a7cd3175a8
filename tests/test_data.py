"""Data loaders on real files: the embedded digits and the real MNIST t10k set."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from edgeslim.data import load_dataset
from edgeslim.errors import EdgeslimError


def test_digits_is_stratified_deterministic_and_scaled(digits):
    again = load_dataset("digits")
    assert digits.input_shape == (8, 8, 1)
    assert digits.num_classes == 10
    assert len(digits.x_train) + len(digits.x_val) + len(digits.x_test) == 1797
    np.testing.assert_array_equal(digits.y_test, again.y_test)
    assert digits.x_train.min() >= 0.0 and digits.x_train.max() <= 1.0
    # Stratified: every class is in the test split, each near 20 % of its total.
    counts = np.bincount(digits.y_test, minlength=10)
    assert counts.min() >= 30
    assert digits.preprocessing.scale == pytest.approx(1 / 16)


def test_mnist_t10k_uses_the_fixed_split(mnist):
    assert (len(mnist.x_train), len(mnist.x_val), len(mnist.x_test)) == (7200, 800, 2000)
    assert mnist.input_shape == (28, 28, 1)
    assert mnist.x_train.dtype == np.float32
    # Class counts of the whole t10k set are the ones its README gives.
    all_labels = np.concatenate([mnist.y_train, mnist.y_val, mnist.y_test])
    assert np.bincount(all_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    all_x = np.concatenate([mnist.x_train, mnist.x_val, mnist.x_test])
    assert all_x.mean() * 255 == pytest.approx(33.79, abs=0.01)
    assert mnist.preprocessing.scale == pytest.approx(1 / 255)


def _copy_mnist(src, dst, images: bytes | None = None, labels: bytes | None = None):
    dst.mkdir()
    (dst / "t10k-images-idx3-ubyte.gz").write_bytes(
        images if images is not None else (src / "t10k-images-idx3-ubyte.gz").read_bytes()
    )
    (dst / "t10k-labels-idx1-ubyte.gz").write_bytes(
        labels if labels is not None else (src / "t10k-labels-idx1-ubyte.gz").read_bytes()
    )
    return dst


def test_raw_idx_files_load_too(mnist_dir, tmp_path):
    raw_images = gzip.decompress((mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes())
    raw_labels = gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(raw_images)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(raw_labels)
    data = load_dataset("mnist", tmp_path)
    assert len(data.x_test) == 2000


def test_truncated_idx_is_a_clear_error(mnist_dir, tmp_path):
    raw = gzip.decompress((mnist_dir / "t10k-images-idx3-ubyte.gz").read_bytes())
    folder = _copy_mnist(mnist_dir, tmp_path / "trunc", images=gzip.compress(raw[:100_000]))
    with pytest.raises(EdgeslimError, match="truncated or corrupt"):
        load_dataset("mnist", folder)


def test_bad_magic_and_bad_gzip_are_clear_errors(mnist_dir, tmp_path):
    labels = (mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()
    swapped = _copy_mnist(mnist_dir, tmp_path / "swapped", images=labels)
    with pytest.raises(EdgeslimError, match="magic number"):
        load_dataset("mnist", swapped)
    garbage = _copy_mnist(mnist_dir, tmp_path / "garbage", images=b"not gzip at all")
    with pytest.raises(EdgeslimError, match="cannot read IDX"):
        load_dataset("mnist", garbage)


def test_missing_mnist_files_say_what_to_provide(tmp_path):
    with pytest.raises(EdgeslimError) as info:
        load_dataset("mnist", tmp_path)
    assert "t10k-images-idx3-ubyte" in str(info.value)


def test_unknown_dataset():
    with pytest.raises(EdgeslimError, match="unknown dataset"):
        load_dataset("imagenet")


def test_npz_roundtrip_and_errors(digits, tmp_path):
    good = tmp_path / "mine.npz"
    raw = (digits.x_train[..., 0] * 16).astype(np.uint8)
    np.savez(
        good,
        x_train=raw,
        y_train=digits.y_train,
        x_test=(digits.x_test[..., 0] * 16).astype(np.uint8),
        y_test=digits.y_test,
    )
    data = load_dataset("npz", good)
    assert data.input_shape == (8, 8, 1)
    assert len(data.x_val) > 0 and len(data.x_train) + len(data.x_val) == len(digits.x_train)
    assert data.preprocessing.raw_dtype == "uint8"

    missing = tmp_path / "missing.npz"
    np.savez(missing, x_train=raw)
    with pytest.raises(EdgeslimError, match="missing arrays"):
        load_dataset("npz", missing)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(good.read_bytes()[:200])
    with pytest.raises(EdgeslimError, match="not a readable .npz"):
        load_dataset("npz", corrupt)


def test_digits_without_scikit_learn_says_what_to_do():
    """On a device (base install) digits is not available; the error says so instead of a traceback."""
    import subprocess
    import sys

    code = (
        "import sys\nsys.modules['sklearn'] = None\n"
        "from edgeslim.data import load_dataset\nfrom edgeslim.errors import EdgeslimError\n"
        "try:\n    load_dataset('digits')\nexcept EdgeslimError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "needs scikit-learn" in out and "--dataset mnist/npz" in out
