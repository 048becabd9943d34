"""Lifecycle stage 2: the seeded, stratified train/test split and the model's feature matrix."""

import sys
from collections.abc import Iterable

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field
from sklearn.model_selection import train_test_split

from lifecycle_pipeline.assets.common import (
    IO_MANAGER_KEY,
    OWNERS,
    code_version,
    setting,
    upstream_metadata,
)
from lifecycle_pipeline.declaration import Contract, LoadedDeclaration
from lifecycle_pipeline.lineage.hashing import combine, frame_hash
from lifecycle_pipeline.lineage.records import DataSnapshot, FeatureSet
from lifecycle_pipeline.tasks import task_for

ROW_ID = "row_id"
TRANSFORMS = (
    "row_id = row position in the data version (stable join key for predictions)",
    "features cast to their declared types and checked against the contract at the snapshot",
    "no imputation here: missing values pass only where the contract declares them nullable",
    "encoding and scaling are model-pipeline steps (so production applies them too)",
)


class FeaturesConfig(dg.Config):
    """How the held-out split is drawn."""

    seed: int = Field(default=20240917, ge=0, le=2**32 - 1, description="Split seed.")
    test_size: float = Field(default=0.25, gt=0.05, lt=0.5, description="Held-out share.")


def split(snapshot: DataSnapshot, config: FeaturesConfig, contract: Contract) -> FeatureSet:
    """Stratify classification on the label so that both splits keep the class balance of the
    version (regression is split uniformly).

    The split is drawn on row positions, and each side is then taken from the frame once, in
    row order: the same rows as splitting the frame itself and sorting each side by row id,
    without the three full copies that costs (measured at 1M rows: +0.9 GiB peak).
    """
    columns = [*contract.feature_names, contract.target]
    frame = snapshot.frame if list(snapshot.frame.columns) == columns else snapshot.frame[columns]
    train_rows, test_rows = train_test_split(
        np.arange(len(frame)),
        test_size=config.test_size,
        random_state=config.seed,
        stratify=task_for(contract.task).stratify(frame[contract.target]),
    )

    def take(rows: np.ndarray) -> pd.DataFrame:
        rows = np.sort(rows)
        part = frame.iloc[rows]
        part.insert(0, ROW_ID, rows.astype("int64"))
        part.index = pd.RangeIndex(len(part))
        return part

    train, test = take(train_rows), take(test_rows)
    return FeatureSet(
        train=train,
        test=test,
        feature_columns=contract.feature_names,
        target=contract.target,
        seed=config.seed,
        test_size=config.test_size,
        data_md5=snapshot.version.md5,
    )


def column_stats(frame: pd.DataFrame, columns: Iterable[str]) -> dg.TableMetadataValue:
    """Moments of the numeric features (categorical ones have none to show).

    Only the moments are recorded; describe() would also sort every column for quantiles.
    """
    numeric = [c for c in columns if pd.api.types.is_numeric_dtype(frame[c].dtype)]
    return dg.MetadataValue.table(
        records=[  # column by column: selecting the numeric columns would copy them all
            dg.TableRecord(
                {
                    "column": str(name),
                    "mean": float(frame[name].mean()),
                    "std": float(frame[name].std()),
                    "min": float(frame[name].min()),
                    "max": float(frame[name].max()),
                }
            )
            for name in numeric
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("column", "string"),
                *(dg.TableColumn(c, "float") for c in ("mean", "std", "min", "max")),
            ]
        ),
    )


def build_features(model: LoadedDeclaration) -> dg.AssetsDefinition:
    """The features asset of one declared model."""
    contract = model.model.contract

    @dg.asset(
        key=model.key("features"),
        ins=model.inputs("data_snapshot"),
        partitions_def=model.data_versions,
        group_name=model.name,
        kinds={"pandas", "sklearn"},
        owners=OWNERS,
        tags={"lifecycle/stage": "2-features"},
        io_manager_key=IO_MANAGER_KEY,
        code_version=code_version(sys.modules[__name__], declaration=model),
    )
    def features(config: FeaturesConfig, data_snapshot: DataSnapshot) -> dg.Output[FeatureSet]:
        """Seeded train/test split and the feature matrix the model is trained on."""
        feature_set = split(data_snapshot, config, contract)
        train_hash = frame_hash(feature_set.train)
        test_hash = frame_hash(feature_set.test)
        stratified = task_for(contract.task).stratify(data_snapshot.frame[contract.target])
        return dg.Output(
            feature_set,
            data_version=dg.DataVersion(combine([train_hash, test_hash])[:32]),
            metadata={
                "feature_columns": dg.MetadataValue.json(list(feature_set.feature_columns)),
                "target": dg.MetadataValue.text(feature_set.target),
                "transforms": dg.MetadataValue.json(list(TRANSFORMS)),
                "split/seed": setting(config.seed),
                "split/test_size": setting(config.test_size),
                "split/stratified_on": dg.MetadataValue.text(
                    contract.target if stratified is not None else "(not stratified)"
                ),
                "train/rows": dg.MetadataValue.int(len(feature_set.train)),
                "test/rows": dg.MetadataValue.int(len(feature_set.test)),
                "train/sha256": dg.MetadataValue.text(train_hash),
                "test/sha256": dg.MetadataValue.text(test_hash),
                "train/column_stats": column_stats(feature_set.train, feature_set.feature_columns),
                "dvc/md5": dg.MetadataValue.text(feature_set.data_md5),
                **upstream_metadata(data_snapshot.source),
            },
        )

    return features
