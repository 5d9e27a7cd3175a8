"""The report: built from the stages' records and artifact sidecars, in JSON, Markdown and HTML."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from edgeslim.cli import main


def test_report_rows_match_the_records(default_run):
    run_dir, _ = default_run
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert report["schema"] == "edgeslim.report/1"
    for stage in report["stages"]:
        metrics = json.loads((run_dir / stage["name"] / "metrics.json").read_text())
        assert stage["params"] == metrics["params"] and stage["macs"] == metrics["macs"]
        assert stage["nonzero_params"] == metrics["nonzero_params"]
        assert stage["deployed"]["accuracy"] == metrics["deployed"]["verification"]["accuracy"]
        assert stage["deployed"]["bytes"] == (run_dir / stage["deployed"]["path"]).stat().st_size
        if stage["name"] != "00-train":
            record = json.loads((run_dir / stage["name"] / "record.json").read_text())
            assert stage["stage"] == record["stage"] and len(stage["changes"]) == len(record["layers"])
    for artifact in report["artifacts"]:
        sidecar = json.loads((run_dir / (artifact["path"] + ".json")).read_text())
        assert artifact["accuracy"] == sidecar["verification"]["accuracy"]
        assert artifact["bytes"] == (run_dir / artifact["path"]).stat().st_size
    base = report["baseline_accuracy"]
    assert report["stages"][-1]["delta_vs_baseline"] == pytest.approx(
        report["stages"][-1]["deployed"]["accuracy"] - base
    )
    mcu = [a for a in report["artifacts"] if a.get("mcu")]
    tpu = [a for a in report["artifacts"] if a.get("edgetpu")]
    assert mcu and mcu[0]["mcu"]["arena_bytes"] > 0
    assert tpu and 0 <= tpu[0]["edgetpu"]["mapped_fraction"] <= 1
    assert report["pareto"], "at least one point is on the Pareto front"


def test_markdown_has_stage_artifact_and_layer_tables(default_run):
    run_dir, _ = default_run
    text = (run_dir / "report" / "report.md").read_text()
    for heading in (
        "## Stages (each measured in LiteRT)",
        "## Exported artifacts",
        "## Layers after 04-quantize",
    ):
        assert heading in text
    assert "![accuracy_vs_bytes](plots/accuracy_vs_bytes.png)" in text


def test_report_command_rebuilds_from_records(default_run, tmp_path, capsys):
    run_dir, _ = default_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "report")
    assert main(["report", str(copy), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in printed["stages"]][0] == "00-train"
    assert (copy / "report" / "report.html").is_file()
    assert main(["report", str(tmp_path / "nothing-here")]) == 2


def test_pareto_front():
    from edgeslim.report.model import pareto_front

    points = [(100, 0.9), (50, 0.9), (200, 0.95), (50, 0.8), (300, 0.94)]
    assert pareto_front(points) == {(50, 0.9), (200, 0.95)}


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_html_renders_table_and_plot_in_headless_chromium(default_run, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium package)")
    run_dir, _ = default_run
    page = run_dir / "report" / "report.html"
    html = page.read_text()
    assert "<table id='stages-table'>" in html and "data:image/png;base64," in html
    assert "http://" not in html and "https://" not in html, "the page must open offline"
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1200,2400",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[0] >= 2000

    def share_near(rgb: tuple[int, int, int], tol: int = 12) -> float:
        return float(np.mean(np.all(np.abs(pixels - np.array(rgb)) <= tol, axis=-1)))

    assert share_near((0xF0, 0xF3, 0xF7), tol=3) > 0.001, "the table header row is not visible"
    assert share_near((31, 119, 180)) > 0.0002, "no matplotlib blue: the plot did not render"
    assert share_near((44, 160, 44)) > 0.00005, "no Pareto-front green line in the plot"
