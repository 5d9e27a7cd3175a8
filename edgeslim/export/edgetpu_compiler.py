"""Run Coral's ``edgetpu_compiler`` when it is on PATH, and read its operation table.

The compiler is an x86-64 Linux binary from Coral's package repository. Its ``-s`` log ends with a
table of ``Operator  Count  Status`` rows ("Mapped to Edge TPU", or why not) that we parse.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

COMPILER = "edgetpu_compiler"
TIMEOUT_S = 600
_ROW = re.compile(r"^(?P<op>[A-Z][A-Z0-9_]+)\s+(?P<count>\d+)\s+(?P<status>\S.*)$")
_COUNT = re.compile(r"Number of operations that will run on (?P<where>Edge TPU|CPU):\s+(?P<n>\d+)")
_VERSION = re.compile(r"Edge TPU Compiler version (\S+)")


def compiler_path() -> str | None:
    return shutil.which(COMPILER)


def run_compiler(model: Path, out_dir: Path) -> dict[str, Any]:
    """Compile ``model`` into ``out_dir``; return the parsed log (``compiled_path`` when it succeeded)."""
    exe = compiler_path()
    if exe is None:
        return {"ran": False, "reason": f"{COMPILER} is not on PATH"}
    try:
        done = subprocess.run(
            [exe, "-s", "-o", str(out_dir), str(model)], capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"ran": False, "reason": f"{COMPILER} failed to run ({type(exc).__name__})"}
    parsed = parse_log(done.stdout + "\n" + done.stderr)
    compiled = out_dir / f"{model.stem}_edgetpu.tflite"
    parsed.update({"ran": True, "returncode": done.returncode, "log": done.stdout[-4000:]})
    if done.returncode == 0 and compiled.is_file():
        parsed["compiled_path"] = str(compiled)
    return parsed


def parse_log(text: str) -> dict[str, Any]:
    """The compiler's per-op table and its TPU/CPU op counts."""
    rows = []
    for line in text.splitlines():
        match = _ROW.match(line.strip())
        if match and match["op"] not in ("Operator",):
            rows.append({"op": match["op"], "count": int(match["count"]), "status": match["status"].strip()})
    counts = {m["where"]: int(m["n"]) for m in _COUNT.finditer(text)}
    version = _VERSION.search(text)
    return {
        "compiler_version": version.group(1) if version else None,
        "ops": rows,
        "mapped_ops": counts.get("Edge TPU"),
        "cpu_ops": counts.get("CPU"),
    }
