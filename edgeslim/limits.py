"""The sane ranges every entry point shares (the config, the CLI, the Python API), in one place.

Generous for any edge model, so only a typo (``calib_samples: 1e9``) or a hostile file meets them.
Training's own bounds (epochs, batch size, seed) live with their defaults in ``train/config.py``.
"""

MAX_COUNT = 2**31 - 1  # any other count a stage parameter holds (parameters, steps)
MAX_CALIB_SAMPLES = 100_000  # representative samples for int8 calibration
MAX_FIRMWARE_SAMPLES = 10_000  # each one runs on the emulated board
MAX_VERIFY_SAMPLES = 10_000_000  # test samples an export verifies on
