"""TFLite Micro's kernel sets for the firmware, and what each adds to its build (a shared name list: the
export, fit and report layers all speak of it).

CMSIS-NN is what product builds on Arm cores use (TFLite Micro's ``OPTIMIZED_KERNEL_DIR=cmsis_nn``): its
figures are the ones a user will see. The reference kernels (portable C++) stay for comparison. Both
give the same outputs, byte for byte; they differ in instructions, flash and (a little) arena.
"""

from __future__ import annotations

from edgeslim.errors import ConfigError

DEFAULT_KERNELS = "cmsis_nn"
KERNELS: dict[str, str] = {
    "cmsis_nn": "CMSIS-NN",
    "reference": "TFLite Micro reference kernels",
}
# Kernel set -> {archive stem: folder under the Makefile's downloads/ it unpacks into}. The folders the
# Makefile's download scripts would fill: existing ones make them skip the download.
EXTRA_ARCHIVES: dict[str, dict[str, str]] = {
    "cmsis_nn": {"cmsis_nn": ".", "cmsis": ".", "cortex_dfp": "cmsis"},
    "reference": {},
}


def kernel_make_args(kernels: str) -> list[str]:
    """The Makefile arguments that choose the kernel set (none for the reference kernels)."""
    check_kernels(kernels)
    return [] if kernels == "reference" else [f"OPTIMIZED_KERNEL_DIR={kernels}"]


def check_kernels(kernels: str, key: str = "kernels") -> None:
    """One line for a kernel set no build knows, named as the caller spells it (``--kernels``)."""
    if kernels not in KERNELS:
        raise ConfigError(f"{key}: unknown kernel set {kernels!r}", f"choose one of {', '.join(KERNELS)}")


def kernel_name(kernels: str | None) -> str:
    """The kernel set in words; None (a sidecar from before the choice existed) was the reference build."""
    return KERNELS.get(kernels or "reference", str(kernels))


def firmware_only(kernels_key: str, firmware_key: str) -> ConfigError:
    """A kernel set chosen for a run that builds no firmware: said, not silently ignored."""
    return ConfigError(
        f"{kernels_key}: chooses TFLite Micro's kernels for the firmware, and no firmware is built",
        f"add {firmware_key} (target mcu), or drop {kernels_key}",
    )
