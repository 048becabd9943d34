"""Lifecycle stage 1: the dataset at one DVC revision of the data registry, checked against the
model's declared contract."""

import sys
from collections.abc import Iterator, Mapping

import dagster as dg
import pandas as pd
from pydantic import Field

from lifecycle_pipeline import contract as contract_module
from lifecycle_pipeline.assets.common import IO_MANAGER_KEY, OWNERS, code_version
from lifecycle_pipeline.assets.preflight import validate_run_config
from lifecycle_pipeline.declaration import LoadedDeclaration
from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.lineage.records import DataSnapshot, ResolvedVersion
from lifecycle_pipeline.partitions import validate_partition_key
from lifecycle_pipeline.resources import registry as registry_module
from lifecycle_pipeline.resources.registry import DataRegistry
from lifecycle_pipeline.tasks import task_for


class DataSnapshotConfig(dg.Config):
    """Acceptance limits for a data version, checked on every snapshot."""

    min_rows: int = Field(default=100, ge=1, description="Fewest rows a version may have.")
    min_class_share: float = Field(
        default=0.1,
        ge=0.0,
        le=0.5,
        description="Classification: smallest share a class may have. Regression: smallest "
        "share of rows whose target differs from the most common value.",
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


def column_schema(dtypes: Mapping[str, str], model: LoadedDeclaration) -> dg.TableSchema:
    """The UI's column table, worded from the declaration.

    It takes column names and dtypes, never the frame: Dagster compiles a record class's
    constructor on its first call and keeps that caller's locals for good (dagster_shared's
    ``JitCheckedNew``), so a frame in scope here was held for the life of the process (at 1M
    rows, 237 MiB after ``data_snapshot`` had finished). ``_compile_table_records`` makes
    that first call at import, where nothing large is in scope.
    """
    contract = model.model.contract
    descriptions = {name: f.description or f.type for name, f in contract.features.items()}
    if contract.classes:
        labels = ", ".join(f"{c.value} = {c.name}" for c in contract.classes)
        descriptions[contract.target] = f"label: {labels}"
    else:
        descriptions[contract.target] = "target" + (
            f" ({contract.target_unit})" if contract.target_unit else ""
        )
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=str(column),
                type=str(dtype),
                description=descriptions.get(str(column)),
                constraints=dg.TableColumnConstraints(
                    nullable=str(column) in contract.features
                    and contract.features[str(column)].nullable
                ),
            )
            for column, dtype in dtypes.items()
        ]
    )


def _compile_table_records() -> None:
    """Construct the table records once, at import, from a frame holding nothing large."""
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("c", "string", constraints=dg.TableColumnConstraints(nullable=False))
        ]
    )
    dg.MetadataValue.table(records=[dg.TableRecord({"c": "x"})], schema=schema)


_compile_table_records()


def build_data_snapshot(model: LoadedDeclaration) -> dg.AssetsDefinition:
    """The data_snapshot asset of one declared model."""
    declared = model.model
    task = task_for(declared.contract.task)
    balance_rule = (
        "The smallest class is at least `min_class_share` of rows."
        if declared.contract.classes
        else "At least `min_class_share` of rows differ from the most common target value."
    )

    @dg.asset(
        key=model.key("data_snapshot"),
        partitions_def=model.data_versions,
        group_name=model.name,
        kinds={"dvc", "pandas"},
        owners=OWNERS,
        tags={"lifecycle/stage": "1-data"},
        io_manager_key=IO_MANAGER_KEY,
        required_resource_keys={model.registry_key},
        code_version=code_version(
            sys.modules[__name__], contract_module, registry_module, declaration=model
        ),
        check_specs=[
            dg.AssetCheckSpec(
                "row_count",
                asset=model.key("data_snapshot"),
                blocking=True,
                description="The version has at least `min_rows` rows.",
            ),
            dg.AssetCheckSpec(
                "class_balance",
                asset=model.key("data_snapshot"),
                blocking=True,
                description=balance_rule,
            ),
        ],
    )
    def data_snapshot(
        context: dg.AssetExecutionContext, config: DataSnapshotConfig
    ) -> Iterator[dg.Output[DataSnapshot] | dg.AssetCheckResult]:
        """The dataset at one DVC revision of the data registry, checked against its contract."""
        validate_run_config(context.run.run_config, model)
        key = validate_partition_key(context.partition_key)
        registry = DataRegistry.of(context, model)

        def read(typed: bool) -> tuple[ResolvedVersion, str, pd.DataFrame]:
            with registry.open(key) as (version, stream):
                guard_against_moved_version(context, version)
                source = f"{version.registry}@{key}:{version.path}"
                try:  # parsed as it is read: the file and the frame are never both held whole
                    parsed = contract_module.parse_stream(
                        stream,
                        source=source,
                        fmt=declared.data.format,
                        contract=declared.contract,
                        typed=typed,
                        missing=declared.data.missing,
                    )
                finally:  # bytes other than the recorded ones are the cause to report, first
                    stream.verify()
            return version, source, parsed

        try:
            version, source, parsed = read(typed=True)
        except contract_module.DeclaredTypeMismatchError:  # validation will name every problem
            version, source, parsed = read(typed=False)
        frame = contract_module.validate(
            parsed,
            declared.contract,
            source=source,
            declaration=str(model.path),
            task=task,
        )
        del parsed
        nulls = {str(c): int(n) for c, n in frame.isna().sum().items()}
        target = frame[declared.contract.target]
        counts = (
            {str(k): int(v) for k, v in target.value_counts().sort_index().items()}
            if declared.contract.classes
            else None
        )
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
                "dagster/column_schema": column_schema(
                    {str(c): str(t) for c, t in frame.dtypes.items()}, model
                ),
                "null_counts": dg.MetadataValue.json(nulls),
                **({"class_counts": dg.MetadataValue.json(counts)} if counts is not None else {}),
                **(
                    {
                        "positives": dg.MetadataValue.int(
                            counts[str(declared.contract.positive.value)]
                        )
                    }
                    if declared.contract.task == "binary" and counts is not None
                    else {}
                ),
                "declaration/sha256": dg.MetadataValue.text(model.sha256),
            },
        )
        yield dg.AssetCheckResult(
            check_name="row_count",
            passed=len(frame) >= config.min_rows,
            metadata={"rows": len(frame), "min_rows": config.min_rows},
            description=f"{len(frame)} rows (minimum {config.min_rows})",
        )
        share, described = task.balance(target)
        yield dg.AssetCheckResult(
            check_name="class_balance",
            passed=share >= config.min_class_share,
            metadata={"minority_share": float(share), "min_class_share": config.min_class_share},
            description=f"{described} (minimum {config.min_class_share})",
        )

    return data_snapshot
