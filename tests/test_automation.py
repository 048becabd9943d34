"""Sensors, the retraining schedule and automation conditions, against a real registry."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from lifecycle_pipeline.automation import DEFAULT_RETRAIN_CRON
from lifecycle_pipeline.declaration import load_model_folder
from lifecycle_pipeline.definitions import build_definitions
from lifecycle_pipeline.resources.registry import DataRegistry
from tests.conftest import (
    FAST_TRAINING,
    PROJECT_ROOT,
    SAMPLE,
    SAMPLE_MODEL,
    Pipeline,
    Registry,
    scratch_pipeline,
)

REASON = "lifecycle/reason"


def _added(result: object) -> list[str]:
    requests = getattr(result, "dynamic_partitions_requests", None) or []
    return [key for request in requests for key in request.partition_keys]


def test_sensors_target_their_jobs(
    pipeline_factory: Callable[[Registry], Pipeline], demo_registry: Registry
) -> None:
    defs = pipeline_factory(demo_registry).defs
    sensor = defs.resolve_sensor_def
    assert sensor("breast_cancer_new_data_version_sensor").job_name == "breast_cancer_lifecycle"
    assert sensor("breast_cancer_new_batch_sensor").job_name == "breast_cancer_drift"
    assert sensor("breast_cancer_drift_retraining_sensor").job_name == "breast_cancer_lifecycle"


def test_new_data_version_yields_one_partition_add_and_one_run(
    pipeline_factory: Callable[[Registry], Pipeline], registry_copy: Registry, sample_dir: Path
) -> None:
    pipeline = pipeline_factory(registry_copy)
    pipeline.add("data-v1", "data-v2")
    quiet = pipeline.tick("new_data_version_sensor")
    assert not quiet.run_requests and not _added(quiet)

    data_v2 = (sample_dir / "versions" / "data-v2" / "breast_cancer.csv").read_bytes()
    last_row = data_v2.rstrip(b"\n").rsplit(b"\n", 1)[1]
    registry_copy.publish("data-v3", data_v2 + last_row + b"\n")
    registry_copy.publish("experiment-7", b"not a data version\n", target="notes.txt")
    found = pipeline.tick("new_data_version_sensor", quiet.cursor)
    assert _added(found) == ["data-v3"]
    assert len(found.run_requests or []) == 1
    request = (found.run_requests or [])[0]
    assert request.partition_key == "data-v3"
    assert request.run_key == "breast_cancer_data_versions:data-v3"
    assert request.tags[REASON] == "new data version data-v3 in the registry"

    again = pipeline.tick("new_data_version_sensor", found.cursor)
    assert not again.run_requests and not _added(again)
    # Once the daemon has applied the add, even a sensor that lost its cursor asks nothing.
    pipeline.instance.add_dynamic_partitions(SAMPLE_MODEL.data_versions.name or "", ["data-v3"])
    assert not pipeline.tick("new_data_version_sensor").run_requests


def test_first_tick_discovers_every_existing_batch_once(
    pipeline_factory: Callable[[Registry], Pipeline], registry_copy: Registry, sample_dir: Path
) -> None:
    pipeline = pipeline_factory(registry_copy)
    first = pipeline.tick("new_batch_sensor")
    assert _added(first) == ["batch-001", "batch-002"]
    assert [r.partition_key for r in first.run_requests or []] == ["batch-001", "batch-002"]

    batch = (sample_dir / "batches" / "batch-002.csv").read_bytes()
    registry_copy.publish("batch-003", batch, target="batches/batch-003.csv")
    second = pipeline.tick("new_batch_sensor", first.cursor)
    assert _added(second) == ["batch-003"]
    assert [r.run_key for r in second.run_requests or []] == [
        "breast_cancer_production_batches:batch-003"
    ]
    assert not pipeline.tick("new_batch_sensor", second.cursor).run_requests


def _schedule_tick(
    pipeline: Pipeline, when: dt.datetime
) -> dg.RunRequest | dg.SkipReason | list[dg.RunRequest]:
    schedule = pipeline.defs.resolve_schedule_def(pipeline.model.scoped("retraining_schedule"))
    with dg.build_schedule_context(
        instance=pipeline.instance,
        scheduled_execution_time=when,
        resources=pipeline.defs.resources,
        repository_def=pipeline.defs.get_repository_def(),
    ) as context:
        data = schedule.evaluate_tick(context)
    if data.skip_message:
        return dg.SkipReason(data.skip_message)
    return list(data.run_requests or [])


def test_schedule_is_weekly_and_retrains_the_newest_version(
    pipeline_factory: Callable[[Registry], Pipeline], demo_registry: Registry
) -> None:
    pipeline = pipeline_factory(demo_registry)
    schedule = pipeline.defs.resolve_schedule_def("breast_cancer_retraining_schedule")
    assert schedule.cron_schedule == DEFAULT_RETRAIN_CRON == "0 3 * * 1"
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == "breast_cancer_lifecycle"

    monday = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.UTC)
    skipped = _schedule_tick(pipeline, monday)
    assert isinstance(skipped, dg.SkipReason)
    assert "no data version is a partition yet" in (skipped.skip_message or "")

    pipeline.add("data-v1", "data-v2")
    requests = _schedule_tick(pipeline, monday)
    assert isinstance(requests, list) and len(requests) == 1
    assert requests[0].partition_key == "data-v2"
    assert requests[0].run_key == "scheduled-retraining:2026-11-23T03:00:00+00:00"
    assert "scheduled retraining (0 3 * * 1)" in requests[0].tags[REASON]
    # The same tick evaluated again carries the same run key, so the daemon launches it once.
    again = _schedule_tick(pipeline, monday)
    assert isinstance(again, list) and again[0].run_key == requests[0].run_key


def test_schedule_cron_comes_from_the_declaration_then_the_platform_default(
    demo_registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The whole code location (every model folder), the registry's url overridden for each.
    registry = DataRegistry(url=str(demo_registry.repo))
    models = {"breast_cancer": "0 3 * * 1", "diabetes": "0 4 * * 1"}  # as each one declares
    assert {m: load_model_folder(PROJECT_ROOT / "models" / m).model.schedule for m in models} == (
        models
    )
    custom = build_definitions(registry=registry, retrain_cron="30 2 1 * *")
    for name in models:
        schedule = custom.resolve_schedule_def(f"{name}_retraining_schedule")
        assert schedule.cron_schedule == "30 2 1 * *", name

    # Each model team's declared schedule wins over the platform's default ...
    monkeypatch.setenv("LIFECYCLE_RETRAIN_CRON", "0 4 * * *")
    declared = SAMPLE_MODEL.model.schedule
    assert declared == models["breast_cancer"]
    every = build_definitions(registry=registry)
    for name, cron in models.items():
        assert every.resolve_schedule_def(f"{name}_retraining_schedule").cron_schedule == cron
    one = build_definitions(model=SAMPLE_MODEL, registry=demo_registry.resource())
    assert one.resolve_schedule_def("breast_cancer_retraining_schedule").cron_schedule == declared
    # ... which applies to a model that declares none.
    registry = demo_registry.resource()
    unscheduled = dataclasses.replace(
        SAMPLE_MODEL, model=SAMPLE_MODEL.model.model_copy(update={"schedule": None})
    )
    from_env = build_definitions(model=unscheduled, registry=registry)
    schedule = from_env.resolve_schedule_def("breast_cancer_retraining_schedule")
    assert schedule.cron_schedule == "0 4 * * *"

    monkeypatch.setenv("LIFECYCLE_RETRAIN_CRON", "every monday")
    with pytest.raises(ValueError, match="'every monday' is not a valid cron expression"):
        build_definitions(model=unscheduled, registry=registry)


def test_automation_condition_documents_every_evaluated_version(
    demo_registry: Registry, tmp_path: Path
) -> None:
    """model_card follows every evaluation, failing ones too; packaging is left to the job."""
    with scratch_pipeline(demo_registry, tmp_path) as pipeline:
        defs, instance = pipeline.defs, pipeline.instance
        card, package = pipeline.key("model_card"), pipeline.key("deployment_package")
        pipeline.add("data-v1", "data-v2")
        # Conditions start from the state at their first evaluation, as when a deployment turns on.
        baseline = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert baseline.total_requested == 0
        upstream = dg.AssetSelection.assets(
            SAMPLE["data_snapshot"], SAMPLE["features"], SAMPLE["trained_model"]
        )
        evaluated = upstream | dg.AssetSelection.assets(SAMPLE["evaluation"])
        assert pipeline.run("data-v1", selection=evaluated).success
        failing = {
            "ops": {
                **FAST_TRAINING["ops"],
                pipeline.op("evaluation"): {"config": {"gates": {"f1": 1.0}}},
            }
        }
        assert not pipeline.run("data-v2", run_config=failing, selection=evaluated).success

        first = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=baseline.cursor
        )
        assert first.get_requested_partitions(card) == {"data-v1", "data-v2"}
        assert first.get_requested_partitions(package) == set()
        assert first.total_requested == 2

        second = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=first.cursor
        )
        assert second.total_requested == 0
