"""Lifecycle stage 3: the fitted scikit-learn pipeline and its fingerprint."""

import sys
import time
from collections.abc import Iterator
from typing import Any, Literal

import dagster as dg
import pandas as pd
from pydantic import Field
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from lifecycle_pipeline.assets.common import IO_MANAGER_KEY, OWNERS, code_version, upstream_metadata
from lifecycle_pipeline.failpoints import failpoint
from lifecycle_pipeline.lineage import fingerprint as fingerprint_module
from lifecycle_pipeline.lineage.environment import (
    LOCK_FILE,
    UNKNOWN,
    code_state,
    library_versions,
    machine,
)
from lifecycle_pipeline.lineage.fingerprint import fingerprint
from lifecycle_pipeline.lineage.hashing import json_hash
from lifecycle_pipeline.lineage.records import FeatureSet, TrainedModel
from lifecycle_pipeline.partitions import DATA_VERSIONS
from lifecycle_pipeline.settings import Settings


class TrainingConfig(dg.Config):
    """Estimator and hyperparameters; validated before any training starts."""

    estimator: Literal["random_forest", "logistic_regression"] = Field(
        default="random_forest", description="Which estimator family to fit."
    )
    n_estimators: int = Field(default=300, ge=1, le=5000, description="random_forest: trees.")
    max_depth: int | None = Field(
        default=None, ge=1, le=200, description="random_forest: depth cap."
    )
    min_samples_leaf: int = Field(
        default=2, ge=1, le=10_000, description="random_forest: leaf size."
    )
    regularization_c: float = Field(
        default=1.0, gt=0.0, le=1e6, description="logistic_regression: inverse regularization C."
    )
    max_iter: int = Field(default=5000, ge=10, le=1_000_000, description="logistic_regression.")
    seed: int = Field(default=7, ge=0, le=2**32 - 1, description="Estimator random_state.")
    threads: int = Field(
        default=1, ge=1, le=64, description="Thread count for fit and BLAS, pinned for determinism."
    )
    golden_rows: int = Field(
        default=64, ge=8, le=100_000, description="Held-out rows in the golden input set."
    )

    def hyperparameters(self) -> dict[str, Any]:
        if self.estimator == "random_forest":
            keys: tuple[str, ...] = ("n_estimators", "max_depth", "min_samples_leaf")
        else:
            keys = ("regularization_c", "max_iter")
        return {"estimator": self.estimator, **{k: getattr(self, k) for k in keys}}


def build_pipeline(config: TrainingConfig) -> Pipeline:
    if config.estimator == "random_forest":
        return Pipeline(
            [
                (
                    "classifier",
                    RandomForestClassifier(
                        n_estimators=config.n_estimators,
                        max_depth=config.max_depth,
                        min_samples_leaf=config.min_samples_leaf,
                        random_state=config.seed,
                        n_jobs=config.threads,
                    ),
                )
            ]
        )
    return Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "classifier",
                LogisticRegression(
                    C=config.regularization_c, max_iter=config.max_iter, random_state=config.seed
                ),
            ),
        ]
    )


def golden_inputs(feature_set: FeatureSet, rows: int) -> pd.DataFrame:
    """Fixed inputs whose predictions identify the model: held-out rows plus range extremes.

    The extremes (column-wise min, median and max of the training data) probe behaviour at the
    edges of the training range, where a changed model is most likely to differ.
    """
    columns = list(feature_set.feature_columns)
    train = feature_set.train[columns]
    held_out = feature_set.test[columns].head(rows)
    edges = pd.DataFrame([train.min(), train.median(), train.max()], columns=columns)
    return pd.concat([held_out, edges], ignore_index=True).astype("float64")


def fit(feature_set: FeatureSet, config: TrainingConfig) -> tuple[Pipeline, float]:
    """Fit with thread pools pinned, then make prediction single-threaded.

    Fitting a forest in parallel is deterministic (every tree gets its own seeded random
    state), but ``predict_proba`` with ``n_jobs > 1`` adds per-tree probabilities in thread
    completion order, so the last bits of a prediction vary from call to call. The stored
    model therefore predicts with ``n_jobs=1``: bit-identical in evaluation, in the package
    and in production.
    """
    pipeline = build_pipeline(config)
    started = time.perf_counter()
    with threadpool_limits(limits=config.threads):
        pipeline.fit(
            feature_set.train[list(feature_set.feature_columns)],
            feature_set.train[feature_set.target],
        )
    elapsed = time.perf_counter() - started
    if "n_jobs" in pipeline.named_steps["classifier"].get_params():
        pipeline.set_params(classifier__n_jobs=1)
    return pipeline, elapsed


def lineage_hash(lineage: dict[str, Any]) -> str:
    """Short identity of a model version: data, code, environment, config and fingerprint."""
    return json_hash({k: lineage[k] for k in ("data_md5", "code", "config_hash", "fingerprint")})[
        :12
    ]


def previous_versions(context: dg.AssetExecutionContext, limit: int = 100) -> list[Any]:
    return list(
        context.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=context.asset_key, asset_partitions=[context.partition_key]
            ),
            limit=limit,
        ).records
    )


