"""The reproduce job on-call launches from the Dagster UI: its config, its refusals, its verdicts.

One test rebuilds a real version through the job, executed in process on a real instance; the
version is trained first by a committed copy of the project in its own process (as a
deployment trains), so that its record names a clean commit. tests/test_ui.py launches the
same job from the browser's Launchpad.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from lifecycle_pipeline.definitions import build_definitions
from lifecycle_pipeline.governance import MODEL_TAG, sync_runs
from lifecycle_pipeline.lineage.audit import AuditLog
from lifecycle_pipeline.lineage.query import latest, metadata_values
from lifecycle_pipeline.reproduce import Element, ReproductionReport
from lifecycle_pipeline.reproduce_job import verdict_output
from tests.conftest import (
    SAMPLE_MODEL,
    Registry,
    committed_project_copy,
    dagster_home,
    reproduction_records,
    train_committed,
)

JOB = SAMPLE_MODEL.scoped("reproduce")
OP = SAMPLE_MODEL.op("reproduce")
MISSING_RUN = "0f8e4b7a-52c1-4bd2-9d0e-2b5a1c3d4e5f"
REPRODUCED = ("data_snapshot", "features", "trained_model", "evaluation")


@pytest.fixture(scope="module")
def job() -> dg.JobDefinition:
    return build_definitions(model=SAMPLE_MODEL).resolve_job_def(JOB)


def test_the_launchpad_asks_for_a_version_and_optionally_a_run_id(job: dg.JobDefinition) -> None:
    """On-call types one line (``version: data-v1``), not an op's nested config."""
    fields = job.run_config_schema.config_type.fields  # type: ignore[attr-defined]
    assert set(fields) == {"version", "run_id"}
    assert fields["version"].is_required
    assert "data version" in fields["version"].description
    assert not fields["run_id"].is_required
    assert "run id" in fields["run_id"].description
    assert job.tags[MODEL_TAG] == SAMPLE_MODEL.name  # its runs are the model's, for the audit
    assert job.description and "not the model that shipped" in job.description


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"version": "../data-v1"}, "Invalid partition key '../data-v1'"),
        ({"version": "data-v1", "run_id": "last-week"}, "Invalid run id 'last-week'"),
        ({"version": "data-v1", "run_id": MISSING_RUN}, f"No run {MISSING_RUN} in this instance"),
        ({"version": "data-v9"}, "'data-v9' has no breast_cancer trained_model"),
    ],
    ids=["path-in-version", "malformed-run-id", "unknown-run-id", "never-trained"],
)
def test_a_version_that_cannot_be_reproduced_fails_the_run_saying_why(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    config: dict[str, str],
    message: str,
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("LIFECYCLE_HOME", str(state))
    result = job.execute_in_process(run_config=config, instance=instance, raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node(OP)
    assert failure is not None and failure.user_failure_data is not None
    assert message in str(failure.user_failure_data.description)
    # A refusal is no reproduction: no report, no audit record.
    assert not (state / "reproductions").exists()
    assert not (state / "audit").exists()


def _report(*elements: Element) -> ReproductionReport:
    return ReproductionReport(
        model=SAMPLE_MODEL.name,
        version="data-v1",
        run_id=MISSING_RUN,
        method="current",
        commit="c" * 40,
        workdir="/srv/project",
        elements=list(elements),
    )


def _rows(metadata: Mapping[str, dg.MetadataValue]) -> dict[str, dict[str, object]]:
    table = metadata["elements"]
    assert isinstance(table, dg.TableMetadataValue)
    return {str(r.data["element"]): dict(r.data) for r in table.records}


def test_an_identical_reproduction_shows_the_table_and_verdict() -> None:
    report = _report(Element("data_md5", "m1", "m1"), Element("fingerprint.combined", "f", "f"))
    output = verdict_output(SAMPLE_MODEL, report, Path("/state/reproductions/r.json"))
    assert output.metadata["verdict"] == dg.MetadataValue.text("identical")
    assert output.metadata["identical"] == dg.MetadataValue.bool(True)
    assert output.metadata["report"] == dg.MetadataValue.path("/state/reproductions/r.json")
    assert output.metadata["recorded_run"] == dg.MetadataValue.dagster_run(MISSING_RUN)
    assert _rows(output.metadata)["fingerprint.combined"] == {
        "element": "fingerprint.combined", "recorded": "f", "reproduced": "f", "same": "yes"
    }  # fmt: skip
    assert "notes" not in output.metadata  # nothing to say


def test_what_the_report_notes_is_on_the_run_page() -> None:
    """E.g. a registry tag moved since training: the verdict stands, and on-call is told."""
    report = _report(Element("data_md5", "m1", "m1"))
    report.notes = ["tag data-v1 now points at abc; this reproduction read the recorded def"]
    output = verdict_output(SAMPLE_MODEL, report, Path("/state/reproductions/r.json"))
    assert output.metadata["notes"] == dg.MetadataValue.text(report.notes[0])


@pytest.mark.parametrize(
    ("reproduced", "verdict", "same"),
    [
        ("f2", "different: fingerprint.combined", "NO"),
        ("unknown", "unknown: not identified: fingerprint.combined", "unknown"),
    ],
)
def test_any_other_verdict_turns_the_run_red_with_the_same_evidence(
    reproduced: str, verdict: str, same: str
) -> None:
    """A red run means "not the model that shipped" (or not provably it), and the failure
    carries the table, so the run page alone answers which element moved."""
    report = _report(
        Element("data_md5", "m1", "m1"), Element("fingerprint.combined", "f1", reproduced)
    )
    with pytest.raises(dg.Failure) as raised:
        verdict_output(SAMPLE_MODEL, report, Path("/state/reproductions/r.json"))
    failure = raised.value
    assert failure.description is not None
    assert f"breast_cancer data-v1 (run {MISSING_RUN})" in failure.description
    assert verdict in failure.description
    assert failure.metadata["verdict"] == dg.MetadataValue.text(verdict)
    assert failure.metadata["identical"] == dg.MetadataValue.bool(False)
    assert _rows(failure.metadata)["fingerprint.combined"] == {
        "element": "fingerprint.combined", "recorded": "f1", "reproduced": reproduced,
        "same": same,
    }  # fmt: skip
    assert _rows(failure.metadata)["data_md5"]["same"] == "yes"


@dataclass
class Deployment:
    project: Path  # the committed copy data-v1 was trained by
    home: Path  # DAGSTER_HOME
    env: dict[str, str]


@pytest.fixture(scope="module")
def deployment(demo_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """data-v1 of the sample, trained through evaluation by a committed copy of the project."""
    base = tmp_path_factory.mktemp("reproduce_job")
    project = committed_project_copy(base / "project")
    home = dagster_home(base / "dagster_home")
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env |= {
        "DAGSTER_HOME": str(home),
        "LIFECYCLE_HOME": str(base / "state"),
        "LIFECYCLE_REGISTRY_URL": str(demo_registry.repo),
        "LIFECYCLE_ARTIFACT_ROOT": str(base / "artifacts"),
    }
    train_committed(project, env, "data-v1", REPRODUCED)
    return Deployment(project=project, home=home, env=env)


@pytest.mark.slow
def test_the_job_shows_the_table_and_verdict_and_records_what_the_cli_records(
    job: dg.JobDefinition, deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Executed as a run worker executes it: the step's output carries the verdict and every
    element; the report and the audit record are the CLI's (`lifecycle reproduce` calls the
    same `record_reproduction`), and the model's trained_model partition is observed."""
    for name in ("LIFECYCLE_HOME", "LIFECYCLE_REGISTRY_URL"):
        monkeypatch.setenv(name, deployment.env[name])
    # The deployment's checkout: the commit data-v1 was trained at, with its lock.
    monkeypatch.setenv("LIFECYCLE_PROJECT_ROOT", str(deployment.project))
    state = Path(deployment.env["LIFECYCLE_HOME"])
    with dg.DagsterInstance.from_config(str(deployment.home)) as instance:
        result = job.execute_in_process(
            run_config={"version": "data-v1"}, instance=instance, raise_on_error=False
        )
        assert result.success, result.failure_data_for_node(OP)
        trained = latest(instance, SAMPLE_MODEL.key("trained_model"), "data-v1")
        assert trained is not None
        observed = instance.fetch_observations(SAMPLE_MODEL.key("trained_model"), limit=5)
        # The audit sensor files the run itself like any of the model's runs.
        log = AuditLog.for_model(SAMPLE_MODEL.name)
        assert sync_runs(instance, SAMPLE_MODEL.name, log) >= 1
        runs = {r.data["run_id"]: r.data for r in log.records() if r.kind == "run"}
        assert runs[result.run_id]["job"] == JOB
    output = next(e for e in result.events_for_node(OP) if e.is_successful_output)
    metadata = output.step_output_data.metadata
    assert metadata["verdict"] == dg.MetadataValue.text("identical")
    assert metadata["identical"] == dg.MetadataValue.bool(True)
    assert metadata["recorded_run"] == dg.MetadataValue.dagster_run(trained.run_id)
    table = metadata["elements"]
    assert isinstance(table, dg.TableMetadataValue)
    rows = {str(r.data["element"]): r.data for r in table.records}
    fingerprint = metadata_values(trained)["model/fingerprint"]
    assert rows["fingerprint.combined"] == {
        "element": "fingerprint.combined", "recorded": fingerprint, "reproduced": fingerprint,
        "same": "yes",
    }  # fmt: skip
    assert {row["same"] for row in rows.values()} == {"yes"}
    # The CLI's evidence: the JSON report, and a `reproduction` record in a log that verifies.
    [record] = reproduction_records(state)
    assert record.version == "data-v1"
    report = Path(record.data["report"])
    assert metadata["report"] == dg.MetadataValue.path(str(report))
    assert report.parent == state / "reproductions"
    assert record.data == {**json.loads(report.read_text()), "report": str(report)}
    assert (record.data["verdict"], record.data["method"]) == ("identical", "current")
    assert record.data["model"] == SAMPLE_MODEL.name
    assert {e["name"] for e in record.data["elements"]} == set(rows)
    # ... and the model's own page says it was reproduced, by which run, with which verdict.
    [observation] = [r for r in observed.records if r.run_id == result.run_id]
    assert observation.partition_key == "data-v1"
    assert observation.asset_observation is not None
    observed_meta = observation.asset_observation.metadata
    assert observed_meta["reproduction/verdict"] == dg.MetadataValue.text("identical")
