"""Composition root: one declared model's assets and checks, jobs, sensors, schedule, resources,
executor.

The model is chosen by ``$LIFECYCLE_MODEL`` (a declaration file, a model folder, or the name of
a folder under ``models/``; default the sample model). Everything domain-specific comes from
that declaration; this module only composes.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import dagster as dg

from lifecycle_pipeline.assets.data import build_data_snapshot
from lifecycle_pipeline.assets.documentation import build_model_card
from lifecycle_pipeline.assets.evaluation import build_evaluation
from lifecycle_pipeline.assets.features import build_features
from lifecycle_pipeline.assets.monitoring import build_drift_monitor
from lifecycle_pipeline.assets.packaging import build_deployment_package, build_package_verifies
from lifecycle_pipeline.assets.training import build_trained_model
from lifecycle_pipeline.automation import (
    audit_log_sensor,
    discovery_sensor,
    drift_retraining_sensor,
    retraining_schedule,
)
from lifecycle_pipeline.declaration import LoadedDeclaration, current_declaration
from lifecycle_pipeline.errors import SettingError
from lifecycle_pipeline.governance import production_model_spec
from lifecycle_pipeline.partitions import DATA_VERSIONS, PRODUCTION_BATCHES
from lifecycle_pipeline.resources.artifact_store import ArtifactStore
from lifecycle_pipeline.resources.registry import DataRegistry
from lifecycle_pipeline.resources.signing import PackageSigner


@dataclass(frozen=True)
class ModelAssets:
    """One declared model's lifecycle assets, checks and jobs."""

    model: LoadedDeclaration
    lifecycle: list[dg.AssetsDefinition]
    checks: list[dg.AssetChecksDefinition]
    drift_monitor: dg.AssetsDefinition

    @property
    def assets(self) -> list[dg.AssetsDefinition]:
        return [*self.lifecycle, self.drift_monitor]

    def lifecycle_job(self) -> dg.UnresolvedAssetJobDefinition:
        return dg.define_asset_job(
            "lifecycle",
            selection=dg.AssetSelection.assets(*self.lifecycle),
            description=f"Every lifecycle stage of {self.model.name} for one data version: data "
            "to signed package.",
        )

    def drift_job(self) -> dg.UnresolvedAssetJobDefinition:
        return dg.define_asset_job(
            "drift",
            selection=dg.AssetSelection.assets(self.drift_monitor),
            description=f"Drift of one production batch against {self.model.name}'s newest "
            "trained model.",
        )


def model_assets(model: LoadedDeclaration | None = None) -> ModelAssets:
    """The asset factories applied to one declaration (default: this process's model)."""
    model = model or current_declaration()
    return ModelAssets(
        model=model,
        lifecycle=[
            build_data_snapshot(model),
            build_features(model),
            build_trained_model(model),
            build_evaluation(model),
            build_model_card(model),
            build_deployment_package(model),
        ],
        # Checks defined apart from their asset (they read what the asset stored).
        checks=[build_package_verifies(model)],
        drift_monitor=build_drift_monitor(model),
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
    model: LoadedDeclaration | None = None,
    registry: DataRegistry | None = None,
    artifact_store: ArtifactStore | None = None,
    signer: PackageSigner | None = None,
    retrain_cron: str | None = None,
    executor: dg.ExecutorDefinition | None = None,
) -> dg.Definitions:
    """Definitions of one declared model with the given resources; defaults resolve from the
    environment and the declaration (its data source fills what ``registry`` leaves unset)."""
    built = model_assets(model)
    lifecycle_job, drift_job = built.lifecycle_job(), built.drift_job()
    model_card, deployment_package = built.lifecycle[4], built.lifecycle[5]
    with warnings.catch_warnings():  # beta API, chosen on purpose: quiet for every importer
        warnings.simplefilter("ignore", dg.BetaWarning)
        # Each asset links to its source file and line in the UI ("View source").
        assets = dg.with_source_code_references([*built.assets, production_model_spec()])
    return dg.Definitions(
        assets=assets,
        asset_checks=built.checks,
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
        schedules=[retraining_schedule(lifecycle_job, retrain_cron, built.model.model.schedule)],
        resources={
            "registry": DataRegistry.for_model(built.model, registry),
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
