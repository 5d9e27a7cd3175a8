"""The mcu artifact as firmware: TFLite Micro for a Cortex-M4, run on QEMU's mps2-an386 board.

The figures come from the programs the tests build and run; the tests check how they relate (the
flash split adds up, the target's arena is the smallest that allocates and is below the 64-bit
host's, outputs equal TFLite Micro's Python interpreter byte for byte). Tests that build firmware skip
with the reason where the cross compiler, QEMU or the pinned TFLite Micro sources are missing. They
assume the library was built ahead (python -m edgeslim.export.firmware build); if not, the first one
builds it (minutes).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from processes import assert_refused, run_cli

from edgeslim.errors import EdgeslimError
from edgeslim.export import export_model
from edgeslim.export.firmware import (
    FirmwareResult,
    cached_library,
    firmware_available,
    raw_inputs,
    run_firmware,
)
from edgeslim.export.firmware.agreement import interpreter_outputs
from edgeslim.export.mcu_arena import recommended_arena
from edgeslim.runtime.tflite_file import read_tflite

AVAILABLE, WHY = firmware_available("cortex-m4")
needs_firmware = pytest.mark.skipif(not AVAILABLE, reason=f"no firmware toolchain: {WHY}")
SAMPLES = 12


@pytest.fixture(scope="module")
def fw_artifact(digits_model, digits, tmp_path_factory):
    pytest.importorskip("tflite_micro", reason="the mcu target needs the mcu extra (tflite-micro)")
    if not AVAILABLE:
        pytest.skip(f"no firmware toolchain: {WHY}")
    out = tmp_path_factory.mktemp("firmware")
    [artifact] = export_model(
        digits_model,
        digits,
        "mcu",
        out_dir=out,
        board="cortex-m4",
        calib_samples=32,
        verify_samples=120,
        firmware=True,
        firmware_samples=SAMPLES,
    )
    return artifact


@needs_firmware
def test_firmware_outputs_equal_the_interpreter(fw_artifact, digits):
    fw = fw_artifact.sidecar["mcu"]["firmware"]
    assert fw["machine"] == "mps2-an386" and fw["cpu"] == "cortex-m4" and fw["samples"] == SAMPLES
    agreement = fw["interpreter_agreement"]
    assert agreement["identical"] == 1.0 and agreement["max_diff_steps"] == 0  # same reference kernels
    assert fw_artifact.sidecar["verification"]["firmware"]["passed"] and fw_artifact.passed
    tflm = fw_artifact.sidecar["verification"]["tflm"]
    assert abs(fw["accuracy"] - tflm["accuracy"]) <= 0.2  # 12 samples vs 120: the same model, roughly


@needs_firmware
def test_flash_split_adds_up_and_holds_the_model(fw_artifact):
    fw = fw_artifact.sidecar["mcu"]["firmware"]
    assert fw["flash_bytes"] == fw["text_bytes"] + fw["data_bytes"]
    assert fw["ram_bytes"] == fw["data_bytes"] + fw["bss_bytes"]
    for kind in ("text", "data", "bss"):
        assert sum(group[kind] for group in fw["split"].values()) == fw[f"{kind}_bytes"]
    model = fw_artifact.sidecar["bytes"]
    assert model <= fw["model_bytes"] <= model + 32  # the array and its length
    assert 10_000 < fw["runtime_text_bytes"] < fw["text_bytes"] - model


@needs_firmware
def test_arena_is_measured_on_the_target(fw_artifact):
    mcu = fw_artifact.sidecar["mcu"]
    fw = mcu["firmware"]
    assert mcu["arena_source"] == "firmware" and mcu["arena_bytes"] == fw["arena_min_bytes"]
    assert mcu["arena_bytes"] == mcu["firmware"]["measured_before_write"]["arena_min_bytes"]
    assert mcu["arena_bytes"] < mcu["arena_host_bytes"]  # 32-bit pointers: less than the host's bisection
    assert fw["arena_used_bytes"] <= fw["arena_min_bytes"] <= fw["arena_used_bytes"] + 16
    assert mcu["arena_size"] == recommended_arena(mcu["arena_bytes"])
    assert fw["arena_linked_bytes"] == mcu["arena_size"]  # the package's kTensorArenaSize, as it ships
    assert fw["bss_bytes"] >= mcu["arena_size"]
    header = (fw_artifact.path.parent / "mcu" / "model_data.h").read_text()
    assert (
        f"kTensorArenaSize = {mcu['arena_size']};" in header
        and "on the target, cortex-m4 on mps2-an386" in header
    )


@needs_firmware
def test_instructions_and_fit_come_from_the_firmware(fw_artifact):
    mcu = fw_artifact.sidecar["mcu"]
    fw = mcu["firmware"]
    assert fw["instructions_per_inference"] > 100_000 and fw["instructions_per_tick"] > 0
    assert fw["instructions_max"] - fw["instructions_min"] <= 0.01 * fw["instructions_per_inference"]
    assert mcu["fit"]["basis"].startswith("firmware") and mcu["fits"]
    assert mcu["flash_bytes"] == fw["flash_bytes"]
    assert mcu["ram_needed_bytes"] == fw["ram_bytes"] + fw["stack_used_bytes"] and fw["stack_used_bytes"] > 0
    readme = (fw_artifact.path.parent / "mcu" / "README.md").read_text()
    assert f"{fw['instructions_per_inference']:,}" in readme and "mps2-an386" in readme


@needs_firmware
def test_run_firmware_on_bytes_alone(fw_artifact, digits):
    data = fw_artifact.path.read_bytes()
    result = run_firmware(data, "cortex-m4", digits.x_test[:3])
    assert isinstance(result, FirmwareResult) and result.outputs.shape == (3, 10)
    assert result.outputs.dtype == np.int8
    mcu = fw_artifact.sidecar["mcu"]
    assert (
        result.arena_min_bytes == mcu["arena_bytes"] and result.arena_linked_bytes == result.arena_min_bytes
    )
    raw = raw_inputs(read_tflite(data), digits.x_test[:3])
    reference = interpreter_outputs(data, raw, mcu["arena_size"] * 2)
    assert np.array_equal(result.outputs, reference)
    assert json.dumps(result.to_dict())  # JSON-ready, without the raw outputs
    zeros = run_firmware(data, "stm32l4r5")  # a board profile with a Cortex-M4: one inference on zeros
    assert zeros.outputs.shape == (1, 10) and zeros.flash_bytes == result.flash_bytes
    zero_input = np.zeros((1, *digits.x_test.shape[1:]), np.int8)  # zeros, not what the arena held before
    assert np.array_equal(zeros.outputs, interpreter_outputs(data, zero_input, mcu["arena_size"] * 2))


@needs_firmware
def test_firmware_command_runs_a_tflite_it_is_given(fw_artifact, tmp_path):
    out = tmp_path / "fw"
    done = run_cli(
        "firmware", str(fw_artifact.path), "--dataset", "digits", "--limit", "4", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "instructions per inference" in done.stderr and "byte for byte on 100% of 4" in done.stderr
    report = json.loads((out / "firmware.json").read_text())
    fw = fw_artifact.sidecar["mcu"]["firmware"]
    assert report["arena_min_bytes"] == fw["arena_min_bytes"] and report["model_bytes"] == fw["model_bytes"]
    check = report["check"]
    assert check["identical"] == 1.0 and check["criterion"] == "agreement" and check["passed"]
    assert 0.0 <= check["metrics"]["accuracy"] <= 1.0 and check["metrics"]["samples"] == 4
    assert np.load(out / "outputs.npy").shape == (4, 10)
    samples = tmp_path / "samples.npy"
    np.save(samples, np.zeros((2, 3)))  # not the model's input shape
    assert_refused(
        run_cli("firmware", str(fw_artifact.path), "--inputs", str(samples)), "(2, 3)", "(N, 8, 8, 1)"
    )
    damaged = tmp_path / "damaged.tflite"
    damaged.write_bytes(fw_artifact.path.read_bytes()[:5000])
    assert_refused(run_cli("firmware", str(damaged)), "damaged.tflite")


@needs_firmware
def test_a_reconstruction_model_through_firmware(digits, tmp_path):
    """The autoencoder's per-channel fully connected kernel faults in a too-small arena: the search on
    the target survives it, and the firmware is verified by the task's rule (fidelity), not by argmax."""
    from edgeslim.data.anomaly import dataset_for_task
    from edgeslim.train.zoo import build_model

    data = dataset_for_task(digits, "reconstruction")
    model = build_model("autoencoder", data.input_shape, 0)
    [artifact] = export_model(
        model,
        data,
        "mcu",
        out_dir=tmp_path,
        calib_samples=16,
        verify_samples=40,
        firmware=True,
        firmware_samples=6,
    )
    fw = artifact.sidecar["mcu"]["firmware"]
    assert fw["task"] == "reconstruction" and fw["mse"] > 0 and "accuracy" not in fw
    agreement = fw["interpreter_agreement"]
    assert agreement["criterion"] == "fidelity" and agreement["identical"] == 1.0 and agreement["passed"]
    assert fw["arena_used_bytes"] <= fw["arena_min_bytes"] == artifact.sidecar["mcu"]["arena_bytes"]
    assert "fidelity 100%" in (artifact.path.parent / "mcu" / "README.md").read_text()


