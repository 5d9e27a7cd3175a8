"""fit's instruction model (fit/instructions.py): per operator kind, from firmware profiles; and where a
trial measures (fit/trial.py measuring_board). The firmware check, a calibration model's prior
predicting a model it never saw, is in test_firmware.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeslim.fit.instructions import InstructionModel, OpCost
from edgeslim.fit.trial import MEASURING_BOARD, measuring_board

# A made-up core: per kind, instructions = these coefficients . (macs, im2col, taps, outputs, inputs)
LAW = {"CONV_2D": [1.5, 6.0, 40.0, 60.0, 0.0], "MAX_POOL_2D": [0.0, 0.0, 0.0, 5.0, 30.0]}
OVERHEAD = 900


def record(op: OpCost) -> dict:
    instructions = round(float(np.dot(LAW[op.kind], op.features())))
    return {"op": op.kind, "multiplications": op.macs, "channels": op.channels, "outputs": op.outputs,
            "in_channels": op.in_channels, "inputs": op.inputs, "instructions": instructions}  # fmt: skip


def profile(ops: list[OpCost]) -> dict:
    records = [record(op) for op in ops]
    inside = sum(r["instructions"] for r in records)
    return {"complete": True, "instructions": inside + OVERHEAD, "ops_instructions": inside, "ops": records}


def conv(cin: int, cout: int, size: int, k: int) -> OpCost:
    positions = size * size
    return OpCost("CONV_2D", positions * k * k * cin * cout, cout, positions * cout, cin, positions * cin)


def pool(channels: int, size: int) -> OpCost:
    return OpCost("MAX_POOL_2D", 0, channels, size * size * channels // 4, channels, size * size * channels)


def test_the_model_learns_each_kinds_law_from_profiles():
    model = InstructionModel()
    assert model.observe_profile(profile([conv(1, 8, 24, 3), conv(8, 16, 12, 3), pool(16, 12)]))
    assert model.observe_profile(profile([conv(2, 4, 20, 5), conv(4, 32, 10, 1), pool(32, 10)]))
    assert model.observe_profile(profile([conv(16, 2, 8, 3), pool(2, 8)]))
    unseen = [conv(3, 5, 16, 7), conv(5, 64, 8, 3), pool(64, 8)]  # shapes no profile had
    expected = profile(unseen)["instructions"]
    assert model.predict(unseen) == pytest.approx(expected, rel=1e-3)


def test_a_kind_seen_too_seldom_is_priced_at_its_own_rate():
    model = InstructionModel()
    model.observe_profile(profile([conv(1, 8, 24, 3), conv(8, 16, 12, 3), conv(4, 4, 6, 1), pool(16, 12)]))
    # one pooling seen: not enough for its own fit, so its instructions per output element
    one = pool(16, 12)
    assert model.predict([one]) == pytest.approx(OVERHEAD + record(one)["instructions"], rel=1e-6)
    # a kind never seen with multiplications: the measured instructions per multiplication
    dense = OpCost("FULLY_CONNECTED", 1000, 10, 10, 100, 100)
    convs = [conv(1, 8, 24, 3), conv(8, 16, 12, 3), conv(4, 4, 6, 1)]
    rate = sum(record(c)["instructions"] for c in convs) / sum(c.macs for c in convs)
    assert model.predict([dense]) == pytest.approx(OVERHEAD + 1000 * rate, rel=1e-6)


def test_a_profile_without_operator_shapes_teaches_nothing():
    model = InstructionModel()
    assert not model.observe_profile(None)
    assert not model.observe_profile({"complete": False, "why": "control flow", "instructions": 5})
    old = profile([conv(1, 8, 24, 3)])
    for op in old["ops"]:
        del op["in_channels"]  # a sidecar from before the shapes were recorded
    assert not model.observe_profile(old) and not model.ready


def test_trials_measure_on_the_boards_own_core_with_room_to_spare(tmp_path):
    """A micro:bit plan is measured with the Cortex-M0 library (its code, scratch and instructions)
    on memory where a plan over its 16 KB still runs; no board: the default measuring profile."""
    from edgeslim.export.boards import load_board
    from edgeslim.export.firmware import resolve_machine

    path = measuring_board("microbit", tmp_path)
    board = load_board(path)
    machine = resolve_machine(path)
    assert machine.cpu == "cortex-m0" and machine.ram_bytes >= 4 << 20
    assert (board.ram_bytes, board.flash_bytes) == (machine.ram_bytes, machine.flash_bytes)
    assert json.loads((tmp_path / "measuring-board.json").read_text())["emulator"] == "cortex-m0"
    assert resolve_machine(measuring_board("mps3-an547", tmp_path)).cpu == "cortex-m55"
    assert measuring_board(None, tmp_path) == MEASURING_BOARD
    assert measuring_board("esp32-s3", tmp_path) == MEASURING_BOARD  # no emulator: host figures only
