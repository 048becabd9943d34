"""Lifecycle stage 7: drift of each production batch against a model's training reference."""

import hashlib
import sys
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from lifecycle_pipeline import contract as contract_module
from lifecycle_pipeline.assets.common import (
    IO_MANAGER_KEY,
    OWNERS,
    code_version,
    setting,
    upstream_metadata,
)
from lifecycle_pipeline.declaration import Drift, LoadedDeclaration
from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.lineage.query import AssetRef, latest
from lifecycle_pipeline.lineage.records import ArtifactRef, FeatureSet, FileTree, TrainedModel
from lifecycle_pipeline.monitoring import drift as drift_module
from lifecycle_pipeline.monitoring.drift import (
    DriftError,
    DriftSummary,
    drift_summary,
    report_files,
)
from lifecycle_pipeline.partitions import validate_partition_key
from lifecycle_pipeline.resources import codecs
from lifecycle_pipeline.resources.artifact_store import ArtifactStore, ref_from_record
from lifecycle_pipeline.resources.registry import DataRegistry

REPORT_KIND = "drift_report"


class DriftConfig(dg.Config):
    """What one run may choose: the reference, and how many rows are looked at.

    The tests, thresholds and share threshold are the declaration's alone: a verdict must mean
    the same for every batch (the retraining sensor acts on it), and changing what counts as
    drift is a reviewed change to ``model.yaml`` that also marks this asset stale. The sample
    cap and seed only choose which rows are compared (a smaller cap for a huge batch on a small
    machine); an override is recorded with the result (``drift/overrides``).
    """

    reference_version: str | None = Field(
        default=None,
        description="Data version whose model and training split are the reference; default "
        "the newest data version with a trained model.",
    )
    sample_cap: int | None = Field(
        default=None,
        ge=100,
        le=10_000_000,
        description="Rows per side for this run; default the declaration's drift.sample_cap.",
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=2**32 - 1,
        description="Sampling seed for this run; default the declaration's drift.seed.",
    )

    def overrides(self) -> dict[str, int]:
        return {
            k: v for k, v in (("sample_cap", self.sample_cap), ("seed", self.seed)) if v is not None
        }


def drift_settings(declared: Drift, overrides: dict[str, int] | None = None) -> Drift:
    """The declaration's drift settings with a run's sampling overrides, validated again."""
    if not overrides:
        return declared
    return type(declared).model_validate({**declared.model_dump(), **overrides})


class ReferenceNotFoundError(LifecycleError, LookupError):
    """No trained model version exists to compare a batch against."""


def reference_version(
    instance: dg.DagsterInstance,
    model: LoadedDeclaration,
    registry: DataRegistry,
    configured: str | None,
) -> str:
    if configured:
        return validate_partition_key(configured)
    for version in reversed(registry.versions()):
        if latest(instance, model.key("trained_model"), version) is not None:
            return version
    raise ReferenceNotFoundError(
        "No data version has a trained model to compare production batches against; "
        "materialize the lifecycle job for a data version first, or set reference_version."
    )


def load_stage(
    instance: dg.DagsterInstance, store: ArtifactStore, asset: AssetRef, version: str
) -> tuple[Any, ArtifactRef]:
    """The latest materialized value of a reference stage, verified, with its reference."""
    record = latest(instance, asset, version)
    if record is None:
        raise ReferenceNotFoundError(
            f"Reference version {version!r} has no {asset} materialization."
        )
    ref = ref_from_record(record)
    value = codecs.decode(store.read(ref), source=ref.uri)
    return value, ref


def read_batch(
    declaration: LoadedDeclaration, batch: bytes | pd.DataFrame, *, source: str
) -> pd.DataFrame:
    """A batch parsed in the declared format and checked against the contract.

    Extra columns (request ids, timestamps) and a missing target are allowed in production;
    only the features are kept. Every broken rule is reported at once, naming the declaration.
    """
    model = declaration.model
    frame = (
        contract_module.parse(
            batch,
            source=source,
            fmt=model.data.format,
            contract=model.contract,
            missing=model.data.missing,
        )
        if isinstance(batch, bytes)
        else batch
    )
    return contract_module.validate(
        frame,
        model.contract,
        source=source,
        declaration=str(declaration.path),
        require_target=False,
        allow_extra=True,
    )