@needs_firmware
def test_readme_snippet_compiles_as_written(fw_artifact, tmp_path):
    library = cached_library("cortex-m4")
    assert library is not None  # the fixture's export built or found it
    package = fw_artifact.path.parent / "mcu"
    readme = (package / "README.md").read_text()
    [snippet] = re.findall(r"```cpp\n(.*?)```", readme, re.S)
    assert "#include <cmath>" in snippet
    (tmp_path / "classify.cc").write_text(snippet)
    cmd = [
        "arm-none-eabi-g++",
        "-mcpu=cortex-m4",
        "-mthumb",
        "-mfloat-abi=soft",
        "-std=c++17",
        "-fno-rtti",
        "-fno-exceptions",
        "-DTF_LITE_STATIC_MEMORY",
        "-Wall",
        "-Wextra",
        "-Werror",
        f"-I{package}",
        *(f"-isystem{d}" for d in library.include_dirs),
        "-c",
        str(tmp_path / "classify.cc"),
        "-o",
        str(tmp_path / "classify.o"),
    ]
    built = subprocess.run(cmd, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]


@needs_firmware
def test_a_board_too_small_for_the_firmware_fails_before_writing(digits_model, digits, tmp_path, fw_artifact):
    fw = fw_artifact.sidecar["mcu"]["firmware"]
    from edgeslim.export.boards import load_board

    small = dict(
        load_board("cortex-m4").to_dict(), name="small", ram_bytes=fw["ram_bytes"], ram_reserved_bytes=0
    )  # the stack no longer fits
    board = tmp_path / "small.json"
    board.write_text(json.dumps(small))
    out = tmp_path / "out"
    with pytest.raises(EdgeslimError, match=r"does not fit board small.*RAM: the firmware needs"):
        export_model(
            digits_model,
            digits,
            "mcu",
            out_dir=out,
            board=str(board),
            calib_samples=16,
            verify=False,
            firmware=True,
        )
    assert not out.exists() or not list(out.iterdir())  # nothing half-written


