"""The benchmarks still run on tiny data, and what they record is internally consistent.

The timings themselves are benchmarks (`make bench`, `make bench-drift`), not tests: these
run the harnesses on tiny data and check that every summary is computed from the samples it
keeps (medians, ranges, ratios repetition by repetition), that the frames compared are the
ones claimed, and that the rendered report quotes the recorded numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import data
from bench.lifecycle import _merged
from bench.measure import loglog_slope
from bench.report import _room, _size, render
from lifecycle_pipeline.definitions import build_definitions
from tests.conftest import PROJECT_ROOT, SAMPLE_MODEL

THREE_SHIFTED = ["mean_smoothness", "mean_texture", "worst_texture"]


def assert_spread(spread: dict[str, Any], repetitions: int) -> None:
    """A recorded spread is the median and range of the samples it keeps, one per repetition."""
    values = spread["values"]
    assert spread["n"] == len(values) == repetitions
    assert spread["median"] == statistics.median(values)
    assert (spread["min"], spread["max"]) == (min(values), max(values))


def assert_ratios(
    ratio: dict[str, Any], numerators: list[float], denominators: list[float]
) -> None:
    """A ratio spread holds numerator / denominator of the same repetition, in order."""
    expected = [n / d for n, d in zip(numerators, denominators, strict=True)]
    assert ratio["values"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.slow
def test_drift_benchmark_runs_and_verdicts_agree_on_demo_batches(
    sample_dir: Path, tmp_path: Path
) -> None:
    """3,000 rows sampled to 1,000: 'same frames' really is the sample, 'all rows' is not."""
    out = tmp_path / "drift.json"
    result = subprocess.run(
        [
            sys.executable, str(PROJECT_ROOT / "bench" / "drift_monitor.py"), "--rows", "3000",
            "--sample-cap", "1000", "--repetitions", "2", "--sample-dir", str(sample_dir),
            "--out", str(out),
        ],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["settings"]["sample_cap"] == 1000 and results["settings"]["repetitions"] == 2
    size = results["sizes"][0]
    assert (size["rows"], size["sampled_rows"]) == (3000, 1000)
    # The frames each engine saw: the monitor and the 'same frames' preset the 1,000-row
    # samples, the 'all rows' preset the full 3,000.
    assert size["ours"]["engine_rows"] == [1000, 1000]
    assert size["preset_sampled"]["engine_rows"] == [1000, 1000]
    assert size["preset_full"]["engine_rows"] == [3000, 3000]
    for kind in ("ours", "preset_sampled", "preset_full"):
        runs = size[kind]["runs"]
        for key in ("seconds", "peak_rss_mib", "rss_before_mib", "peak_increase_mib"):
            assert_spread(size[kind][key], 2)
            assert size[kind][key]["values"] == [run[key] for run in runs]
        for run in runs:
            assert run["peak_increase_mib"] == pytest.approx(
                run["peak_rss_mib"] - run["rss_before_mib"]
            )
    for key, preset in (("same_frames", "preset_sampled"), ("sampling", "preset_full")):
        ours, other = size["ours"], size[preset]
        assert_ratios(
            size[key]["preset_seconds_over_ours"],
            other["seconds"]["values"],
            ours["seconds"]["values"],
        )
        assert_ratios(
            size[key]["preset_peak_increase_over_ours"],
            other["peak_increase_mib"]["values"],
            ours["peak_increase_mib"]["values"],
        )
        assert size[key]["same_columns"] == (ours["drifted_columns"] == other["drifted_columns"])
        assert size[key]["same_verdict"] == (ours["verdict"] == other["verdict"])
    assert size["ours"]["drifted_columns"] == THREE_SHIFTED
    assert size["ours"]["verdict"] == "drift"
    assert size["ours"]["method"] == "numeric: psi >= 0.2; prediction: ks <= 0.001"
    assert size["sampling"]["same_columns"] and size["same_frames"]["same_verdict"]
    demo = results["demo_batches"]
    assert demo["batch-001"]["ours"]["verdict"] == "no drift"
    assert demo["batch-002"]["ours"]["verdict"] == "drift"
    assert demo["batch-002"]["ours"]["drifted_columns"] == THREE_SHIFTED
    assert all(batch["same_columns"] and batch["same_verdict"] for batch in demo.values())


@pytest.mark.slow
def test_lifecycle_benchmark_writes_results_and_renders_markdown(tmp_path: Path) -> None:
    """Figures 1 and 3 on tiny data, twice each: every summary follows from its samples."""
    out, markdown = tmp_path / "lifecycle.json", tmp_path / "BENCHMARKS.md"
    result = subprocess.run(
        [
            sys.executable, "-m", "bench.lifecycle", "--sizes", "1000", "2000",
            "--repetitions", "2", "--figures", "1", "3", "--out", str(out),
            "--markdown", str(markdown), "--data-dir", str(tmp_path / "data"),
        ],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out.read_text())
    job = build_definitions(model=SAMPLE_MODEL).resolve_job_def(SAMPLE_MODEL.scoped("lifecycle"))
    selected = job.asset_layer.selected_asset_keys
    lifecycle_shape = (
        len(selected),
        len([c for c in job.asset_layer.asset_graph.asset_check_keys if c.asset_key in selected]),
        len(job.nodes),  # one step per node: each asset, and the standalone check
    )
    head = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert results["machine"]["cores"] == os.cpu_count()
    assert results["versions"]["git_commit"] == head
    assert [run["figures"] for run in results["runs"]] == [[1, 3]]
    assert [size["rows"] for size in results["sizes"]] == [1000, 2000]
    for size in results["sizes"]:
        assert size["repetitions"] == 2
        for side in ("plain", "dagster"):
            spreads = size[side]
            for key in ("seconds", "peak_rss_mib", "rss_before_mib", "peak_increase_mib"):
                assert_spread(spreads[key], 2)
            increase = [
                peak - before
                for peak, before in zip(
                    spreads["peak_rss_mib"]["values"],
                    spreads["rss_before_mib"]["values"],
                    strict=True,
                )
            ]
            assert spreads["peak_increase_mib"]["values"] == pytest.approx(increase)
            assert set(spreads["stages"]) >= {"data_snapshot", "features", "evaluation"}
        assert_ratios(
            size["overhead_ratio"],
            size["dagster"]["seconds"]["values"],
            size["plain"]["seconds"]["values"],
        )
        assert size["fingerprints_equal"]  # both sides trained the same model
        # Dagster's floor ran the lifecycle job's own graph (with no-op steps), each repetition.
        floor = size["dagster_floor"]
        assert_spread(floor["seconds"], 2)
        assert (floor["assets"], floor["checks"], floor["steps"]) == lifecycle_shape
        # The dataset is what the seeded generator makes: same bytes, same in-memory size.
        csv = Path(size["dataset"]["path"])
        assert size["dataset"]["md5"] == hashlib.md5(csv.read_bytes()).hexdigest()
        expected_memory = data.frame(size["rows"]).memory_usage(deep=True).sum()
        assert size["dataset"]["memory_bytes"] == expected_memory
    growth = results["growth"]
    assert growth["rows"] == [1000, 2000]
    medians = [size["dagster"]["seconds"]["median"] for size in results["sizes"]]
    assert math.isclose(growth["slope"], loglog_slope([1000, 2000], medians))
    # The report is rendered from the results file as written, and quotes its numbers.
    text = markdown.read_text()
    assert text == render(results)
    for size in results["sizes"]:
        ratio = size["overhead_ratio"]
        quoted = f"{ratio['median']:.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f})"
        row = next(
            line for line in text.splitlines() if line.startswith(f"| {_size(size['rows'])} |")
        )
        assert quoted in row
    assert f"{growth['slope']:.2f} (plain: {growth['plain_slope']:.2f}" in text


def test_merge_replaces_only_the_figures_run() -> None:
    """`--merge`: the re-measured figure is replaced, every other result kept byte for byte."""
    previous = {
        "settings": {"repetitions": 3, "figures": [1, 2, 3, 4, 5]},
        "versions": {"git_commit": "a" * 40, "git_dirty": "no"},
        "sizes": [{"rows": 10_000, "overhead_ratio": {"median": 2.0}}],
        "growth": {"slope": 0.4},
        "reproduce": {"current_seconds": {"median": 21.9}},
        "many_versions": {"steps": [{"materialized": 3}]},
        "total_seconds": 1765.8,
    }
    measured = {"many_versions": {"steps": [{"materialized": 3}, {"materialized": 25}]}}
    run = {"figures": [5], "git_commit": "b" * 40, "seconds": 300.0}
    args = argparse.Namespace(repetitions=3)
    merged = _merged(json.loads(json.dumps(previous)), measured, run, args)
    for key in ("settings", "versions", "sizes", "growth", "reproduce", "total_seconds"):
        assert merged[key] == previous[key]
    assert merged["many_versions"] == measured["many_versions"]
    assert merged["runs"] == [
        {"figures": [1, 2, 3, 4, 5], "git_commit": "a" * 40, "git_dirty": "no", "seconds": 1765.8},
        run,
    ]
    # Re-measuring figure 5 again retires the run it supersedes, never the full run.
    again = {"figures": [4, 5], "git_commit": "c" * 40, "seconds": 400.0}
    remerged = _merged(merged, {"many_versions": {"steps": []}, "reproduce": {}}, again, args)
    assert remerged["runs"] == [merged["runs"][0], again]
    with pytest.raises(SystemExit, match="one repetition count"):
        _merged(previous, measured, run, argparse.Namespace(repetitions=1))


def _entry(floor_seconds: float) -> dict[str, Any]:
    """A 100k result as the harness writes it, with a given Dagster floor."""
    return {
        "rows": 100_000,
        "plain": {"seconds": {"median": 4.0}},
        "dagster_floor": {
            "seconds": {"median": floor_seconds, "n": 3}, "assets": 6, "checks": 9, "steps": 7,
        },
    }  # fmt: skip


def test_the_target_is_called_unreachable_only_when_the_guarantees_alone_exceed_it() -> None:
    """At 100k (1.3x) the plain 4.0 s allows 1.2 s; the floor plus the profile's store and
    registry frames (0.5 s here) decide whether the report may say it cannot be met."""
    profile = {
        "ArtifactStore.handle_output": 0.2,
        "ArtifactStore.load_input": 0.2,
        "parse_stream": 0.1,
    }
    over = " ".join(_room(_entry(0.9), profile))
    assert "allows 1.20 s over the plain 4.00 s" in over
    assert "6 assets, 9 checks, 7 steps" in over
    assert "come to 1.40 s, more than the 1.20 s allowed: at the store's measured cost" in over
    assert "the target cannot be met" in over
    # 1.2 - 0.9 - 0.1 = 0.2 s would be left for the store's 0.4 s: it would need to be twice
    # as fast; with a floor that leaves nothing, no store would do.
    assert "a store that persists and reads back 2.0x faster than this one" in over
    assert "no store, however fast" in " ".join(_room(_entry(1.15), profile))
    under = " ".join(_room(_entry(0.5), profile))
    assert "come to 1.00 s, within the 1.20 s allowed" in under
    assert "cannot be met" not in under
    # Without the profile's frames there is no basis for the claim, and none is made.
    assert _room(_entry(0.9), {"parse_stream": 0.1}) == []
    assert _room({k: v for k, v in _entry(0.9).items() if k != "dagster_floor"}, profile) == []
