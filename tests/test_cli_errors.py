"""The CLI: fast, TensorFlow-free --help, and one-line errors with exit code 2 for user mistakes."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from edgeslim.cli import main


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from edgeslim.cli import main\n"
        "rc = main(['--help'])\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'tf_keras', 'onnx', 'sklearn') if m in sys.modules]\n"
        "assert rc == 0 and not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_help_lists_commands():
    result = subprocess.run([sys.executable, "-m", "edgeslim", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("train", "inspect"):
        assert command in result.stdout


def _error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return err


def test_missing_model_file(capsys, tmp_path):
    assert "no such" in _error(capsys, ["inspect", str(tmp_path / "nope.keras")])
    err = _error(
        capsys, ["compress", str(tmp_path / "nope.keras"), "--stage", "prune", "--out", str(tmp_path / "o")]
    )
    assert err.count("error:") == 1 and "no such model file" in err  # not a second line about training


def test_unknown_model_and_dataset(capsys):
    assert "unknown model" in _error(capsys, ["train", "--model", "resnet1000", "--epochs", "1"])
    assert "unknown dataset" in _error(capsys, ["train", "--dataset", "imagenet", "--epochs", "1"])


def test_non_positive_epochs(capsys):
    assert "epochs" in _error(capsys, ["train", "--epochs", "0"])
    assert "epochs" in _error(capsys, ["train", "--epochs", "-3"])


def test_dataset_shape_does_not_fit_model(capsys, digits_model_path, mnist_dir):
    err = _error(
        capsys,
        [
            "train",
            "--model",
            str(digits_model_path),
            "--dataset",
            "mnist",
            "--data-dir",
            str(mnist_dir),
            "--epochs",
            "1",
        ],
    )
    assert "(8, 8, 1)" in err and "(28, 28, 1)" in err


def test_corrupt_keras_file(capsys, tmp_path, digits_model_path):
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(digits_model_path.read_bytes()[:500])
    assert "corrupt" in _error(capsys, ["inspect", str(corrupt)])
    not_zip = tmp_path / "text.keras"
    not_zip.write_text("hello")
    assert "not a valid .keras" in _error(capsys, ["inspect", str(not_zip)])


def test_keras_archive_with_broken_config(capsys, tmp_path):
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("config.json", "{not json")
        z.writestr("metadata.json", "{}")
    assert "error" in _error(capsys, ["inspect", str(broken)])


@pytest.fixture(scope="module")
def lambda_model_path(tmp_path_factory):
    import keras

    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Lambda(lambda t: t * 2.0),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    path = tmp_path_factory.mktemp("lambda") / "lambda.keras"
    model.save(path)
    return path


def test_lambda_model_refused_under_safe_mode(capsys, lambda_model_path):
    err = _error(capsys, ["inspect", str(lambda_model_path)])
    assert "--unsafe-load" in err


def test_lambda_model_loads_with_unsafe_flag(capsys, lambda_model_path):
    assert main(["inspect", str(lambda_model_path), "--unsafe-load", "--json"]) == 0
    assert "Lambda" in capsys.readouterr().out
