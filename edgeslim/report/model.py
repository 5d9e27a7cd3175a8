"""The report's one data model, built from the run directory's records and artifact sidecars (never logs).

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
    step_dirs = (
        sorted(p for p in run_dir.iterdir() if p.is_dir() and p.name[:2].isdigit() and "-" in p.name)
        if run_dir.is_dir()
        else []
    )
    if not step_dirs:
        raise EdgeslimError(
            f"{run_dir}: no pipeline steps found", "run `edgeslim pipeline --out RUN_DIR` first"
        )
    stages = [_stage(p) for p in step_dirs if (p / "metrics.json").is_file()]
    baseline = stages[0]["deployed"]["accuracy"] if stages else None
    for stage in stages:
        stage["delta_vs_baseline"] = _delta(stage["deployed"]["accuracy"], baseline)
    artifacts = _artifacts(run_dir / "exports", baseline)
    points = [(s["name"], s["deployed"]["bytes"], s["deployed"]["accuracy"]) for s in stages]
    points += [(a["name"], a["bytes"], a["accuracy"]) for a in artifacts]
    pareto = pareto_front([(b, a) for _, b, a in points if b is not None and a is not None])
    config = _read_config(run_dir / "config.yaml")
    return {
        "schema": SCHEMA,
        "run_dir": str(run_dir),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "config": config,
        "dataset": stages[0].get("dataset") if stages else None,
        "baseline_accuracy": baseline,
        "stages": stages,
        "artifacts": artifacts,
        "pareto": [name for name, b, a in points if (b, a) in pareto],
        "failures": [a["name"] + ": " + a["failure"] for a in artifacts if a.get("failure")],
    }


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
        "keras_accuracy": metrics["test_accuracy"],
        "deployed": {
            "path": f"{step_dir.name}/{deployed.get('path', '')}",
            "format": deployed.get("format"),
            "quantization": _mode(deployed.get("quantization")),
            "bytes": deployed.get("bytes"),
            "gzip_bytes": deployed.get("gzip_bytes"),
            "accuracy": verification.get("accuracy"),
            "backend": verification.get("backend"),
            "latency_ms_p50": verification.get("latency_ms_p50"),
        },
        "layers": metrics.get("layers", []),
        "changes": record["layers"] if record else [],
        "finetune": (record or {}).get("finetune"),
        "seconds": _read_json(step_dir / "step.json").get("seconds")
        if (step_dir / "step.json").is_file()
        else None,
    }


def _artifacts(exports: Path, baseline: float | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if not exports.is_dir():
        return rows
    for target_dir in sorted(p for p in exports.iterdir() if p.is_dir()):
        marker = _read_json(target_dir / "step.json") if (target_dir / "step.json").is_file() else {}
        for failure in marker.get("failures", []):
            if "failed verification" not in failure:
                rows.append(
                    {
                        "name": f"{target_dir.name}",
                        "target": target_dir.name,
                        "failure": failure,
                        "bytes": None,
                        "accuracy": None,
                    }
                )
        for rel in marker.get("artifacts", []):
            sidecar_path = target_dir / f"{rel}.json"
            if not sidecar_path.is_file():
                continue
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


def _read_config(path: Path) -> Any:
    if not path.is_file():
        return None
    import yaml

    return yaml.safe_load(path.read_text())


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())
