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