def test_unavailable_firmware_says_why(monkeypatch, digits_model, digits, tmp_path):
    ok, why = firmware_available("esp32-s3")
    assert not ok and "Xtensa" in why
    assert not firmware_available("arduino-uno")[0]
    monkeypatch.setenv("PATH", str(tmp_path))  # no cross compiler, no QEMU
    ok, why = firmware_available("cortex-m4")
    assert not ok and "arm-none-eabi" in why
    with pytest.raises(EdgeslimError, match="cannot build the firmware for cortex-m4"):
        run_firmware(b"TFL3", "cortex-m4")
    with pytest.raises(EdgeslimError, match="firmware applies to target mcu"):
        export_model(digits_model, digits, "cpu", out_dir=tmp_path / "x", firmware=True)


@needs_firmware
def test_cmsis_nn_by_default_and_the_reference_kernels_beside_it(fw_artifact, digits, tmp_path):
    """CMSIS-NN is the default build (what products ship); the reference build gives the same bytes out
    for more instructions. Each kernel set is its own cached library."""
    fw = fw_artifact.sidecar["mcu"]["firmware"]
    assert fw["kernels"] == "cmsis_nn" and "-cmsis_nn-" in fw["library_key"]
    assert "CMSIS-NN" in (fw_artifact.path.parent / "mcu" / "README.md").read_text()
    x = digits.x_test[:3]
    cmsis = run_firmware(fw_artifact.path, "cortex-m4", x)
    reference = run_firmware(fw_artifact.path, "cortex-m4", x, kernels="reference")
    assert (cmsis.kernels, reference.kernels) == ("cmsis_nn", "reference")
    assert cmsis.library_key != reference.library_key and "-reference-" in reference.library_key
    assert np.array_equal(cmsis.outputs, reference.outputs)  # the same arithmetic, byte for byte
    assert cmsis.instructions_per_inference < reference.instructions_per_inference
    assert cmsis.runtime_text_bytes > reference.runtime_text_bytes  # the larger kernels
    library = cached_library("cortex-m4", "reference")
    assert library is not None and library.info["make"][-1] == "BUILD_TYPE=release"
    assert "OPTIMIZED_KERNEL_DIR=cmsis_nn" in cached_library("cortex-m4").info["make"]
    done = run_cli("firmware", str(fw_artifact.path), "--kernels", "reference", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["kernels"] == "reference", done.stderr[-2000:]
    assert_refused(run_cli("firmware", str(fw_artifact.path), "--kernels", "fast"), "--kernels", "cmsis_nn")


def test_kernels_without_firmware_is_a_mistake(digits_model, digits, tmp_path):
    model = tmp_path / "m.keras"
    digits_model.save(model)
    done = run_cli(
        "export", str(model), "--target", "mcu", "--kernels", "reference", "--out", str(tmp_path / "o")
    )
    assert_refused(done, "kernels", "--firmware")
    assert not (tmp_path / "o").exists()
    assert_refused(
        run_cli("export", str(model), "--target", "mcu", "--kernels", "fast"), "--kernels", "cmsis_nn"
    )


@needs_firmware
def test_cortex_m7_on_mps2_an500(fw_artifact):
    if cached_library("cortex-m7") is None or shutil.which("qemu-system-arm") is None:  # CI prebuilds it
        pytest.skip(
            "TFLite Micro for cortex-m7 is not prebuilt (python -m edgeslim.export.firmware build "
            "--cpu cortex-m7)"
        )
    result = run_firmware(fw_artifact.path, "cortex-m7")
    assert result.machine == "mps2-an500" and result.cpu == "cortex-m7"
    assert result.arena_min_bytes == fw_artifact.sidecar["mcu"]["arena_bytes"]  # same 32-bit layout
    assert result.instructions_per_inference > 100_000


@needs_firmware
def test_library_is_cached_whole_outside_the_repository(fw_artifact):
    from pathlib import Path

    library = cached_library("cortex-m4")
    assert library is not None and library.archive.is_file()
    info = library.info
    assert (
        info["cpu"] == "cortex-m4" and "TARGET_ARCH=cortex-m4" in info["make"] and info["build_seconds"] > 0
    )
    assert Path(__file__).resolve().parents[1] not in library.root.resolve().parents
    assert (library.root / "include" / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").is_file()
    assert not list(library.root.parent.glob(f".build-{library.key}-*"))  # no half-built folder left
    assert fw_artifact.sidecar["mcu"]["firmware"]["library_key"] == library.key


def test_the_resolver_method_names_are_the_real_headers(fw_artifact):
    """The names the C package calls are exactly the Add methods of the TFLite Micro being built."""
    import re

    from edgeslim.export.mcu_resolver import RESOLVER_METHODS

    library = cached_library("cortex-m4")
    header = library.root / "include" / "tensorflow" / "lite" / "micro" / "micro_mutable_op_resolver.h"
    real = set(re.findall(r"TfLiteStatus (Add\w+)\(", header.read_text())) - {"AddBuiltin", "AddCustom"}
    assert real == RESOLVER_METHODS


# The boards CI prebuilds a library for (.ci/run); a developer's machine builds the others on first use.
BOARDS = [
    "microbit",
    "stm32vldiscovery",
    "netduinoplus2",
    "cortex-m0",
    "cortex-m3",
    "cortex-m7",
    "cortex-m33",
    "cortex-m55",
]


@pytest.fixture(scope="module")
def tiny_tflite(digits, tmp_path_factory):
    """A dense int8 model small enough for an 8 KB-RAM board: 64 -> 12 -> 10 on the digits."""
    pytest.importorskip("tflite_micro", reason="the mcu target needs the mcu extra (tflite-micro)")
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input(digits.input_shape), keras.layers.Flatten(), keras.layers.Dense(12, activation="relu"),
         keras.layers.Dense(10, activation="softmax")]
    )  # fmt: skip
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(digits.x_train, digits.y_train, epochs=3, verbose=0)
    out = tmp_path_factory.mktemp("tiny")
    [artifact] = export_model(model, digits, "mcu", out_dir=out, calib_samples=32, verify_samples=60)
    return artifact.path


