"""Sensors, the retraining schedule and automation conditions: retraining for a readable reason.

Every run these request carries a ``lifecycle/reason`` tag, which the next model card shows
under "What changed since the previous version", and a run key, so a tick that is evaluated
twice never requests the same run twice.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime

import dagster as dg

from lifecycle_pipeline.assets.documentation import REASON_TAG
from lifecycle_pipeline.declaration import LoadedDeclaration
from lifecycle_pipeline.errors import SettingError
from lifecycle_pipeline.partitions import PartitionKeyError, validate_partition_key
from lifecycle_pipeline.resources.registry import DataRegistry

DEFAULT_RETRAIN_CRON = "0 3 * * 1"  # Mondays 03:00 UTC
# A run whose last update was written while the previous tick was reading is re-read by the
# next one (the log drops repeats); writes land within milliseconds, 10 s is ample.
AUDIT_MARGIN_SECONDS = 10.0
TRIGGER_TAG = "lifecycle/trigger"


def _unseen(
    context: dg.SensorEvaluationContext, partitions: str, tags: list[str]
) -> tuple[list[str], set[str]]:
    """Valid tags not yet a partition and not handled by an earlier tick (the cursor)."""
    handled = set(json.loads(context.cursor)) if context.cursor else set()
    known = set(context.instance.get_dynamic_partitions(partitions)) | handled
    new: list[str] = []
    for tag in tags:
        try:
            validate_partition_key(tag)
        except PartitionKeyError as exc:
            context.log.warning(f"Skipping registry tag {tag!r}: {exc}")
            continue
        if tag not in known:
            new.append(tag)
    return new, handled | set(new)


def discovery_sensor(
    model: LoadedDeclaration,
    name: str,
    job: dg.UnresolvedAssetJobDefinition,
    partitions: dg.DynamicPartitionsDefinition,
    list_tags: str,
    describe: str,
) -> dg.SensorDefinition:
    name = model.scoped(name)

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=60,
        required_resource_keys={model.registry_key},
        description=f"Adds new {describe} of {model.name} as partitions and requests their runs.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        tags = getattr(DataRegistry.of(context, model), list_tags)()
        new, handled = _unseen(context, partitions.name or "", tags)
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    partition_key=tag,
                    run_key=f"{partitions.name}:{tag}",
                    tags={
                        REASON_TAG: f"new {describe[:-1]} {tag} in the registry",
                        TRIGGER_TAG: name,
                    },
                )
                for tag in new
            ],
            dynamic_partitions_requests=[partitions.build_add_request(new)] if new else [],
            cursor=json.dumps(sorted(handled)),
        )

    return _sensor


def newest_known_version(
    instance: dg.DagsterInstance, model: LoadedDeclaration, registry: DataRegistry
) -> str | None:
    """The newest registry data version that is already a partition (so a run can target it)."""
    known = set(instance.get_dynamic_partitions(model.scoped("data_versions")))
    candidates = [v for v in registry.versions() if v in known]
    return candidates[-1] if candidates else None


def _drift_alert(record: dg.EventLogRecord) -> str | None:
    """The reason text for one drift_monitor materialization, or None if it did not drift."""
    materialization = record.asset_materialization
    if materialization is None:
        return None
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    if metadata.get("drift/verdict") != "drift":
        return None
    share, threshold = metadata["drift/share"], metadata["drift/share_threshold"]
    columns = ", ".join(metadata.get("drift/drifted_columns") or [])  # type: ignore[arg-type]
    return (
        f"drift on production batch {materialization.partition}: share {share:.3f} > {threshold} "
        f"(columns: {columns}; drift_monitor run {record.run_id})"
    )


def drift_retraining_sensor(
    model: LoadedDeclaration, job: dg.UnresolvedAssetJobDefinition, batch_limit: int = 100
) -> dg.SensorDefinition:
    """One retraining request per tick in which any batch drifted, naming every such batch.

    Dagster's ``asset_sensor`` looks only at the newest materialization after its cursor, so a
    drifting batch followed by a calm one within one tick would be missed; this sensor reads
    every drift_monitor materialization after its cursor (a storage id) in order instead.
    """

    name = model.scoped("drift_retraining_sensor")

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=60,
        required_resource_keys={model.registry_key},
        description=f"Requests retraining of {model.name}'s newest data version when a batch "
        "drifts.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        after = int(context.cursor) if context.cursor else None
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=model.key("drift_monitor"), after_storage_id=after),
            limit=batch_limit,
            ascending=True,
        ).records
        if not records:
            return dg.SensorResult(skip_reason="no new drift results")
        cursor = str(records[-1].storage_id)
        alerts = [(r, reason) for r in records if (reason := _drift_alert(r)) is not None]
        if not alerts:
            batches = ", ".join(str(r.partition_key) for r in records)
            return dg.SensorResult(skip_reason=f"no drift in batch(es) {batches}", cursor=cursor)
        version = newest_known_version(context.instance, model, DataRegistry.of(context, model))
        if version is None:
            # Keep the cursor: the alert is acted on once a data version exists.
            return dg.SensorResult(
                skip_reason="drift detected but no data version is a partition yet"
            )
        drifted = [str(r.partition_key) for r, _ in alerts]
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    partition_key=version,
                    run_key="retrain-after-drift:"
                    + ",".join(f"{r.partition_key}@{r.storage_id}" for r, _ in alerts),
                    tags={
                        REASON_TAG: "; ".join(reason for _, reason in alerts),
                        TRIGGER_TAG: name,
                        "lifecycle/drift_batches": ",".join(drifted),
                    },
                )
            ],
            cursor=cursor,
        )

    return _sensor


def retraining_schedule(
    model: LoadedDeclaration, job: dg.UnresolvedAssetJobDefinition, cron: str | None = None
) -> dg.ScheduleDefinition:
    """Retraining of the newest data version on a cron: ``cron`` if given, else the model
    declaration's ``schedule`` (the model team's decision), else the platform's default
    ``LIFECYCLE_RETRAIN_CRON``, else weekly."""
    cron = (
        cron
        or model.model.schedule
        or os.environ.get("LIFECYCLE_RETRAIN_CRON")
        or DEFAULT_RETRAIN_CRON
    )
    from dagster._utils.schedules import is_valid_cron_string

    if not is_valid_cron_string(cron):
        raise SettingError(f"LIFECYCLE_RETRAIN_CRON {cron!r} is not a valid cron expression.")

    name = model.scoped("retraining_schedule")

    @dg.schedule(
        cron_schedule=cron,
        job=job,
        name=name,
        execution_timezone="UTC",
        required_resource_keys={model.registry_key},
        description=f"Retrains {model.name}'s newest data version on cron {cron!r}.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        version = newest_known_version(context.instance, model, DataRegistry.of(context, model))
        if version is None:
            return dg.SkipReason("no data version is a partition yet")
        when = (
            context.scheduled_execution_time.isoformat()
            if context.scheduled_execution_time
            else "now"
        )
        return dg.RunRequest(
            partition_key=version,
            run_key=f"scheduled-retraining:{when}",
            tags={
                REASON_TAG: f"scheduled retraining ({cron}) of the newest data version {version}",
                TRIGGER_TAG: name,
            },
        )

    return _schedule


def audit_log_sensor(model: LoadedDeclaration) -> dg.SensorDefinition:
    """Appends every finished run (lineage, check verdicts, reason) to the audit log.

    On by default: it requests nothing and only reads the instance, and an audit trail that
    must be switched on is one that will be missing when it is needed.
    """
    from lifecycle_pipeline.governance import sync_runs
    from lifecycle_pipeline.lineage.audit import AuditLog

    @dg.sensor(
        name=model.scoped("audit_log_sensor"),
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Appends {model.name}'s finished runs to its hash-chained audit log.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        # The cursor is when the previous tick started: only runs updated since then (less a
        # margin for runs whose update was in flight) are read; the log itself drops repeats.
        started = time.time()
        since = float(context.cursor) - AUDIT_MARGIN_SECONDS if context.cursor else None
        log = AuditLog.for_model(model.name)
        added = sync_runs(
            context.instance,
            model.name,
            log,
            datetime.fromtimestamp(since, tz=UTC) if since is not None else None,
        )
        return dg.SensorResult(
            skip_reason=f"{added} finished run(s) appended to {log.path}", cursor=str(started)
        )

    return _sensor
