"""Configs are bounded: YAML is read with a cap (no aliases, no duplicate keys, no huge files) and every
number is checked against a sane range, named by its key path, from a file, ``--set``, the CLI and the
Python API alike. All of it runs before any training, so these tests are fast and need no TensorFlow.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc

import pytest

from edgeslim.cli import main
from edgeslim.errors import ConfigError

# A "billion laughs": nine levels of nine aliases each, 9**9 "lol"s once expanded, and printed in full by
# any message that shows the value. The value sits where a message would show it (dataset.seed).
BOMB = textwrap.dedent(
    """\
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
    dataset: {name: digits, seed: *i}
    """
)
GOOD = "dataset: {name: digits}\nmodel: digits_cnn\ntrain: {epochs: 1}\nexport: {targets: [cpu]}\n"


def _cli_error_lines(capsys, argv: list[str]) -> list[str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.strip()]


def _write(tmp_path, text: str, name: str = "config.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# --- the YAML reader ---------------------------------------------------------------------------------


def test_an_alias_bomb_is_refused_at_once_and_small(tmp_path):
    from edgeslim.pipeline import load_config

    path = _write(tmp_path, BOMB)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as info:
            load_config(path)
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seconds < 1.0, seconds
    assert peak < 5 * 1024**2, f"{peak:,} bytes traced"
    assert info.value.lines() == [
        f"{path}: line 2: alias *a refused: a config may not use aliases; "
        "fix: write the value out where it is used"
    ]


def test_an_alias_bomb_through_the_cli_fits_in_a_small_address_space(tmp_path):
    """The whole CLI, in a child process capped at 1 GiB of address space: expanding the bomb needs 3 GB."""
    path = _write(tmp_path, BOMB)
    code = textwrap.dedent(
        f"""\
        import resource, sys
        limit = 1024**3
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        from edgeslim.cli import main
        sys.exit(main(["pipeline", {str(path)!r}, "--out", {str(tmp_path / "run")!r}]))
        """
    )
    env = os.environ | {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
    )
    assert time.perf_counter() - start < 30
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "alias *a refused" in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_a_single_alias_is_refused_too(tmp_path):
    """The rule is no aliases at all (a config is short: write values out), so no cap can be gamed."""
    from edgeslim.pipeline import load_config

    stages = "compress:\n  - prune: {finetune: &ft {epochs: 1}}\n  - lowrank: {finetune: *ft}\n"
    path = _write(tmp_path, GOOD + stages)
    with pytest.raises(ConfigError, match=r"line 7: alias \*ft refused"):
        load_config(path)
    # an anchor nobody refers to expands nothing and is harmless
    assert load_config(_write(tmp_path, GOOD.replace("{epochs: 1}", "&t {epochs: 1}"), "anchor.yaml"))


def test_merge_keys_are_refused(tmp_path):
    from edgeslim.pipeline import load_config

    with pytest.raises(ConfigError, match=r"line 4: merge key << refused"):
        load_config(_write(tmp_path, "model: digits_cnn\ndataset: {}\ntrain:\n  <<: {epochs: 2}\n"))


@pytest.mark.parametrize(
    ("text", "line", "key", "first"),
    [
        ("model: digits_cnn\ntrain:\n  epochs: 3\n  batch_size: 8\n  epochs: 5\n", 5, "'epochs'", 3),
        ("train: {epochs: 1}\nmodel: digits_cnn\nmodel: lenet5\n", 3, "'model'", 2),
        ("model: digits_cnn\ntrain: {epochs: 1, epochs: 2}\n", 2, "'epochs'", 2),
    ],
)
def test_duplicate_keys_are_refused_with_the_line_and_the_key(tmp_path, text, line, key, first):
    from edgeslim.pipeline import load_config

    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.lines()) == 1
    where = f"{path}: line {line}: "
    assert info.value.lines()[0].startswith(f"{where}duplicate key {key} (first on line {first})")


def test_a_duplicate_key_through_the_cli_is_one_line(tmp_path, capsys):
    path = _write(tmp_path, GOOD + "train: {epochs: 2}\n")
    lines = _cli_error_lines(capsys, ["pipeline", str(path), "--out", str(tmp_path / "run")])
    assert lines == [
        f"error: {path}: line 5: duplicate key 'train' (first on line 3); "
        "fix: keep one of them: YAML would silently use the last"
    ]


def test_a_huge_file_is_refused_before_it_is_read(tmp_path, capsys):
    path = tmp_path / "huge.yaml"
    with path.open("w") as handle:  # valid YAML, 2 MB of comments after a good config
        handle.write(GOOD)
        handle.write(("#" * 99 + "\n") * 20_000)
    lines = _cli_error_lines(capsys, ["pipeline", str(path), "--out", str(tmp_path / "run")])
    assert len(lines) == 1 and "2,0" in lines[0] and "more than a config's 1,048,576" in lines[0], lines
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 5000 + "]" * 5000 + "\n", "nested deeper than 32 levels"),
        ("train: [" + ",".join(["1"] * 30_000) + "]\n", "more than 20,000 values"),
        ("train: {epochs: " + "9" * 5000 + "}\n", "an integer of 5000 digits: too long"),
        ("- dataset\n- model\n", "the config must be a mapping of sections"),
        ("just text\n", "the config must be a mapping of sections"),
        ("x: 1\n---\ny: 2\n", "not valid YAML"),
        ("? [a, b]\n: 1\n", "a key must be a plain value"),
    ],
)
def test_odd_documents_are_refused_in_one_line(tmp_path, capsys, text, message):
    path = _write(tmp_path, text)
    start = time.perf_counter()
    lines = _cli_error_lines(capsys, ["pipeline", str(path), "--out", str(tmp_path / "run")])
    assert time.perf_counter() - start < 5
    assert len(lines) == 1 and message in lines[0], lines


def test_a_binary_file_is_not_a_config(tmp_path, capsys):
    path = tmp_path / "model.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    lines = _cli_error_lines(capsys, ["pipeline", str(path), "--out", str(tmp_path / "run")])
    assert len(lines) == 1 and "not a text file" in lines[0]


def test_set_values_go_through_the_same_reader():
    from edgeslim.pipeline import load_config

    with pytest.raises(ConfigError, match=r"--set train: line 1: alias \*a refused"):
        load_config(overrides=["train=[&a [1, 2], *a]"])
    with pytest.raises(ConfigError, match=r"--set train: line 1: duplicate key 'epochs'"):
        load_config(overrides=["train={epochs: 1, epochs: 9}"])
    with pytest.raises(ConfigError, match=r"--set train.epochs: line 1: an integer of 40 digits"):
        load_config(overrides=["train.epochs=" + "9" * 40])


# --- ranges ------------------------------------------------------------------------------------------

FT = "compress[0].prune.finetune"  # the default config's first stage fine-tunes
HUGE = 10**29  # YAML reads `1e29` as a string (YAML 1.1 floats need a dot), so write the integer out

RANGES = [
    ("train.epochs", "0", "train.epochs: must be a positive integer <= 10000, got 0"),
    ("train.epochs", str(HUGE), f"train.epochs: must be a positive integer <= 10000, got {HUGE}"),
    ("train.epochs", "1e29", "train.epochs: must be an integer, got '1e29'"),
    ("train.epochs", "1.0e+29", "train.epochs: must be an integer, got 1e+29"),
    ("train.epochs", "true", "train.epochs: must be an integer, got True"),
    ("train.batch_size", "0", "train.batch_size: must be a positive integer <= 65536, got 0"),
    ("train.batch_size", "65537", "train.batch_size: must be a positive integer <= 65536, got 65537"),
    ("train.seed", "-1", "train.seed: must be an integer >= 0 and <= 4294967295, got -1"),
    ("train.seed", "4294967296", "train.seed: must be an integer >= 0 and <= 4294967295, got 4294967296"),
    ("train.learning_rate", "0", "train.learning_rate: must be a number > 0 and <= 10, got 0"),
    ("train.learning_rate", "11", "train.learning_rate: must be a number > 0 and <= 10, got 11"),
    ("train.learning_rate", ".nan", "train.learning_rate: must be a finite number, got nan"),
    ("train.learning_rate", ".inf", "train.learning_rate: must be a finite number, got inf"),
    ("train.learning_rate", "false", "train.learning_rate: must be a finite number, got False"),
    ("train.momentum", "1", "train.momentum: must be a number in [0, 1), got 1"),
    ("train.step_epochs", "10001", "train.step_epochs: must be a positive integer <= 10000"),
    ("train.step_gamma", "0", "train.step_gamma: must be a number > 0 and <= 1, got 0"),
    ("train.l2", "-0.1", "train.l2: must be a number in [0, 1], got -0.1"),
    ("train.early_stopping", "-1", "train.early_stopping: must be an integer >= 0 and <= 10000, got -1"),
    ("train.augment_shift", "0.5", "train.augment_shift: must be a number in [0, 0.5), got 0.5"),
    ("train.augment_rotation", "-.inf", "train.augment_rotation: must be a finite number, got -inf"),
    ("train.augment_flip", "1", "train.augment_flip: must be true or false, got 1"),
    ("dataset.seed", "-1", "dataset.seed: must be an integer >= 0 and <= 4294967295, got -1"),
    ("dataset.seed", "yes", "dataset.seed: must be an integer, got True"),
    ("dataset.anomaly_class", "-1", "dataset.anomaly_class: must be an integer >= 0 and <= 65535, got -1"),
    ("dataset.image_size", "0", "dataset.image_size: each side must be in [1, 4096], got 0"),
    ("dataset.image_size", "100000x28", "dataset.image_size: each side must be in [1, 4096]"),
    ("dataset.image_size", "[28, 28.5]", "dataset.image_size: must be HxW like 28x28"),
    ("dataset.image_size", "true", "dataset.image_size: must be str or int or list or NoneType, got True"),
    ("export.agreement_floor", "1.5", "export.agreement_floor: must be a number in [0, 1], got 1.5"),
    ("export.agreement_floor", ".nan", "export.agreement_floor: must be a finite number, got nan"),
    ("export.calib_samples", "0", "export.calib_samples: must be a positive integer <= 100000, got 0"),
    ("export.calib_samples", str(HUGE), "export.calib_samples: must be a positive integer <= 100000"),
    ("export.firmware_samples", "10001", "export.firmware_samples: must be a positive integer <= 10000"),
    (f"{FT}.epochs", "10001", f"{FT}.epochs: must be an integer >= 0 and <= 10000, got 10001"),
    (f"{FT}.epochs", "-1", f"{FT}.epochs: must be an integer >= 0"),
    (f"{FT}.batch_size", "0", f"{FT}.batch_size: must be a positive integer <= 65536, got 0"),
    (f"{FT}.learning_rate", ".inf", f"{FT}.learning_rate: must be a finite number, got inf"),
    (f"{FT}.temperature", "1000", f"{FT}.temperature: must be a number > 0 and <= 100, got 1000"),
    (f"{FT}.alpha", "2", f"{FT}.alpha: must be a number in [0, 1], got 2"),
    (f"{FT}.seed", "-5", f"{FT}.seed: must be an integer >= 0"),
]

FIT_RANGES = [
    ("max_trials", "0", "fit.max_trials: must be a positive integer <= 1000, got 0"),
    ("max_trials", "1001", "fit.max_trials: must be a positive integer <= 1000, got 1001"),
    ("finetune_epochs", str(HUGE), f"fit.finetune_epochs: must be a positive integer <= 10000, got {HUGE}"),
    ("workers", "0", "fit.workers: must be a positive integer <= 1024, got 0"),
    ("max_flash", "-5", "fit.max_flash: must be a positive size, got -5"),
    ("max_flash", "true", "fit.max_flash: must be str or int, got True"),
    ("max_macs", "0", "fit.max_macs: must be a positive number, got 0"),
    ("max_latency_ms", ".inf", "fit.max_latency_ms: must be a finite number, got inf"),
    ("max_latency_ms", str(HUGE), None),  # a huge but finite limit is a loose budget, not a mistake
    ("max_loss", "101", "fit.max_loss: must be accuracy points in [0, 100], got 101"),
    ("loss_confidence", "1", "fit.loss_confidence: must be a number in [0.5, 1), got 1"),
]


@pytest.mark.parametrize(("key", "value", "message"), RANGES)
def test_every_number_is_ranged_by_key_path(key, value, message):
    from edgeslim.pipeline import load_config

    with pytest.raises(ConfigError) as info:
        load_config(overrides=[f"{key}={value}"])
    assert [line for line in info.value.lines() if line.startswith(message)], info.value.lines()


@pytest.mark.parametrize(("key", "value", "message"), FIT_RANGES)
def test_fit_numbers_are_ranged_by_key_path(key, value, message):
    from edgeslim.pipeline import load_config

    overrides = ["compress=[]", "fit.max_flash=64KB", f"fit.{key}={value}"]
    if message is None:
        assert load_config(overrides=overrides).fit[key] == int(value)
        return
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    assert [line for line in info.value.lines() if line.startswith(message)], info.value.lines()


def test_the_cli_names_every_mistake_of_a_file_in_one_line_each(tmp_path, capsys):
    path = _write(
        tmp_path,
        textwrap.dedent(
            f"""\
            dataset: {{name: digits, seed: -1}}
            model: digits_cnn
            train: {{epochs: {HUGE}, batch_size: 0, learning_rate: .nan, seed: 4294967296}}
            export: {{targets: [cpu], agreement_floor: 2, calib_samples: 0}}
            """
        ),
    )
    lines = _cli_error_lines(capsys, ["pipeline", str(path), "--out", str(tmp_path / "run")])
    keys = [
        "dataset.seed",
        "train.epochs",
        "train.batch_size",
        "train.learning_rate",
        "train.seed",
        "export.agreement_floor",
        "export.calib_samples",
    ]
    assert len(lines) == len(keys), lines
    for line, key in zip(lines, keys, strict=True):
        assert line.startswith(f"error: {key}: must be "), line
    assert not (tmp_path / "run").exists(), "no work may start before the config is valid"


@pytest.mark.parametrize(
    "argv",
    [
        ["--set", f"train.epochs={HUGE}"],
        ["--set", "train.epochs=1e29"],
        ["--epochs", "0"],
        ["--epochs", str(HUGE)],
    ],
)
def test_pipeline_epochs_from_the_command_line_are_ranged(tmp_path, capsys, argv):
    lines = _cli_error_lines(capsys, ["pipeline", "--out", str(tmp_path / "run"), *argv])
    assert len(lines) == 1 and lines[0].startswith("error: train.epochs: must be"), lines


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "error: train.epochs: must be a positive integer <= 10000, got 0"),
        (["--epochs", str(HUGE)], "error: train.epochs: must be a positive integer <= 10000"),
        (["--epochs", "1e29"], "error: edgeslim train: Invalid value for '--epochs'"),
        (["--batch-size", "0"], "error: train.batch_size: must be a positive integer <= 65536, got 0"),
        (["--lr", "inf"], "error: train.learning_rate: must be a finite number, got inf"),
        (["--lr", "nan"], "error: train.learning_rate: must be a finite number, got nan"),
        (["--seed", "-1"], "error: train.seed: must be an integer >= 0 and <= 4294967295, got -1"),
    ],
)
def test_train_options_end_as_one_error_line(tmp_path, capsys, argv, message):
    lines = _cli_error_lines(capsys, ["train", "--out", str(tmp_path / "run"), *argv])
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert not (tmp_path / "run" / "model.keras").exists()


def test_compress_finetune_options_are_ranged(tmp_path, capsys):
    model = tmp_path / "model.keras"  # validation refuses before any model is opened
    model.write_bytes(b"")
    argv = ["compress", str(model), "--stage", "prune:sparsity=0.5", "--finetune-epochs", "100000"]
    lines = _cli_error_lines(capsys, [*argv, "--lr", "inf", "--out", str(tmp_path / "run")])
    assert lines == [
        "error: prune.finetune.epochs: must be an integer >= 0 and <= 10000, got 100000",
        "error: prune.finetune.learning_rate: must be a finite number, got inf",
    ]


# --- the Python API ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "train.epochs: must be a positive integer <= 10000, got 0"),
        ({"epochs": HUGE}, "train.epochs: must be a positive integer <= 10000"),
        ({"epochs": 3.0}, "train.epochs: must be an integer, got 3.0"),
        ({"epochs": True}, "train.epochs: must be an integer, got True"),
        ({"epochs": "3"}, "train.epochs: must be an integer, got '3'"),
        ({"batch_size": 65537}, "train.batch_size: must be a positive integer <= 65536"),
        ({"learning_rate": math.inf}, "train.learning_rate: must be a finite number, got inf"),
        ({"learning_rate": math.nan}, "train.learning_rate: must be a finite number, got nan"),
        ({"learning_rate": 1e3}, "train.learning_rate: must be a number > 0 and <= 10, got 1000.0"),
        ({"seed": 2**32}, "train.seed: must be an integer >= 0 and <= 4294967295"),
        ({"optimizer": "lion"}, "train.optimizer: must be one of"),
    ],
)
def test_train_config_built_in_python_is_ranged(kwargs, message):
    from edgeslim.train.config import TrainConfig

    with pytest.raises(ConfigError) as info:
        TrainConfig(**kwargs)
    assert len(info.value.lines()) == 1 and info.value.lines()[0].startswith(message)
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(kwargs)
    assert len(info.value.lines()) == 1 and info.value.lines()[0].startswith(message)


def test_finetune_config_built_in_python_is_ranged():
    from dataclasses import replace

    from edgeslim.train.config import FinetuneConfig

    with pytest.raises(ConfigError, match=r"finetune.epochs: must be an integer >= 0 and <= 10000, got 1"):
        FinetuneConfig(epochs=10_001)
    with pytest.raises(ConfigError, match=r"finetune.temperature: must be a number > 0 and <= 100, got 1000"):
        FinetuneConfig(temperature=1e3)
    with pytest.raises(ConfigError, match=r"finetune.temperature: must be a finite number, got inf"):
        FinetuneConfig(temperature=math.inf)
    with pytest.raises(ConfigError, match=r"finetune.distill: must be true or false, got 1"):
        FinetuneConfig(distill=1)
    with pytest.raises(ConfigError, match=r"finetune.epochs: must be an integer"):
        replace(FinetuneConfig(), epochs=HUGE)  # what quantize's QAT does with a finetune config
    config = FinetuneConfig(epochs=3)
    assert config.train_config().epochs == 3 and config.train.learning_rate == 5e-4


def test_the_defaults_and_the_shipped_config_are_in_range():
    from edgeslim.pipeline import load_config
    from edgeslim.train.config import FinetuneConfig, TrainConfig

    assert TrainConfig().epochs == 8 and FinetuneConfig().epochs == 2
    config = load_config()
    assert config.train["epochs"] == 12 and [s.name for s in config.stages][0] == "prune"
    edges = ["train.seed=4294967295", "train.learning_rate=10", "dataset.image_size=[28, 28]"]
    assert load_config(overrides=edges).train["seed"] == 2**32 - 1


def test_messages_show_a_short_value():
    from edgeslim.pipeline import load_config

    with pytest.raises(ConfigError) as info:
        load_config(overrides=["train.optimizer=" + "x" * 10_000])
    assert len(info.value.lines()[0]) < 200