@needs_firmware
@pytest.mark.parametrize("board", BOARDS)
def test_each_board_runs_the_firmware_in_its_own_memory(board, tiny_tflite, digits):
    from edgeslim.export.firmware import resolve_machine

    machine = resolve_machine(board)
    if cached_library(machine.cpu) is None:  # CI prebuilds every one (and fails a skip)
        pytest.skip(f"TFLite Micro for {machine.cpu} is not prebuilt (python -m edgeslim.export.firmware "
                    f"build --cpu {board})")  # fmt: skip
    data = tiny_tflite.read_bytes()
    result = run_firmware(data, board, digits.x_test[:3])
    assert (result.machine, result.cpu, result.kernels) == (machine.machine, machine.cpu, "cmsis_nn")
    raw = raw_inputs(read_tflite(data), digits.x_test[:3])
    assert np.array_equal(result.outputs, interpreter_outputs(data, raw, 64 * 1024))
    # The linker placed everything in the board's own memory, the stack's reserve included.
    assert result.flash_bytes <= machine.flash_bytes
    assert result.ram_bytes + machine.stack_bytes <= machine.ram_bytes
    assert 0 < result.stack_used_bytes < machine.stack_bytes
    assert result.instructions_per_inference > 1_000


@needs_firmware
def test_a_model_too_big_for_a_board_says_by_how_much(fw_artifact, digits):
    """The digits CNN's arena does not fit the STM32F100's 8 KB beside the runtime and the stack."""
    if cached_library("cortex-m3") is None:
        pytest.skip("TFLite Micro for cortex-m3 is not prebuilt")
    with pytest.raises(EdgeslimError) as caught:
        run_firmware(fw_artifact.path, "stm32f100", digits.x_test[:1], arena_margin=0.25)
    message = caught.value.message
    assert "does not fit ST STM32VLDISCOVERY" in message and "8,192 B of RAM" in message
    arena = int(re.search(r"\(([\d,]+) B\)$", message).group(1).replace(",", ""))
    assert 0 < arena < fw_artifact.sidecar["mcu"]["arena_bytes"]  # what the board holds, and too little
    assert "shrink the model" in caught.value.hint