def judge_batch(
    declaration: LoadedDeclaration,
    batch: bytes | pd.DataFrame,
    features: FeatureSet,
    model: TrainedModel,
    *,
    batch_key: str,
    reference_version: str,
    source: str,
    batch_md5: str | None = None,
    overrides: dict[str, int] | None = None,
) -> tuple[DriftSummary, dict[str, bytes]]:
    """Drift of one batch (file bytes, or a frame) against a reference's training split and model.

    The one computation behind the ``drift_monitor`` asset and ``lifecycle drift FILE``:
    the batch is read with the declaration's format and contract (a refused batch raises
    ``DataValidationError`` naming ``source`` and the declaration), judged with its ``drift:``
    settings (``overrides``: a run's ``sample_cap``/``seed``), and the report files are built.
    ``batch_md5`` defaults to the md5 of the bytes given (DVC's digest of the same file); a
    frame passed without one is identified by the md5 of its CSV text.
    """
    current = read_batch(declaration, batch, source=source)
    if batch_md5 is None:
        raw = batch if isinstance(batch, bytes) else batch.to_csv(index=False).encode("utf-8")
        batch_md5 = hashlib.md5(raw, usedforsecurity=False).hexdigest()
    if set(features.feature_columns) != set(declaration.model.contract.feature_names):
        raise DriftError(
            f"reference version {reference_version!r} was trained on features "
            f"{sorted(features.feature_columns)}, but {declaration.path} declares "
            f"{sorted(declaration.model.contract.feature_names)}: train that version under "
            "this declaration, or choose another reference_version."
        )
    summary, snapshot = drift_summary(
        features.train,
        current,
        declaration.model,
        model.pipeline,
        drift_settings(declaration.model.drift, overrides),
        batch=batch_key,
        batch_md5=batch_md5,
        reference_version=reference_version,
        extra={
            "declaration": {
                "model": declaration.name,
                "path": str(declaration.path),
                "sha256": declaration.sha256,
            },
            "overrides": dict(overrides or {}),
        },
    )
    return summary, report_files(summary, snapshot)


def column_table(summary: DriftSummary) -> dg.TableMetadataValue:
    rows = [*summary.columns, summary.prediction]
    return dg.MetadataValue.table(
        records=[dg.TableRecord(c.to_dict()) for c in rows],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("column", "string"),
                dg.TableColumn("kind", "string"),
                dg.TableColumn("method", "string"),
                dg.TableColumn("score", "float"),
                dg.TableColumn("threshold", "float"),
                dg.TableColumn("drifts_when", "string"),
                dg.TableColumn("drifted", "bool"),
            ]
        ),
    )


def drift_metadata(summary: DriftSummary) -> dict[str, Any]:
    """What the UI plots and the retraining sensor reads, per batch."""
    settings = summary.settings
    outside = summary.outside_training
    tests = {"numeric": settings.numeric, "categorical": settings.categorical}
    return {
        "drift/share": dg.MetadataValue.float(summary.drift_share),
        "drift/drifted_count": dg.MetadataValue.int(len(summary.drifted_columns)),
        "drift/verdict": dg.MetadataValue.text(summary.verdict),
        "drift/drifted_columns": dg.MetadataValue.json(summary.drifted_columns),
        "drift/columns": column_table(summary),
        "drift/prediction_column": dg.MetadataValue.text(summary.prediction.column),
        "drift/prediction_score": dg.MetadataValue.float(summary.prediction.score),
        "drift/prediction_drifted": dg.MetadataValue.bool(summary.prediction.drifted),
        "drift/tests": dg.MetadataValue.json(
            {
                **{k: v.model_dump() for k, v in tests.items()},
                "prediction": {
                    "method": summary.prediction.method,
                    "threshold": summary.prediction.threshold,
                },
            }
        ),
        "drift/share_threshold": setting(summary.share_threshold),
        "drift/overrides": dg.MetadataValue.json(summary.extra.get("overrides", {})),
        "outside_training/rows": dg.MetadataValue.int(outside.rows),
        "outside_training/share": dg.MetadataValue.float(outside.share),
        "outside_training/out_of_range_rows": dg.MetadataValue.int(outside.out_of_range_rows),
        "outside_training/unseen_category_rows": dg.MetadataValue.int(outside.unseen_category_rows),
        "outside_training/columns": dg.MetadataValue.json(
            {"out_of_range": outside.out_of_range, "unseen_categories": outside.unseen_categories}
        ),
        **calibration_metadata(settings, len(summary.columns)),
        "sample/seed": setting(settings.seed),
        "sample/cap": setting(settings.sample_cap),
        "sample/reference_rows": dg.MetadataValue.int(summary.sampled_reference_rows),
        "sample/current_rows": dg.MetadataValue.int(summary.sampled_current_rows),
        "batch/rows": dg.MetadataValue.int(summary.current_rows),
        "reference/version": dg.MetadataValue.text(summary.reference_version),
    }


