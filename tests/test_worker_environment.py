"""A remote worker without the run's environment refuses the step and says what to set.

Before, a Dask worker started without LIFECYCLE_POSTGRES_URL failed the run about 7 s in with
Dagster's config error about the instance, naming neither the worker nor the fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from lifecycle_pipeline.executors import (
    WorkerEnvironmentError,
    _Boxed,
    _run_boxed,
    check_worker_environment,
    required_worker_variables,
)

ABSENT = "LIFECYCLE_TEST_ABSENT_VARIABLE"


@pytest.fixture
def instance_reading_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An instance whose config reads a variable by ``{env: ...}``, as the team profile reads
    LIFECYCLE_POSTGRES_URL (SQLite here: no database to reach)."""
    monkeypatch.setenv("LIFECYCLE_TEST_LOG_DIR", str(tmp_path / "logs"))
    config = {
        "storage": {"sqlite": {"base_dir": str(tmp_path / "storage")}},
        "compute_logs": {
            "module": "dagster.core.storage.local_compute_log_manager",
            "class": "LocalComputeLogManager",
            "config": {"base_dir": {"env": "LIFECYCLE_TEST_LOG_DIR"}},
        },
        "telemetry": {"enabled": False},
    }
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        yield instance


def test_a_worker_needs_the_instances_variables_and_the_runs_lifecycle_ones(
    instance_reading_env: Any,
) -> None:
    run_env = {
        "LIFECYCLE_ARTIFACT_ROOT": "s3://bucket/artifacts",
        "LIFECYCLE_AUDIT_KEY": "/keys/audit.key",
        "LIFECYCLE_DASK_ADDRESS": "tcp://scheduler:8786",  # the run's, not the worker's
        "HOME": "/home/someone",
    }
    required = required_worker_variables(instance_reading_env, run_env)
    assert set(required) == {
        "LIFECYCLE_TEST_LOG_DIR",
        "LIFECYCLE_ARTIFACT_ROOT",
        "LIFECYCLE_AUDIT_KEY",
    }


def test_the_team_profile_makes_the_database_url_required() -> None:
    from lifecycle_pipeline.executors import _env_references
    from tests.conftest import PROJECT_ROOT

    profile = yaml.safe_load(
        (PROJECT_ROOT / "deploy" / "dagster.postgres.yaml").read_text(encoding="utf-8")
    )
    assert _env_references(profile) == {"LIFECYCLE_POSTGRES_URL"}


def test_a_worker_without_a_variable_is_refused_with_the_name_the_process_and_the_fix() -> None:
    with pytest.raises(WorkerEnvironmentError) as refused:
        check_worker_environment(
            ("LIFECYCLE_POSTGRES_URL", "LIFECYCLE_ARTIFACT_ROOT"),
            "This Dask worker",
            {"LIFECYCLE_ARTIFACT_ROOT": "s3://bucket/artifacts"},
        )
    message = str(refused.value)
    assert "This Dask worker" in message and f"pid {os.getpid()}" in message
    assert "lacks LIFECYCLE_POSTGRES_URL," in message and "LIFECYCLE_ARTIFACT_ROOT" not in message
    assert "docs/deployment.md, 'Remote workers'" in message and "dask worker" in message
    # An empty value is as good as none: the instance would fail on it the same way.
    with pytest.raises(WorkerEnvironmentError, match="lacks LIFECYCLE_POSTGRES_URL"):
        check_worker_environment(("LIFECYCLE_POSTGRES_URL",), "w", {"LIFECYCLE_POSTGRES_URL": ""})
    check_worker_environment(("LIFECYCLE_POSTGRES_URL",), "w", {"LIFECYCLE_POSTGRES_URL": "x"})


def test_the_step_does_not_start_on_a_worker_that_lacks_a_variable() -> None:
    started: list[tuple[Any, ...]] = []

    def step(dependencies: list[Any], *args: Any) -> str:
        started.append((dependencies, *args))
        return "done"

    assert ABSENT not in os.environ
    with pytest.raises(WorkerEnvironmentError, match=f"lacks {ABSENT}"):
        _run_boxed([], _Boxed(step, ("arg",), (ABSENT,)))
    assert started == []
    assert _run_boxed([], _Boxed(step, ("arg",), ("PATH",))) == "done"
    assert started == [([], "arg")]


@pytest.mark.slow
def test_a_real_dask_worker_process_refuses_the_step() -> None:
    """The check runs in the worker process, where the step would, and travels back."""
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        future = client.submit(_run_boxed, [], _Boxed(lambda deps: os.getpid(), (), (ABSENT,)))
        with pytest.raises(WorkerEnvironmentError, match=f"lacks {ABSENT}") as refused:
            future.result(timeout=120)
        assert f"pid {os.getpid()}" not in str(refused.value)  # the worker's, not ours
