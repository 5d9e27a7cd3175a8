"""The report's one data model, built from the run's manifest, the config as run, and the records and
sidecars the manifest's steps point at (never a directory listing: a stage folder left by an earlier,
longer run is not part of this run).

run -> stages (each with its LiteRT-deployed measurement and per-layer table) -> exported artifacts.
The JSON schema is versioned (SCHEMA) and documented in the README.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edgeslim.errors import EdgeslimError

SCHEMA = "edgeslim.report/1"


def build_report(run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    manifest = _read_manifest(run_dir)
    steps = [s for s in manifest["steps"] if _step_ok(run_dir, s)]  # a tampered entry is not read
    stage_dirs = [run_dir / s["dir"] for s in steps if s["name"] == "train" or s["name"][:2].isdigit()]
    stages = [_stage(d) for d in stage_dirs if (d / "metrics.json").is_file()]
    if not stages:
        raise EdgeslimError(f"{run_dir}: the manifest lists no completed steps", "rerun `edgeslim pipeline`")
    baseline = stages[0]["deployed"]["accuracy"]
    for stage in stages:
        stage["delta_vs_baseline"] = _delta(stage["deployed"]["accuracy"], baseline)
    export_dirs = [run_dir / s["dir"] for s in steps if s["name"].startswith("exports/")]
    artifacts = [row for d in export_dirs for row in _artifacts(d, baseline)]
    points = [(s["name"], s["deployed"]["bytes"], s["deployed"]["accuracy"]) for s in stages]
    points += [(a["name"], a["bytes"], a["accuracy"]) for a in artifacts]
    pareto = pareto_front([(b, a) for _, b, a in points if b is not None and a is not None])
    dataset = stages[0].get("dataset") or {}
    return {
        "schema": SCHEMA,
        "run_dir": str(run_dir),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "config": manifest.get("config"),
        "dataset": dataset,
        "task": dataset.get("task", "classification"),
        "baseline_accuracy": baseline,
        "baseline_metrics": stages[0]["deployed"].get("metrics"),
        "stages": stages,
        "artifacts": artifacts,
        "pareto": [name for name, b, a in points if (b, a) in pareto],
        "failures": [a["name"] + ": " + a["failure"] for a in artifacts if a.get("failure")],
    }


def _read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "manifest.json"
    if not path.is_file():
        raise EdgeslimError(
            f"{run_dir}: no manifest.json (not a pipeline run)", "run `edgeslim pipeline --out RUN_DIR`"
        )
    manifest = _read_json(path)
    if not isinstance(manifest.get("steps"), list):
        raise EdgeslimError(f"{path}: not an edgeslim manifest", "rerun `edgeslim pipeline` into this folder")
    return manifest


def _step_ok(run_dir: Path, step: Any) -> bool:
    """A manifest step whose folder lies inside the run (a tampered ``../..`` is skipped, never read)."""
    from edgeslim.ownership import member

    return (
        isinstance(step, dict)
        and isinstance(step.get("name"), str)
        and member(run_dir, step.get("dir")) is not None
    )


def _stage(step_dir: Path) -> dict[str, Any]:
    metrics = _read_json(step_dir / "metrics.json")
    record = _read_json(step_dir / "record.json") if (step_dir / "record.json").is_file() else None
    deployed = metrics.get("deployed", {})
    verification = deployed.get("verification", {})
    return {
        "name": step_dir.name,
        "stage": record["stage"] if record else "train",
        "dataset": metrics.get("dataset"),
        "params_config": record["params"] if record else None,
        "params": metrics["params"],
        "nonzero_params": metrics["nonzero_params"],
        "macs": metrics["macs"],
        "macs_complete": metrics.get("macs_complete", True),
        "keras_accuracy": metrics.get("test_accuracy"),
        "keras_metrics": metrics.get("test_metrics"),
        "deployed": {
            "path": f"{step_dir.name}/{deployed.get('path', '')}",
            "format": deployed.get("format"),
            "quantization": _mode(deployed.get("quantization")),
            "bytes": deployed.get("bytes"),
            "gzip_bytes": deployed.get("gzip_bytes"),
            "accuracy": verification.get("accuracy"),
            "metrics": verification.get("metrics"),
            "backend": verification.get("backend"),
            "latency_ms_p50": verification.get("latency_ms_p50"),
        },
        "layers": metrics.get("layers", []),
        "changes": record["layers"] if record else [],
        "finetune": (record or {}).get("finetune"),
        "finetuned": bool((record or {}).get("finetune")),
        "qat": ((record or {}).get("extra") or {}).get("qat"),
        "notes": (record or {}).get("notes", []),
        "seconds": _read_json(step_dir / "step.json").get("seconds")
        if (step_dir / "step.json").is_file()
        else None,
    }


def _artifacts(target_dir: Path, baseline: float | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    marker = _read_json(target_dir / "step.json") if (target_dir / "step.json").is_file() else {}
    for failure in marker.get("failures", []):
        if "failed verification" not in failure:
            rows.append(
                {
                    "name": target_dir.name,
                    "target": target_dir.name,
                    "failure": failure,
                    "bytes": None,
                    "accuracy": None,
                }
            )
    from edgeslim.ownership import member

    for rel in marker.get("artifacts", []):
        sidecar_path = member(target_dir, f"{rel}.json") if isinstance(rel, str) else None
        if sidecar_path is not None and sidecar_path.is_file():
            rows.append(_artifact_row(target_dir.name, rel, _read_json(sidecar_path), baseline))
    return rows


def _artifact_row(target: str, rel: str, sidecar: dict[str, Any], baseline: float | None) -> dict[str, Any]:
    verification = sidecar.get("verification") or {}
    passed = verification.get("passed", True)
    row = {
        "name": f"{target}/{rel}",
        "target": target,
        "path": f"exports/{target}/{rel}",
        "format": sidecar.get("format"),
        "quantization": _mode(sidecar.get("quantization")),
        "bytes": sidecar.get("bytes"),
        "gzip_bytes": sidecar.get("gzip_bytes"),
        "accuracy": verification.get("accuracy"),
        "metrics": verification.get("metrics"),
        "delta_vs_baseline": _delta(verification.get("accuracy"), baseline),
        "agreement": verification.get("agreement"),
        "backend": verification.get("backend"),
        "latency_ms_p50": verification.get("latency_ms_p50"),
        "passed": passed,
        "failure": None if passed else "below the agreement floor",
    }
    if sidecar.get("mcu"):
        row["mcu"] = sidecar["mcu"]
    if sidecar.get("edgetpu"):
        row["edgetpu"] = sidecar["edgetpu"]
    return row


def pareto_front(points: list[tuple[float, float]]) -> set[tuple[float, float]]:
    """Points (bytes, accuracy) that no other point beats: fewer or equal bytes and higher accuracy."""
    front = set()
    for b, a in points:
        dominated = any((b2 <= b and a2 >= a) and (b2 < b or a2 > a) for b2, a2 in points)
        if not dominated:
            front.add((b, a))
    return front


def _mode(quantization: Any) -> Any:
    return quantization.get("mode") if isinstance(quantization, dict) else quantization


def _delta(value: float | None, baseline: float | None) -> float | None:
    return None if value is None or baseline is None else value - baseline


def _read_json(path: Path) -> Any:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EdgeslimError(
            f"{path}: damaged ({str(exc)[:120]})", "rerun `edgeslim pipeline` into this run to rebuild it"
        ) from None
    if not isinstance(value, dict):
        raise EdgeslimError(f"{path}: damaged (not a JSON object)", "rerun `edgeslim pipeline` to rebuild it")
    return value
