"""``python -m edgeslim.export.firmware build|check``: build TFLite Micro ahead, or say what is missing.

CI calls ``build`` before the tests so that no test waits minutes for the library:

    python -m edgeslim.export.firmware build --cpu cortex-m4 --kernels cmsis_nn --kernels reference
"""

from __future__ import annotations

import argparse
import json
import sys

from edgeslim.errors import EdgeslimError
from edgeslim.export.firmware.library import cache_root, cached_library, ensure_library
from edgeslim.export.firmware.machines import MACHINES, resolve_machine
from edgeslim.export.firmware.run import firmware_available
from edgeslim.tflm_kernels import DEFAULT_KERNELS, KERNELS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edgeslim.export.firmware", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build and cache TFLite Micro for the given cores")
    build.add_argument(
        "--cpu", action="append", choices=sorted(MACHINES), help="repeatable; default cortex-m4"
    )
    build.add_argument(
        "--kernels",
        action="append",
        choices=sorted(KERNELS),
        help=f"repeatable; default {DEFAULT_KERNELS} (CMSIS-NN, as products ship)",
    )
    build.add_argument("--jobs", type=int, default=2, help="parallel compile jobs (default 2)")
    commands.add_parser("check", help="print, as JSON, whether each emulated board can run here")
    args = parser.parse_args(argv)
    if args.command == "check":
        report = {}
        for name in sorted(MACHINES):
            ok, reason = firmware_available(name)
            libraries = {
                kernels: cached_library(resolve_machine(name).cpu, kernels) if ok else None
                for kernels in KERNELS
            }
            report[name] = {
                "available": ok,
                "reason": reason,
                "libraries": {k: str(lib.root) if lib else None for k, lib in libraries.items()},
            }
        print(json.dumps({"cache": str(cache_root()), "boards": report}, indent=2))
        return 0
    try:
        for cpu in args.cpu or ["cortex-m4"]:
            ok, reason = firmware_available(cpu)
            if not ok:
                raise EdgeslimError(f"cannot build the firmware for {cpu}: {reason}")
            for kernels in args.kernels or [DEFAULT_KERNELS]:
                library = ensure_library(
                    resolve_machine(cpu).cpu, kernels, jobs=args.jobs, log=lambda m: print(m, flush=True)
                )
                info = library.info
                print(
                    f"{cpu} {kernels}: {library.root} ({info['library_bytes']:,} B, "
                    f"built in {info['build_seconds']} s)"
                )
    except EdgeslimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
