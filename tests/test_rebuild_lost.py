"""`instance rebuild` reports what it could not restore of a run: its start time and events.

A run restored from its audit record alone (its event log and the index both damaged) comes
back with its status and end time, but not the time it started nor its RUN_START event; the
outcome used to list the run as restored and say nothing of that.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import dagster as dg

from lifecycle_pipeline.rebuild import AuditEvidence, RebuildOutcome, _add_runs
from tests.reliability.cases import case

RUN = "0f8e4b7a-52c1-4bd2-9d0e-2b5a1c3d4e5f"


def test_a_run_restored_without_its_start_says_its_start_is_lost(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    fault = case("instance", "rebuild: run from its audit record only")
    ended = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    record = SimpleNamespace(
        when=ended,
        data={
            "job": "breast_cancer_lifecycle",
            "status": "SUCCESS",
            "ended": ended.timestamp(),
            "tags": {"dagster/partition": "data-v1"},
            "run_config": {},
        },
    )
    audit = AuditEvidence(runs={RUN: record})  # type: ignore[dict-item]
    outcome = RebuildOutcome(tmp_path, tmp_path / "aside", {})
    assert _add_runs(instance, {}, audit, outcome) == 1
    restored = instance.get_run_record_by_id(RUN)
    assert restored is not None and restored.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    rendered = outcome.render()
    assert fault.shown_in(rendered), rendered