def reproducibility_verdict(lineage: dict[str, Any], history: list[Any]) -> dg.AssetCheckResult:
    """Same lineage inputs must give the same fingerprint; changed inputs are a new version.

    Without a lock file the environment is not identified, so "same inputs" cannot be
    established: the verdict is unknown (a warning), never identical.
    """
    if lineage["code"]["lock_hash"] == UNKNOWN:
        return dg.AssetCheckResult(
            check_name="reproducible",
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"verdict": "unknown", "unidentified": ["code.lock_hash"]},
            description=f"Reproducibility unknown: no {LOCK_FILE} was found beside the code, so "
            "the environment that trained this model is not identified and no earlier training "
            f"can be called identical. Train from a checkout (or image) that has its {LOCK_FILE}.",
        )
    inputs = {k: lineage[k] for k in ("data_md5", "config_hash")}
    inputs |= {k: lineage["code"][k] for k in ("source_digest", "lock_hash")}
    fingerprint_now = lineage["fingerprint"]["combined"]
    latest_other: dict[str, Any] | None = None
    for record in history:
        earlier = record.asset_materialization.metadata.get("lineage")
        if earlier is None:
            continue
        earlier_lineage = earlier.value
        earlier_inputs = {k: earlier_lineage[k] for k in ("data_md5", "config_hash")}
        earlier_inputs |= {k: earlier_lineage["code"][k] for k in ("source_digest", "lock_hash")}
        if earlier_inputs == inputs:
            earlier_fp = earlier_lineage["fingerprint"]["combined"]
            same = earlier_fp == fingerprint_now
            return dg.AssetCheckResult(
                check_name="reproducible",
                passed=same,
                metadata={
                    "compared_run": record.run_id,
                    "recorded": earlier_fp,
                    "now": fingerprint_now,
                },
                description=(
                    f"Identical to run {record.run_id}: same inputs, same fingerprint."
                    if same
                    else "NOT reproducible: same data, code, lock and config as run "
                    f"{record.run_id} "
                    f"but fingerprint {fingerprint_now[:16]} != recorded {earlier_fp[:16]}. "
                    "Look for unseeded randomness or unpinned threads."
                ),
            )
        latest_other = latest_other or earlier_lineage
    if latest_other is None:
        return dg.AssetCheckResult(
            check_name="reproducible",
            passed=True,
            description="First model version of this data version.",
        )
    changed = sorted(
        k
        for k in inputs
        if inputs[k]
        != (latest_other[k] if k in ("data_md5", "config_hash") else latest_other["code"][k])
    )
    return dg.AssetCheckResult(
        check_name="reproducible",
        passed=True,
        metadata={"changed_inputs": changed},
        description="New model version of this data version; changed on purpose: "
        f"{', '.join(changed)}.",
    )


@dg.asset(
    partitions_def=DATA_VERSIONS,
    group_name="training",
    kinds={"sklearn"},
    owners=OWNERS,
    tags={"lifecycle/stage": "3-training"},
    io_manager_key=IO_MANAGER_KEY,
    code_version=code_version(sys.modules[__name__], fingerprint_module),
    check_specs=[
        dg.AssetCheckSpec(
            "reproducible",
            asset="trained_model",
            blocking=True,
            description="Re-training with identical data, code, lock and config gives the "
            "same fingerprint.",
        )
    ],
)
def trained_model(
    context: dg.AssetExecutionContext, config: TrainingConfig, features: FeatureSet
) -> Iterator[dg.Output[TrainedModel] | dg.AssetCheckResult]:
    """The fitted scikit-learn pipeline, with seeds and thread counts pinned and a fingerprint."""
    history = previous_versions(context)
    pipeline, fit_seconds = fit(features, config)
    failpoint("training.fitted")
    golden = golden_inputs(features, config.golden_rows)
    model_fingerprint = fingerprint(pipeline, golden)
    code = code_state(Settings.from_env().project_root)
    resolved_config = config.model_dump()
    lineage: dict[str, Any] = {
        "data_md5": features.data_md5,
        "split": {"seed": features.seed, "test_size": features.test_size},
        "code": code.to_dict(),
        "config": resolved_config,
        "config_hash": json_hash(
            {"training": resolved_config, "split": [features.seed, features.test_size]}
        ),
        "fingerprint": model_fingerprint.to_dict(),
    }
    version_id = lineage_hash(lineage)
    yield dg.Output(
        TrainedModel(
            pipeline=pipeline, golden_inputs=golden, fingerprint=model_fingerprint, lineage=lineage
        ),
        data_version=dg.DataVersion(model_fingerprint.combined[:32]),
        metadata={
            "model/fingerprint": dg.MetadataValue.text(model_fingerprint.combined),
            "model/state_digest": dg.MetadataValue.text(model_fingerprint.state),
            "model/prediction_digest": dg.MetadataValue.text(model_fingerprint.predictions),
            "model/version_id": dg.MetadataValue.text(version_id),
            "estimator": dg.MetadataValue.text(repr(pipeline)),
            "hyperparameters": dg.MetadataValue.json(config.hyperparameters()),
            "seed": dg.MetadataValue.int(config.seed),
            "threads": dg.MetadataValue.int(config.threads),
            "fit_seconds": dg.MetadataValue.float(round(fit_seconds, 4)),
            "code/commit": dg.MetadataValue.text(code.commit),
            "code/dirty": dg.MetadataValue.bool(code.dirty),
            "env/lock_hash": dg.MetadataValue.text(code.lock_hash),
            "env/libraries": dg.MetadataValue.json(library_versions()),
            "env/machine": dg.MetadataValue.json(machine()),
            "config_hash": dg.MetadataValue.text(lineage["config_hash"]),
            "dvc/md5": dg.MetadataValue.text(features.data_md5),
            "golden_inputs/rows": dg.MetadataValue.int(len(golden)),
            "lineage": dg.MetadataValue.json(lineage),
            **upstream_metadata(features.source),
        },
    )
    yield reproducibility_verdict(lineage, history)
