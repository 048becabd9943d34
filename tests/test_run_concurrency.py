"""The run queue, monitoring, retries and step logs a team's instance ships with.

The team profile (deploy/dagster.postgres.yaml) is loaded into a real DagsterInstance, with
SQLite in place of PostgreSQL and the service user's folder in place of /var/lib/lifecycle,
so what is checked is what Dagster made of the file, not the file's text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from lifecycle_pipeline.definitions import defs
from lifecycle_pipeline.governance import MODEL_TAG
from tests.conftest import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
PROFILE = DEPLOY / "dagster.postgres.yaml"
STATE_DIR = "/var/lib/lifecycle"  # the service user's: the image's and systemd's
PER_MODEL = [{"key": MODEL_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]


def _profile() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(PROFILE.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture
def team_instance(tmp_path: Path) -> Any:
    config = yaml.safe_load(
        PROFILE.read_text(encoding="utf-8").replace(f"{STATE_DIR}/", f"{tmp_path}/state/")
    )
    assert "postgres" in config.pop("storage")
    config["storage"] = {"sqlite": {"base_dir": str(tmp_path / "storage")}}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        yield instance


def test_team_profile_queues_runs_with_a_global_and_a_per_model_limit(team_instance: Any) -> None:
    from dagster._core.run_coordinator import QueuedRunCoordinator

    coordinator = team_instance.run_coordinator
    assert isinstance(coordinator, QueuedRunCoordinator)
    queue = coordinator.get_run_queue_config()
    assert queue.max_concurrent_runs == 8
    assert queue.tag_concurrency_limits == PER_MODEL


def test_team_profile_monitors_runs_and_retries_only_lost_workers(team_instance: Any) -> None:
    assert team_instance.run_monitoring_enabled
    assert team_instance.run_monitoring_start_timeout_seconds == 600
    assert team_instance.run_retries_enabled and team_instance.run_retries_max_retries == 2
    # A step that failed on its own (a gate refused) fails again the same way: not retried.
    assert team_instance.run_retries_retry_on_asset_or_op_failure is False


def test_team_profile_writes_step_logs_where_the_service_user_can(
    team_instance: Any, tmp_path: Path
) -> None:
    manager = team_instance.compute_log_manager
    assert Path(manager._base_dir) == tmp_path / "state" / "compute_logs"
    assert Path(team_instance.root_directory) != tmp_path / "state"
    # Unsubstituted, both folders are under the user's state folder, never under DAGSTER_HOME
    # (root's in the image: PermissionError on .../storage, and the step logs were lost).
    profile = _profile()
    for section in ("compute_logs", "local_artifact_storage"):
        assert Path(profile[section]["config"]["base_dir"]).is_relative_to(STATE_DIR), section
    dockerfile = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text(encoding="utf-8"))
    assert f"chown lifecycle {STATE_DIR}" in dockerfile
    for unit in (DEPLOY / "systemd").glob("*.service"):
        assert "StateDirectory=lifecycle" in unit.read_text(encoding="utf-8"), unit.name


def test_the_queue_holds_a_second_run_of_a_model_but_not_of_another(team_instance: Any) -> None:
    """The limits as the daemon applies them: the counter
    dagster._daemon.run_coordinator.queued_run_coordinator_daemon filters the queue with."""
    from dagster._core.utils import make_new_run_id
    from dagster._utils.tags import TagConcurrencyLimitsCounter

    def run(model: str, status: dg.DagsterRunStatus) -> dg.DagsterRun:
        return dg.DagsterRun(
            job_name=f"{model}_lifecycle", run_id=make_new_run_id(), tags={MODEL_TAG: model},
            status=status,
        )  # fmt: skip

    in_progress = [run("a", dg.DagsterRunStatus.STARTED)]
    queued = [run(model, dg.DagsterRunStatus.NOT_STARTED) for model in ("a", "b")]
    queue = team_instance.run_coordinator.get_run_queue_config()
    counter = TagConcurrencyLimitsCounter(queue.tag_concurrency_limits, in_progress)
    startable = [r.tags[MODEL_TAG] for r in queued if not counter.is_blocked(r)]
    assert startable == ["b"]


def test_every_run_the_code_location_starts_carries_the_model_tag() -> None:
    """The per-model limit counts runs by this tag: a run without it escapes the limit."""
    for job in defs.resolve_all_job_defs():
        if job.name.startswith("__"):
            continue  # Dagster's implicit asset job: started by nothing here but a person
        assert job.tags.get(MODEL_TAG), job.name
    automation = [
        s for s in defs.sensors or [] if isinstance(s, dg.AutomationConditionSensorDefinition)
    ]
    assert automation
    for sensor in automation:
        assert sensor.run_tags.get(MODEL_TAG), sensor.name


def test_the_chart_values_set_the_same_queue_monitoring_and_retries() -> None:
    values = yaml.safe_load((DEPLOY / "k8s" / "values.yaml").read_text(encoding="utf-8"))
    daemon = values["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    queue = coordinator["config"]["queuedRunCoordinator"]
    profile = _profile()
    assert queue["maxConcurrentRuns"] == profile["run_coordinator"]["config"]["max_concurrent_runs"]
    assert queue["tagConcurrencyLimits"] == PER_MODEL
    monitoring = daemon["runMonitoring"]
    assert monitoring["enabled"]
    assert monitoring["startTimeoutSeconds"] == profile["run_monitoring"]["start_timeout_seconds"]
    retries = daemon["runRetries"]
    assert retries["enabled"] and retries["maxRetries"] == profile["run_retries"]["max_retries"]
    assert retries["retryOnAssetOrOpFailure"] is False


def test_the_docs_state_the_limits_the_files_set() -> None:
    text = (PROJECT_ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    section = text.split("### Run concurrency", 1)[1].split("\n## ", 1)[0]
    assert "`max_concurrent_runs: 8`" in section and f"`{MODEL_TAG}`" in section
    assert "`max_retries: 2`" in section and "`start_timeout_seconds: 600`" in section
    assert "`retry_on_asset_or_op_failure: false`" in section
