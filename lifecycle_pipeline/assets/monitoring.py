"""Lifecycle stage 7: drift of each production batch against a model's training reference."""

import sys
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from lifecycle_pipeline import schema
from lifecycle_pipeline.assets.common import IO_MANAGER_KEY, OWNERS, code_version, upstream_metadata
from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.lineage.query import latest
from lifecycle_pipeline.lineage.records import ArtifactRef, FeatureSet, FileTree, TrainedModel
from lifecycle_pipeline.monitoring import drift as drift_module
from lifecycle_pipeline.monitoring.drift import (
    DriftSettings,
    DriftSummary,
    drift_summary,
    report_files,
)
from lifecycle_pipeline.partitions import PRODUCTION_BATCHES, validate_partition_key
from lifecycle_pipeline.resources import codecs
from lifecycle_pipeline.resources.artifact_store import ArtifactStore, ref_from_record
from lifecycle_pipeline.resources.registry import DataRegistry

REPORT_KIND = "drift_report"


class DriftConfig(dg.Config):
    """Pinned drift test, thresholds, sampling, and which model version to compare against."""

    method: str = Field(default="psi", description="Evidently drift method for every column.")
    threshold: float = Field(
        default=0.1, gt=0.0, le=10.0, description="Per-column drift threshold."
    )
    drift_share_threshold: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Batch drifts when this share of columns drift."
    )
    sample_cap: int = Field(default=100_000, ge=100, le=10_000_000, description="Rows per side.")
    seed: int = Field(default=20241122, ge=0, le=2**32 - 1, description="Sampling seed.")
    reference_version: str | None = Field(
        default=None,
        description="Data version whose model and training split are the reference; default "
        "the newest data version with a trained model.",
    )

    def settings(self) -> DriftSettings:
        return DriftSettings(
            method=self.method,
            threshold=self.threshold,
            drift_share_threshold=self.drift_share_threshold,
            sample_cap=self.sample_cap,
            seed=self.seed,
        )


class ReferenceNotFoundError(LifecycleError, LookupError):
    """No trained model version exists to compare a batch against."""


def reference_version(
    instance: dg.DagsterInstance, registry: DataRegistry, configured: str | None
) -> str:
    if configured:
        return validate_partition_key(configured)
    for version in reversed(registry.versions()):
        if latest(instance, "trained_model", version) is not None:
            return version
    raise ReferenceNotFoundError(
        "No data version has a trained model to compare production batches against; "
        "materialize the lifecycle job for a data version first, or set reference_version."
    )


def load_stage(
    instance: dg.DagsterInstance, store: ArtifactStore, asset: str, version: str
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


def monitor(
    batch_key: str,
    batch_md5: str,
    current: pd.DataFrame,
    features: FeatureSet,
    model: TrainedModel,
    version: str,
    settings: DriftSettings,
) -> tuple[DriftSummary, dict[str, bytes]]:
    """Feature drift on every model input, and prediction drift of the reference's model."""
    summary, snapshot = drift_summary(
        features.train,
        current,
        list(features.feature_columns),
        model.pipeline,
        settings,
        batch=batch_key,
        batch_md5=batch_md5,
        reference_version=version,
    )
    return summary, report_files(summary, snapshot)


def column_table(summary: DriftSummary) -> dg.TableMetadataValue:
    rows = [*summary.columns, summary.prediction]
    return dg.MetadataValue.table(
        records=[dg.TableRecord(c.to_dict()) for c in rows],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("column", "string"),
                dg.TableColumn("method", "string"),
                dg.TableColumn("score", "float"),
                dg.TableColumn("threshold", "float"),
                dg.TableColumn("drifted", "bool"),
            ]
        ),
    )


@dg.asset(
    partitions_def=PRODUCTION_BATCHES,
    group_name="monitoring",
    kinds={"evidently", "dvc"},
    owners=OWNERS,
    tags={"lifecycle/stage": "7-monitoring"},
    io_manager_key=IO_MANAGER_KEY,
    deps=[dg.AssetDep("trained_model", partition_mapping=dg.AllPartitionMapping())],
    code_version=code_version(sys.modules[__name__], drift_module),
    check_specs=[
        dg.AssetCheckSpec(
            "drift_share",
            asset="drift_monitor",
            description="Share of drifted feature columns stays within drift_share_threshold "
            "(WARN: drift alerts and may trigger retraining; it does not block).",
        )
    ],
)
def drift_monitor(
    context: dg.AssetExecutionContext,
    config: DriftConfig,
    registry: DataRegistry,
    artifact_store: dg.ResourceParam[ArtifactStore],
) -> Iterator[dg.Output[FileTree] | dg.AssetCheckResult]:
    """Evidently drift report of a production batch against the training reference."""
    batch_key = validate_partition_key(context.partition_key)
    resolved, raw = registry.read_batch(batch_key)
    source = f"production batch {batch_key!r} ({resolved.registry}@{batch_key}:{resolved.path})"
    current = schema.validate_frame(
        schema.parse_csv(raw, source=source), source=source, require_target=False, allow_extra=True
    )
    version = reference_version(context.instance, registry, config.reference_version)
    features, features_ref = load_stage(context.instance, artifact_store, "features", version)
    model, model_ref = load_stage(context.instance, artifact_store, "trained_model", version)
    summary, files = monitor(
        batch_key, resolved.md5, current, features, model, version, config.settings()
    )
    context.log.info(summary.describe())
    yield dg.Output(
        FileTree(kind=REPORT_KIND, files=files, entry="report.html"),
        metadata={
            "drift/share": dg.MetadataValue.float(summary.drift_share),
            "drift/drifted_count": dg.MetadataValue.int(len(summary.drifted_columns)),
            "drift/verdict": dg.MetadataValue.text(summary.verdict),
            "drift/drifted_columns": dg.MetadataValue.json(summary.drifted_columns),
            "drift/columns": column_table(summary),
            "drift/prediction_score": dg.MetadataValue.float(summary.prediction.score),
            "drift/prediction_drifted": dg.MetadataValue.bool(summary.prediction.drifted),
            "drift/method": dg.MetadataValue.text(config.method),
            "drift/threshold": dg.MetadataValue.float(config.threshold),
            "drift/share_threshold": dg.MetadataValue.float(config.drift_share_threshold),
            "sample/seed": dg.MetadataValue.int(config.seed),
            "sample/cap": dg.MetadataValue.int(config.sample_cap),
            "sample/reference_rows": dg.MetadataValue.int(summary.sampled_reference_rows),
            "sample/current_rows": dg.MetadataValue.int(summary.sampled_current_rows),
            "batch/rows": dg.MetadataValue.int(len(current)),
            "batch/dvc_md5": dg.MetadataValue.text(resolved.md5),
            "batch/git_commit": dg.MetadataValue.text(resolved.commit),
            "reference/version": dg.MetadataValue.text(version),
            "model/fingerprint": dg.MetadataValue.text(model.fingerprint.combined),
            **upstream_metadata(features_ref, model_ref),
        },
    )
    yield dg.AssetCheckResult(
        check_name="drift_share",
        passed=not summary.drifted,
        severity=dg.AssetCheckSeverity.WARN,
        description=summary.describe(),
        metadata={
            "drift_share": summary.drift_share,
            "threshold": config.drift_share_threshold,
            "drifted_columns": summary.drifted_columns,
        },
    )
