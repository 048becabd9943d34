"""Lifecycle stage 1: the dataset at one DVC revision of the data registry."""

import sys
from collections.abc import Iterator
from typing import Any

import dagster as dg
from pydantic import Field

from lifecycle_pipeline import schema
from lifecycle_pipeline.assets.common import IO_MANAGER_KEY, OWNERS, code_version
from lifecycle_pipeline.assets.preflight import validate_run_config
from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.lineage.records import DataSnapshot, ResolvedVersion
from lifecycle_pipeline.partitions import DATA_VERSIONS, validate_partition_key
from lifecycle_pipeline.resources import registry as registry_module
from lifecycle_pipeline.resources.registry import DataRegistry


class DataSnapshotConfig(dg.Config):
    """Acceptance limits for a data version, checked on every snapshot."""

    min_rows: int = Field(default=100, ge=1, description="Fewest rows a version may have.")
    min_class_share: float = Field(
        default=0.1, ge=0.0, le=0.5, description="Smallest share the minority class may have."
    )


class DataVersionMovedError(LifecycleError, RuntimeError):
    """A data-version key now resolves to other bytes than it did when first materialized."""


def _first_recorded_version(
    context: dg.AssetExecutionContext, key: str
) -> tuple[str, str, str] | None:
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[key]),
        limit=1,
        ascending=True,
    ).records
    if not records:
        return None
    metadata = records[0].asset_materialization.metadata
    return (
        str(metadata["dvc/md5"].value),
        str(metadata["git/commit"].value),
        records[0].run_id,
    )


def guard_against_moved_version(
    context: dg.AssetExecutionContext, version: ResolvedVersion
) -> None:
    """Fail loudly if a key that was materialized before now points at different bytes."""
    first = _first_recorded_version(context, version.key)
    if first is not None and first[0] != version.md5:
        md5, commit, run_id = first
        raise DataVersionMovedError(
            f"Data version {version.key!r} now resolves to md5 {version.md5} (commit "
            f"{version.commit[:12]}), but it was first materialized from md5 {md5} (commit "
            f"{commit[:12]}, run {run_id}). The tag was moved or the registry rewritten. "
            "Restore the tag, or publish the new data under a new version name."
        )


def _column_schema(frame: Any) -> dg.TableSchema:
    descriptions = {schema.TARGET: "1 = malignant, 0 = benign (label)"}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=str(column),
                type=str(dtype),
                description=descriptions.get(str(column), "cell-nucleus measurement"),
                constraints=dg.TableColumnConstraints(nullable=False),
            )
            for column, dtype in frame.dtypes.items()
        ]
    )


@dg.asset(
    partitions_def=DATA_VERSIONS,
    group_name="data",
    kinds={"dvc", "pandas"},
    owners=OWNERS,
    tags={"lifecycle/stage": "1-data"},
    io_manager_key=IO_MANAGER_KEY,
    code_version=code_version(sys.modules[__name__], schema, registry_module),
    check_specs=[
        dg.AssetCheckSpec(
            "row_count",
            asset="data_snapshot",
            blocking=True,
            description="The version has at least `min_rows` rows.",
        ),
        dg.AssetCheckSpec(
            "class_balance",
            asset="data_snapshot",
            blocking=True,
            description="The minority class is at least `min_class_share` of rows.",
        ),
    ],
)
def data_snapshot(
    context: dg.AssetExecutionContext, config: DataSnapshotConfig, registry: DataRegistry
) -> Iterator[dg.Output[DataSnapshot] | dg.AssetCheckResult]:
    """The dataset at one DVC revision of the data registry, validated against its schema."""
    validate_run_config(context.run.run_config)
    key = validate_partition_key(context.partition_key)
    version, raw = registry.read(key)
    guard_against_moved_version(context, version)
    source = f"{version.registry}@{key}:{version.path}"
    frame = schema.validate_frame(schema.parse_csv(raw, source=source), source=source)
    nulls = {str(c): int(n) for c, n in frame.isna().sum().items()}
    positives = int(frame[schema.TARGET].sum())
    yield dg.Output(
        DataSnapshot(frame=frame, version=version),
        data_version=dg.DataVersion(version.md5),
        metadata={
            "registry": dg.MetadataValue.text(version.registry),
            "rev": dg.MetadataValue.text(key),
            "git/commit": dg.MetadataValue.text(version.commit),
            "dvc/md5": dg.MetadataValue.text(version.md5),
            "dvc/path": dg.MetadataValue.text(version.path),
            "dagster/row_count": dg.MetadataValue.int(len(frame)),
            "dagster/column_schema": _column_schema(frame),
            "null_counts": dg.MetadataValue.json(nulls),
            "positives": dg.MetadataValue.int(positives),
        },
    )
    share = min(positives, len(frame) - positives) / len(frame)
    yield dg.AssetCheckResult(
        check_name="row_count",
        passed=len(frame) >= config.min_rows,
        metadata={"rows": len(frame), "min_rows": config.min_rows},
        description=f"{len(frame)} rows (minimum {config.min_rows})",
    )
    yield dg.AssetCheckResult(
        check_name="class_balance",
        passed=share >= config.min_class_share,
        metadata={"minority_share": float(share), "min_class_share": config.min_class_share},
        description=f"minority class share {share:.3f} (minimum {config.min_class_share})",
    )
