"""The drift benchmark still runs, and both monitors agree on the demo batches.

The timing itself is a benchmark (`make bench-drift`), not a test: this runs it on tiny data.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT


@pytest.mark.slow
def test_drift_benchmark_runs_and_verdicts_agree_on_demo_batches(
    sample_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "drift.json"
    result = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "bench" / "drift_monitor.py"),
            "--rows",
            "3000",
            "--sample-dir",
            str(sample_dir),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    size = data["sizes"][0]
    assert size["rows"] == 3000 and size["speedup"] > 0
    assert size["ours"]["drifted_columns"] == ["mean_smoothness", "mean_texture", "worst_texture"]
    assert size["same_columns"]
    demo = data["demo_batches"]
    assert demo["batch-001"]["ours"]["verdict"] == "no drift"
    assert demo["batch-002"]["ours"]["verdict"] == "drift"
    assert all(batch["same_columns"] and batch["same_verdict"] for batch in demo.values())


@pytest.mark.slow
def test_lifecycle_benchmark_writes_results_and_renders_markdown(tmp_path: Path) -> None:
    """Figures 1 and 3 on tiny data: the harness runs end to end and its output is complete."""
    out, markdown = tmp_path / "lifecycle.json", tmp_path / "BENCHMARKS.md"
    result = subprocess.run(
        [
            sys.executable, "-m", "bench.lifecycle", "--sizes", "1000", "2000",
            "--repetitions", "1", "--figures", "1", "3", "--out", str(out),
            "--markdown", str(markdown), "--data-dir", str(tmp_path / "data"),
        ],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    assert {"machine", "versions", "settings", "sizes", "growth"} <= set(data)
    assert data["machine"]["cores"] > 0 and data["versions"]["git_commit"]
    assert [size["rows"] for size in data["sizes"]] == [1000, 2000]
    for size in data["sizes"]:
        for side in ("plain", "dagster"):
            assert size[side]["seconds"]["median"] > 0
            assert size[side]["peak_rss_mib"]["median"] > 0
            assert set(size[side]["stages"]) >= {"data_snapshot", "features", "evaluation"}
        assert size["overhead_ratio"]["median"] > 0
        assert size["fingerprints_equal"]  # both sides trained the same model
        assert size["dataset"]["memory_bytes"] > 0
    assert data["growth"]["rows"] == [1000, 2000]
    text = markdown.read_text()
    for heading in ("## Machine and versions", "## 1. Overhead", "## 3. Growth"):
        assert heading in text
    assert "| 2k |" in text and "log-log slope" in text
