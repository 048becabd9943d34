"""The throughput harness's own judgement: a lost, duplicated or stray run fails the goal, and
BENCHMARKS.md's throughput section shows the committed results file.

The harness itself (PostgreSQL, a code server, the daemon, Dask) is a benchmark, run by
`make bench-throughput`, not by the suite; what is checked here is how it reads the runs the
instance recorded, so a run the queue lost or started twice can never be shown as throughput.
"""

from __future__ import annotations

import json
from typing import Any

from bench.throughput import (
    CONFIGURATIONS,
    RESULTS,
    MemorySampler,
    ratios,
    section,
    summarize,
)

NAMES = ["m00", "m01", "m02"]
BY_NAME = {c.name: c for c in CONFIGURATIONS}


def _run(model: str, start: float, end: float, status: str = "SUCCESS") -> dict[str, Any]:
    return {"run_id": f"{model}-{start}", "model": model, "status": status, "start": start,
            "end": end, "fingerprint": "f"}  # fmt: skip


def _summary(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    return summarize(BY_NAME[name], NAMES, runs, MemorySampler())


def test_throughput_is_successful_runs_over_the_window_from_first_start_to_last_end() -> None:
    runs = [_run("m00", 100, 130), _run("m01", 110, 150), _run("m02", 140, 190)]
    summary = _summary("in_process x1", runs)
    assert summary["window_seconds"] == 90
    assert summary["runs_per_hour"] == 3 * 3600 / 90
    assert (summary["lost"], summary["duplicated"], summary["unexpected_models"]) == ([], [], [])


def test_a_lost_a_failed_a_duplicated_or_a_stray_run_is_named_and_fails_the_goal() -> None:
    clean = [_run("m00", 0, 10), _run("m01", 10, 20), _run("m02", 20, 30)]
    fast = [_run("m00", 0, 5), _run("m01", 0, 5), _run("m02", 5, 10)]
    assert ratios([_summary("in_process x1", clean), _summary("in_process x2", fast)])[
        "in_process"
    ]["met"]
    damaged = {
        "lost": [_run("m00", 0, 5), _run("m01", 0, 5)],
        "failed": [_run("m00", 0, 5), _run("m01", 0, 5), _run("m02", 5, 10, "FAILURE")],
        "duplicated": [*fast, _run("m02", 5, 9)],
        "stray": [*fast, _run("other", 1, 2)],
    }
    for what, runs in damaged.items():
        summary = _summary("in_process x2", runs)
        verdict = ratios([_summary("in_process x1", clean), summary])["in_process"]
        assert not verdict["met"], what
        assert not verdict["no_run_lost_or_duplicated"], what
    assert _summary("in_process x2", damaged["failed"])["lost"] == ["m02"]
    assert _summary("in_process x2", damaged["duplicated"])["duplicated"] == ["m02"]
    assert _summary("in_process x2", damaged["stray"])["unexpected_models"] == ["other"]


def test_a_ratio_under_the_goal_is_a_miss() -> None:
    one = [_run("m00", 0, 10), _run("m01", 10, 20), _run("m02", 20, 30)]
    two = [_run("m00", 0, 10), _run("m01", 0, 10), _run("m02", 10, 20)]  # 1.5x
    verdict = ratios([_summary("dask 1 worker", one), _summary("dask 2 workers", two)])["dask"]
    assert verdict["ratio"] == 1.5
    assert not verdict["met"] and verdict["no_run_lost_or_duplicated"]


def test_benchmarks_md_shows_the_committed_throughput_results() -> None:
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    text = "\n".join(section(results))
    for entry in results["configurations"]:
        assert f"| {entry['configuration']} |" in text
        assert f"{entry['runs_per_hour']:.0f}" in text
    for pair in results["ratios"].values():
        assert f"{pair['ratio']:.2f}x" in text
    benchmarks = (RESULTS.parents[2] / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert text in benchmarks