@needs_firmware
def test_a_model_too_big_for_a_boards_flash_gets_the_linkers_figure(digits, tmp_path):
    """80 KB of int8 weights and TFLite Micro outgrow the STM32F100's 128 KB of flash: the linker says."""
    import keras

    if cached_library("cortex-m3") is None:
        pytest.skip("TFLite Micro for cortex-m3 is not prebuilt")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input(digits.input_shape), keras.layers.Flatten(), keras.layers.Dense(1200, activation="relu"),
         keras.layers.Dense(10, activation="softmax")]
    )  # fmt: skip
    [artifact] = export_model(model, digits, "mcu", out_dir=tmp_path, calib_samples=16, verify=False)
    with pytest.raises(EdgeslimError, match=r"does not fit ST STM32VLDISCOVERY .*: over FLASH by [\d,]+ B"):
        run_firmware(artifact.path, "stm32vldiscovery")


def test_board_profiles_name_their_emulated_machine():
    from edgeslim.export.boards import BOARDS as PROFILES
    from edgeslim.export.firmware import MACHINES, resolve_machine

    for name in ("microbit", "stm32f100", "stm32f405", "mps2-an385", "mps2-an386", "mps2-an500", "mps2-an505",
                 "mps3-an547"):  # fmt: skip
        profile = PROFILES[name]
        machine = resolve_machine(name)
        assert profile.emulator in MACHINES and machine is MACHINES[profile.emulator]
        # The profile's memory is the machine's: the linker's verdict and the board fit agree.
        assert (profile.ram_bytes, profile.flash_bytes) == (machine.ram_bytes, machine.flash_bytes)
    assert resolve_machine("microbit").cpu == "cortex-m0" and resolve_machine("stm32f100").ram_bytes == 8192
    assert resolve_machine("nrf52840").machine == "mps2-an386"  # no emulator named: its core's MPS2 board
    script = resolve_machine("stm32vldiscovery").linker_script()
    assert "ORIGIN = 0x08000000, LENGTH = 131072" in script and "LENGTH = 8192" in script
    # The Armv8-M boards start in the Secure state, at their vector table's Secure alias.
    assert "ORIGIN = 0x10000000" in resolve_machine("mps2-an505").linker_script()
    assert resolve_machine("mps3-an547").has_helium and not resolve_machine("cortex-m33").has_helium


