"""Composition root: lifecycle assets and checks, jobs, sensors, schedule, resources, executor."""

from __future__ import annotations

import dagster as dg

from lifecycle_pipeline.assets.data import data_snapshot
from lifecycle_pipeline.assets.documentation import model_card
from lifecycle_pipeline.assets.evaluation import evaluation
from lifecycle_pipeline.assets.features import features
from lifecycle_pipeline.assets.monitoring import drift_monitor
from lifecycle_pipeline.assets.packaging import deployment_package
from lifecycle_pipeline.assets.training import trained_model
from lifecycle_pipeline.automation import (
    discovery_sensor,
    drift_retraining_sensor,
    retraining_schedule,
)
from lifecycle_pipeline.partitions import DATA_VERSIONS, PRODUCTION_BATCHES
from lifecycle_pipeline.resources.artifact_store import ArtifactStore
from lifecycle_pipeline.resources.registry import DataRegistry
from lifecycle_pipeline.resources.signing import PackageSigner

LIFECYCLE_ASSETS = [
    data_snapshot,
    features,
    trained_model,
    evaluation,
    model_card,
    deployment_package,
]
ASSETS = [*LIFECYCLE_ASSETS, drift_monitor]

lifecycle_job = dg.define_asset_job(
    "lifecycle",
    selection=dg.AssetSelection.assets(*LIFECYCLE_ASSETS),
    description="Every lifecycle stage for one data version: data to signed package.",
)
drift_job = dg.define_asset_job(
    "drift",
    selection=dg.AssetSelection.assets(drift_monitor),
    description="Drift of one production batch against the newest trained model.",
)


def build_definitions(
    *,
    registry: DataRegistry | None = None,
    artifact_store: ArtifactStore | None = None,
    signer: PackageSigner | None = None,
    retrain_cron: str | None = None,
) -> dg.Definitions:
    """Definitions with the given resources; defaults resolve their locations from the env.

    The in-process executor is the default because a single partition's stages run in
    sequence anyway, and a process per step costs seconds that the computation does not.
    """
    return dg.Definitions(
        assets=ASSETS,
        jobs=[lifecycle_job, drift_job],
        sensors=[
            discovery_sensor(
                "new_data_version_sensor", lifecycle_job, DATA_VERSIONS, "versions", "data versions"
            ),
            discovery_sensor(
                "new_batch_sensor", drift_job, PRODUCTION_BATCHES, "batches", "production batches"
            ),
            drift_retraining_sensor(lifecycle_job),
            # Documentation and packaging follow evaluation by declarative conditions; this
            # only ever runs downstream of work already done, so it is on by default, while
            # the sensors and schedule that start training are switched on deliberately.
            dg.AutomationConditionSensorDefinition(
                "lifecycle_automation",
                target=dg.AssetSelection.assets(model_card, deployment_package),
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=30,
                description="Keeps model_card and deployment_package in step with evaluation.",
            ),
        ],
        schedules=[retraining_schedule(lifecycle_job, retrain_cron)],
        resources={
            "registry": registry or DataRegistry(),
            "artifact_store": artifact_store or ArtifactStore(),
            "signer": signer or PackageSigner(),
        },
        executor=dg.in_process_executor,
    )


defs = build_definitions()
