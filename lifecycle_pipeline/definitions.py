"""Composition root: every declared model's definitions, the shared resources, the executor.

Each folder under the models folder (``$LIFECYCLE_MODELS_DIR``, default ``models/``) is one
``LifecycleModel`` component (component.py); this module loads them with Dagster's component
loading and adds what the models share: the artifact store, the package signer and the
executor. A model whose declaration does not load is shown, not fatal (``BROKEN_MODELS``).
"""

from __future__ import annotations

import functools
import inspect
import os
import types
import warnings
from collections.abc import Mapping, Sequence
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
from lifecycle_pipeline.component import BrokenModel, load_models
from lifecycle_pipeline.declaration import LoadedDeclaration, current_declaration
from lifecycle_pipeline.errors import SettingError
from lifecycle_pipeline.governance import MODEL_TAG, production_model_spec
from lifecycle_pipeline.reproduce_job import build_reproduce_job
from lifecycle_pipeline.resources.artifact_store import ArtifactStore
from lifecycle_pipeline.resources.registry import DataRegistry
from lifecycle_pipeline.resources.signing import PackageSigner
from lifecycle_pipeline.settings import Settings


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
            self.model.scoped("lifecycle"),
            selection=dg.AssetSelection.assets(*self.lifecycle),
            tags={MODEL_TAG: self.model.name},
            description=f"Every lifecycle stage of {self.model.name} for one data version: data "
            "to signed package.",
        )

    def drift_job(self) -> dg.UnresolvedAssetJobDefinition:
        return dg.define_asset_job(
            self.model.scoped("drift"),
            selection=dg.AssetSelection.assets(self.drift_monitor),
            tags={MODEL_TAG: self.model.name},
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
                    # Any free port: runs on one host each start a cluster, and a fixed
                    # 8787 taken by another made distributed warn and move.
                    "dashboard_address": ":0",
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


def model_definitions(
    model: LoadedDeclaration,
    registry: DataRegistry | None = None,
    retrain_cron: str | None = None,
) -> dg.Definitions:
    """One model's assets, checks, jobs, sensors, schedule and registry, every name its own.

    Jobs: ``<model>_lifecycle`` and ``<model>_drift`` (asset jobs), and ``<model>_reproduce``,
    which on-call launches from the UI to rebuild a past version (reproduce_job.py).

    ``registry`` (a deployment's or a test's resource) overrides fields of the declared one.
    """
    built = model_assets(model)
    lifecycle_job, drift_job = built.lifecycle_job(), built.drift_job()
    model_card, deployment_package = built.lifecycle[4], built.lifecycle[5]
    return dg.Definitions(
        assets=[*(_with_source(a) for a in built.assets), production_model_spec(model)],
        asset_checks=built.checks,
        jobs=[lifecycle_job, drift_job, build_reproduce_job(model)],
        sensors=[
            discovery_sensor(
                model,
                "new_data_version_sensor",
                lifecycle_job,
                model.data_versions,
                "versions",
                "data versions",
            ),
            discovery_sensor(
                model,
                "new_batch_sensor",
                drift_job,
                model.production_batches,
                "batches",
                "production batches",
            ),
            drift_retraining_sensor(model, lifecycle_job),
            audit_log_sensor(model),
            # Documentation and packaging follow evaluation by declarative conditions; this
            # only ever runs downstream of work already done, so it is on by default, while
            # the sensors and schedule that start training are switched on deliberately.
            dg.AutomationConditionSensorDefinition(
                model.scoped("automation"),
                target=dg.AssetSelection.assets(model_card, deployment_package),
                # The run queue's per-model limit counts runs by this tag (dagster.yaml).
                run_tags={MODEL_TAG: model.name},
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=30,
                description=f"Keeps {model.name}'s model_card and deployment_package in step "
                "with evaluation.",
            ),
        ],
        schedules=[retraining_schedule(model, lifecycle_job, retrain_cron)],
        resources={model.registry_key: DataRegistry.for_model(model, registry)},
    )


@functools.cache
def _source_reference(code: types.CodeType) -> dg.CodeReferencesMetadataValue:
    """Where an asset function is defined: the same for every model, so read once (reading it
    tokenizes the source, ~3 ms per asset and model with `dg.with_source_code_references`)."""
    _, line = inspect.getsourcelines(code)
    with warnings.catch_warnings():  # code references are a beta API, used on purpose
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.CodeReferencesMetadataValue(
            code_references=[
                dg.LocalFileCodeReference(file_path=code.co_filename, line_number=line)
            ]
        )


def _with_source(asset: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """The asset with a link to its source file and line in the UI ("View source")."""
    compute = getattr(asset.node_def, "compute_fn", None)
    function = getattr(compute, "decorated_fn", compute)
    code = getattr(function, "__code__", None)
    if code is None:
        return asset
    reference = {"dagster/code_references": _source_reference(code)}
    return asset.map_asset_specs(lambda spec: spec.merge_attributes(metadata=reference))


def broken_definitions(broken: Sequence[BrokenModel]) -> dg.Definitions:
    return dg.Definitions(assets=[b.spec() for b in broken])


def build_definitions(
    *,
    models: Sequence[LoadedDeclaration] | None = None,
    model: LoadedDeclaration | None = None,
    registry: DataRegistry | None = None,
    artifact_store: ArtifactStore | None = None,
    signer: PackageSigner | None = None,
    retrain_cron: str | None = None,
    executor: dg.ExecutorDefinition | None = None,
) -> dg.Definitions:
    """The code location: the given models (``models``, or ``model`` alone), else every model
    folder under the models folder, with the shared resources. Defaults resolve from the
    environment; ``registry`` overrides fields of each model's declared registry."""
    chosen = list(models or ([model] if model else []))
    if chosen:
        per_model = [model_definitions(m, registry, retrain_cron) for m in chosen]
        broken: list[BrokenModel] = []
    else:
        settings = Settings.from_env()
        found = load_models(settings.models_dir, settings.project_root, registry, retrain_cron)
        per_model, broken = found.definitions, found.broken
        if broken and os.environ.get("LIFECYCLE_BROKEN_MODELS", "exclude") == "fail":
            raise SettingError(
                "LIFECYCLE_BROKEN_MODELS=fail and these models do not load:\n"
                + "\n".join(b.error for b in broken)
            )
    shared = dg.Definitions(
        resources={
            "artifact_store": artifact_store or ArtifactStore(),
            "signer": signer or PackageSigner(),
        },
        executor=executor or executor_from_env(),
    )
    return dg.Definitions.merge(*per_model, broken_definitions(broken), shared)


defs = build_definitions()


def lifecycle_job_from_env() -> dg.JobDefinition:
    """The lifecycle job of ``$LIFECYCLE_MODEL`` (or the only model) as this process's
    environment defines it.

    A reconstructable target (``dg.reconstructable``, which takes no arguments) for running
    the job outside a code server, e.g. with steps on Dask workers that rebuild it from this
    module.
    """
    model = current_declaration()
    return build_definitions(model=model).resolve_job_def(model.scoped("lifecycle"))