@needs_firmware
def test_the_operator_profile_adds_up_to_the_inference(fw_artifact):
    """Each operator timed on the board: one entry per operator of the file, in order, with its
    multiplications; their sum within 2 % of the whole inference (the interpreter's own work between)."""
    from edgeslim.analysis.tflite_model import analyze_tflite
    from edgeslim.report.markdown import firmware_profiles, profile_rows

    fw = fw_artifact.sidecar["mcu"]["firmware"]
    profile = fw["profile"]
    ops = analyze_tflite(fw_artifact.path)["ops"]
    assert profile["complete"] and [o["op"] for o in profile["ops"]] == [o["op"] for o in ops]
    assert [o["multiplications"] for o in profile["ops"]] == [o["multiplications"] for o in ops]
    assert sum(o["multiplications"] for o in ops) > 0
    assert 0.98 <= profile["ops_instructions"] / fw["instructions_per_inference"] <= 1.0
    assert all(o["instructions"] > 0 for o in profile["ops"])
    assert sum(layer["instructions"] for layer in profile["layers"]) == profile["ops_instructions"]
    assert abs(sum(layer["share"] for layer in profile["layers"]) - profile["ops_share"]) < 0.001 * len(ops)
    readme = (fw_artifact.path.parent / "mcu" / "README.md").read_text()
    assert "Where the time goes" in readme and profile["layers"][0]["layer"] in readme
    [(title, shown)] = firmware_profiles({"artifacts": [{"name": "m", "mcu": fw_artifact.sidecar["mcu"]}]})
    assert "CMSIS-NN" in title and len(profile_rows(shown)) == len(profile["layers"])
    from edgeslim.report.fit import firmware_line  # what edgeslim fit prints for its winner

    line = firmware_line({"best": {"mcu": fw_artifact.sidecar["mcu"]}})
    assert line.startswith("Firmware (CMSIS-NN, cortex-m4 on QEMU's mps2-an386)")
    assert f"{fw['instructions_per_inference']:,} instructions" in line


# The calibration model's prior alone against the digits CNN's measured CMSIS-NN instructions: +5.2 %
# here (Cortex-M4); in proportion to the calibration model's multiplications instead, +388 %.
PRIOR_BOUND = 0.15


@needs_firmware
def test_the_instruction_model_prices_a_model_it_never_saw(fw_artifact):
    """fit's prior (a calibration model's operators, measured once per core and kernel set) predicts
    the instructions of a model it never saw, operator by operator, where a rate per multiplication
    does not."""
    from edgeslim.fit.calibration import calibration_profile
    from edgeslim.fit.instructions import InstructionModel, OpCost

    prior = calibration_profile("cortex-m4", "cmsis_nn")
    model = InstructionModel()
    assert model.observe_profile(prior)
    profile = fw_artifact.sidecar["mcu"]["firmware"]["profile"]
    ops = [OpCost.from_profile(o) for o in profile["ops"]]
    measured = profile["instructions"]
    predicted = model.predict(ops)
    per_mac = prior["instructions"] / sum(o["multiplications"] for o in prior["ops"])
    proportional = per_mac * sum(op.macs for op in ops)
    assert abs(predicted / measured - 1) <= PRIOR_BOUND, (predicted, measured)
    assert abs(proportional / measured - 1) > 2 * PRIOR_BOUND, (proportional, measured)
