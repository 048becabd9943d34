"""Composition root: lifecycle assets and checks, jobs, sensors, schedule, resources, executor."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

import dagster as dg

from lifecycle_pipeline.assets.data import data_snapshot
from lifecycle_pipeline.assets.documentation import model_card
from lifecycle_pipeline.assets.evaluation import evaluation
from lifecycle_pipeline.assets.features import features
from lifecycle_pipeline.assets.monitoring import drift_monitor
from lifecycle_pipeline.assets.packaging import deployment_package, package_verifies
from lifecycle_pipeline.assets.training import trained_model
from lifecycle_pipeline.automation import (
    audit_log_sensor,
    discovery_sensor,
    drift_retraining_sensor,
    retraining_schedule,
)
from lifecycle_pipeline.errors import SettingError
from lifecycle_pipeline.governance import production_model_spec
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
# Checks defined apart from their asset (they read what the asset stored).
LIFECYCLE_CHECKS = [package_verifies]
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


EXECUTORS = ("in_process", "multiprocess", "dask", "k8s")


def executor_from_env(env: Mapping[str, str] | None = None) -> dg.ExecutorDefinition:
    """The executor named by ``LIFECYCLE_EXECUTOR``; a deployment picks it without code changes.

    ``in_process`` (default): a single partition's stages run in sequence anyway, and a process
    per step costs seconds the computation does not. ``multiprocess``: one process per step,
    ``LIFECYCLE_MAX_CONCURRENT`` at once. ``dask``: steps on a Dask cluster, the scheduler at
    ``LIFECYCLE_DASK_ADDRESS``, or a local cluster of ``LIFECYCLE_DASK_WORKERS`` processes.
    ``k8s``: one Kubernetes job per step (dagster-k8s), inside a run launched by the Helm
    chart's K8sRunLauncher (deploy/k8s/values.yaml). Steps share nothing but the artifact
    store and the instance, so any of them works.
    """
    env = os.environ if env is None else env
    kind = env.get("LIFECYCLE_EXECUTOR", "in_process")
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "multiprocess":
        limit = _int_env(env, "LIFECYCLE_MAX_CONCURRENT", 0)
        # Steps fork from a server that imported the code location once, instead of each
        # spawning a fresh interpreter that imports Dagster, scikit-learn and DVC again.
        start = {"forkserver": {"preload_modules": ["lifecycle_pipeline.definitions"]}}
        return dg.multiprocess_executor.configured({"max_concurrent": limit, "start_method": start})
    if kind == "dask":
        from lifecycle_pipeline.executors import dask_executor

        address = env.get("LIFECYCLE_DASK_ADDRESS")
        cluster = (
            {"existing": {"address": address}}
            if address
            else {
                "local": {
                    "n_workers": _int_env(env, "LIFECYCLE_DASK_WORKERS", 2),
                    "threads_per_worker": 1,
                    "processes": True,
                    "dashboard_address": None,
                }
            }
        )
        return dask_executor(cluster)
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        limit = _int_env(env, "LIFECYCLE_MAX_CONCURRENT", 0)
        return k8s_job_executor.configured({"max_concurrent": limit} if limit else {})
    raise SettingError(
        f"LIFECYCLE_EXECUTOR={kind!r} is not an executor here; use one of {', '.join(EXECUTORS)}."
    )


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} must be a whole number.") from None
    if value < 0:
        raise SettingError(f"{name}={raw!r} must not be negative.")
    return value


def build_definitions(
    *,
    registry: DataRegistry | None = None,
    artifact_store: ArtifactStore | None = None,
    signer: PackageSigner | None = None,
    retrain_cron: str | None = None,
    executor: dg.ExecutorDefinition | None = None,
) -> dg.Definitions:
    """Definitions with the given resources; defaults resolve from the environment."""
    with warnings.catch_warnings():  # beta API, chosen on purpose: quiet for every importer
        warnings.simplefilter("ignore", dg.BetaWarning)
        # Each asset links to its source file and line in the UI ("View source").
        assets = dg.with_source_code_references([*ASSETS, production_model_spec()])
    return dg.Definitions(
        assets=assets,
        asset_checks=LIFECYCLE_CHECKS,
        jobs=[lifecycle_job, drift_job],
        sensors=[
            discovery_sensor(
                "new_data_version_sensor", lifecycle_job, DATA_VERSIONS, "versions", "data versions"
            ),
            discovery_sensor(
                "new_batch_sensor", drift_job, PRODUCTION_BATCHES, "batches", "production batches"
            ),
            drift_retraining_sensor(lifecycle_job),
            audit_log_sensor(),
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
        executor=executor or executor_from_env(),
    )


defs = build_definitions()


def lifecycle_job_from_env() -> dg.JobDefinition:
    """The lifecycle job as this process's environment defines it.

    A reconstructable target (``dg.reconstructable``) for running the job outside a code
    server, e.g. with steps on Dask workers that rebuild it from this module.
    """
    return build_definitions().resolve_job_def("lifecycle")