def calibration_metadata(settings: Drift, columns: int) -> dict[str, Any]:
    """The declared batch size and calibration record beside each verdict, and whether the
    record still describes the declared thresholds: an alarm is trusted for its measured
    false-alarm rate, which holds only for the settings that were measured."""
    metadata: dict[str, Any] = {}
    if settings.batch_size is not None:
        metadata["drift/batch_size"] = setting(settings.batch_size)
    if settings.false_alarm_rate is not None:
        metadata["drift/false_alarm_rate"] = setting(settings.false_alarm_rate)
    if settings.calibration is not None:
        mismatches = settings.calibration_mismatches(columns)
        metadata["drift/calibration"] = dg.MetadataValue.json(
            {
                **settings.calibration.model_dump(mode="json"),
                "describes_declared_settings": not mismatches,
                "differences": mismatches,
            }
        )
    return metadata


def build_drift_monitor(model: LoadedDeclaration) -> dg.AssetsDefinition:
    """The drift monitor of one declared model: one partition per production batch."""

    @dg.asset(
        key=model.key("drift_monitor"),
        partitions_def=model.production_batches,
        group_name=model.name,
        kinds={"evidently", "dvc"},
        owners=OWNERS,
        tags={"lifecycle/stage": "7-monitoring"},
        io_manager_key=IO_MANAGER_KEY,
        deps=[dg.AssetDep(model.key("trained_model"), partition_mapping=dg.AllPartitionMapping())],
        required_resource_keys={model.registry_key, "artifact_store"},
        code_version=code_version(sys.modules[__name__], drift_module, declaration=model),
        check_specs=[
            dg.AssetCheckSpec(
                "drift_share",
                asset=model.key("drift_monitor"),
                description="Share of drifted feature columns stays within the declaration's "
                "drift.share_threshold (WARN: drift alerts and may trigger retraining; it does "
                "not block).",
            )
        ],
    )
    def drift_monitor(
        context: dg.AssetExecutionContext,
        config: DriftConfig,
    ) -> Iterator[dg.Output[FileTree] | dg.AssetCheckResult]:
        """Evidently drift report of a production batch against the training reference."""
        batch_key = validate_partition_key(context.partition_key)
        registry = DataRegistry.of(context, model)
        artifact_store: ArtifactStore = context.resources.artifact_store
        resolved, raw = registry.read_batch(batch_key)
        source = f"production batch {batch_key!r} ({resolved.registry}@{batch_key}:{resolved.path})"
        version = reference_version(context.instance, model, registry, config.reference_version)
        features, features_ref = load_stage(
            context.instance, artifact_store, model.key("features"), version
        )
        trained, model_ref = load_stage(
            context.instance, artifact_store, model.key("trained_model"), version
        )
        summary, files = judge_batch(
            model,
            raw,
            features,
            trained,
            batch_key=batch_key,
            reference_version=version,
            source=source,
            batch_md5=resolved.md5,
            overrides=config.overrides(),
        )
        context.log.info(summary.describe())
        yield dg.Output(
            FileTree(kind=REPORT_KIND, files=files, entry="report.html"),
            metadata={
                **drift_metadata(summary),
                "batch/dvc_md5": dg.MetadataValue.text(resolved.md5),
                "batch/git_commit": dg.MetadataValue.text(resolved.commit),
                "model/fingerprint": dg.MetadataValue.text(trained.fingerprint.combined),
                "declaration/sha256": dg.MetadataValue.text(model.sha256),
                **upstream_metadata(features_ref, model_ref),
            },
        )
        outside = summary.outside_training
        yield dg.AssetCheckResult(
            check_name="drift_share",
            passed=not summary.drifted,
            severity=dg.AssetCheckSeverity.WARN,
            description=summary.describe(),
            metadata={
                "drift_share": summary.drift_share,
                "threshold": summary.share_threshold,
                "drifted_columns": summary.drifted_columns,
                "prediction_drifted": summary.prediction.drifted,
                "rows_outside_training": outside.rows,
            },
        )

    return drift_monitor
