"""Lifecycle stage 3: the fitted scikit-learn pipeline and its fingerprint."""

import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from joblib import parallel_config
from pydantic import Field
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from lifecycle_pipeline.assets.common import (
    IO_MANAGER_KEY,
    OWNERS,
    code_version,
    setting,
    upstream_metadata,
)
from lifecycle_pipeline.declaration import Contract, Estimator, LoadedDeclaration, ModelDeclaration
from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.failpoints import failpoint
from lifecycle_pipeline.lineage import fingerprint as fingerprint_module
from lifecycle_pipeline.lineage.environment import (
    LOCK_FILE,
    UNKNOWN,
    code_state,
    library_versions,
    machine,
    model_files,
)
from lifecycle_pipeline.lineage.fingerprint import fingerprint
from lifecycle_pipeline.lineage.hashing import json_hash
from lifecycle_pipeline.lineage.records import FeatureSet, TrainedModel
from lifecycle_pipeline.resources.codecs import dump_model
from lifecycle_pipeline.settings import Settings
from lifecycle_pipeline.tasks import task_for


class TrainingConfig(dg.Config):
    """Run-time training knobs; the estimator and its parameters come from the declaration."""

    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of the declared estimator.params for this run (recorded in the "
        "lineage, so a changed value is a new model version).",
    )
    seed: int = Field(default=7, ge=0, le=2**32 - 1, description="Estimator random_state.")
    threads: int = Field(
        default=1, ge=1, le=64, description="Thread count for fit and BLAS, pinned for determinism."
    )
    golden_rows: int = Field(
        default=64, ge=8, le=100_000, description="Held-out rows in the golden input set."
    )


class EstimatorError(LifecycleError, ValueError):
    """The declared estimator cannot be built, or its fitted model holds an unreviewed type."""


def estimator_params(declared: Estimator, overrides: dict[str, Any], seed: int) -> dict[str, Any]:
    """Declared parameters, run overrides, and the seed the pipeline pins.

    Threads are not a parameter: fitting runs inside a joblib context of ``threads`` workers,
    which every estimator whose ``n_jobs`` is left at None follows (and none is told about a
    parameter it may have deprecated).
    """
    accepted = declared.resolve()().get_params(deep=False)
    params = {**declared.params, **overrides}
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise EstimatorError(
            f"{unknown} are not parameters of "
            f"{declared.class_} (it takes {', '.join(sorted(accepted))})."
        )
    if "random_state" in accepted and "random_state" not in params:
        params["random_state"] = seed
    return params


def preprocessing(contract: Contract, declared: Estimator) -> Any:
    """Imputation, encoding and scaling built from the contract; None when the features pass
    as they are.

    Nullable numeric features are imputed when the declaration asks (``impute``),
    categoricals are one-hot encoded (unseen categories ignored or refused, as declared),
    numeric and integer features are standardized when the declaration asks, booleans pass
    through. Living inside the fitted pipeline, the same steps run in production.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    categorical = list(contract.of_type("categorical"))
    numeric = list(contract.of_type("numeric", "integer"))
    booleans = list(contract.of_type("boolean"))
    impute = declared.impute != "none" and any(
        contract.features[n].nullable for n in (*numeric, *booleans)
    )
    if not categorical and not impute:
        if not declared.scale:
            return None
        if not booleans:
            return StandardScaler()
    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        steps: list[tuple[str, Any]] = []
        if impute:
            steps.append(("impute", SimpleImputer(strategy=declared.impute)))
        if declared.scale:
            steps.append(("scale", StandardScaler()))
        chosen = Pipeline(steps) if len(steps) > 1 else steps[0][1] if steps else "passthrough"
        parts.append(("numeric", chosen, numeric))
    if categorical:
        encoder = OneHotEncoder(
            handle_unknown="ignore" if declared.unseen_categories == "ignore" else "error",
            sparse_output=False,
        )
        parts.append(("categorical", encoder, categorical))
    # Nullable booleans arrive as 1.0 / 0.0 / NaN: imputed with the most frequent value when
    # the declaration imputes; the others are plain booleans and pass through.
    gappy = [n for n in booleans if impute and contract.features[n].nullable]
    if gappy:
        parts.append(("boolean_gaps", SimpleImputer(strategy="most_frequent"), gappy))
    if plain := [n for n in booleans if n not in gappy]:
        parts.append(("boolean", "passthrough", plain))
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def step_name(contract: Contract) -> str:
    return "regressor" if contract.task == "regression" else "classifier"


def build_pipeline(model: ModelDeclaration, config: TrainingConfig) -> Pipeline:
    params = estimator_params(model.estimator, config.params, config.seed)
    try:
        estimator = model.estimator.build(params)
    except (TypeError, ValueError) as exc:
        raise EstimatorError(
            f"{model.estimator.class_}({params}) cannot be constructed: {exc}"
        ) from exc
    steps: list[tuple[str, Any]] = []
    prepared = preprocessing(model.contract, model.estimator)
    if prepared is not None:
        steps.append(("scale" if isinstance(prepared, StandardScaler) else "preprocess", prepared))
    steps.append((step_name(model.contract), estimator))
    return Pipeline(steps)


def golden_inputs(
    feature_set: FeatureSet, rows: int, types: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Fixed inputs whose predictions identify the model: held-out rows plus range extremes.

    The extremes (column-wise min, median and max of the training data; the most frequent
    value for categorical and boolean features) probe behaviour at the edges of the training
    range, where a changed model is most likely to differ. ``types``: each feature's declared
    type. Missing values make an integer or boolean column float (NaN, 1.0, 0.0); its middle
    value stays a whole number, and a boolean's is its most frequent value, not a median of
    0.5, which the package would refuse as no boolean.
    """
    types = types or {}
    columns = list(feature_set.feature_columns)
    train = feature_set.train[columns]
    held_out = feature_set.test[columns].head(rows)
    edges: dict[str, list[Any]] = {}
    for name in columns:
        values = train[name]
        if (
            pd.api.types.is_numeric_dtype(values)
            and not pd.api.types.is_bool_dtype(values)
            and types.get(name) != "boolean"
        ):
            middle = values.median()
            integer = types.get(name) == "integer" and not np.isnan(middle)
            if pd.api.types.is_integer_dtype(values) or integer:
                middle = round(middle)
            edges[name] = [values.min(), middle, values.max()]
        else:
            modes = values.mode(dropna=True)
            edges[name] = [modes.sort_values().iloc[0] if len(modes) else None] * 3
    frame = pd.concat([held_out, pd.DataFrame(edges, columns=columns)], ignore_index=True)
    return frame.astype(train.dtypes.to_dict())


def check_trusted_types(skops: bytes, model: LoadedDeclaration) -> list[str]:
    """Every type skops will not load by default must be on the declaration's allowlist.

    Checked on what the fitted model really contains (``skops``: its serialization), at
    training time, so an estimator whose state production could not load safely is stopped
    here, not at deployment.
    """
    import skops.io as sio

    contained = sio.get_untrusted_types(data=skops)
    allowed = set(model.model.estimator.trusted_types)
    refused = sorted(set(contained) - allowed)
    if refused:
        raise EstimatorError(
            f"The fitted {model.model.estimator.class_} contains type(s) {refused} that are not "
            f"on estimator.trusted_types in {model.path}. Loading a type runs its code: review "
            "each one, then add it to that list (never load with trust-all)."
        )
    return sorted(contained)


def fit(
    feature_set: FeatureSet, config: TrainingConfig, model: ModelDeclaration
) -> tuple[Pipeline, float]:
    """Fit with thread pools pinned, then make prediction single-threaded.

    Fitting a forest in parallel is deterministic (every tree gets its own seeded random
    state), but ``predict_proba`` with ``n_jobs > 1`` adds per-tree probabilities in thread
    completion order, so the last bits of a prediction vary from call to call. The stored
    model therefore predicts with ``n_jobs=1``: bit-identical in evaluation, in the package
    and in production.
    """
    pipeline = build_pipeline(model, config)
    # The feature columns as a frame of the training frame's own arrays: selecting them
    # (``train[columns]``) copied every one first, and the estimator then converts them to
    # its own array anyway (at 1M rows the copy was 172 MiB of the stage's peak). Estimators
    # do not write to their input (scikit-learn's estimator checks hold them to it).
    train = feature_set.train
    features = pd.DataFrame({name: train[name] for name in feature_set.feature_columns}, copy=False)
    started = time.perf_counter()
    with threadpool_limits(limits=config.threads), parallel_config(n_jobs=config.threads):
        pipeline.fit(features, train[feature_set.target])
    elapsed = time.perf_counter() - started
    final = step_name(model.contract)
    if "n_jobs" in pipeline.named_steps[final].get_params():
        pipeline.set_params(**{f"{final}__n_jobs": 1})
    return pipeline, elapsed


def lineage_hash(lineage: dict[str, Any]) -> str:
    """Short identity of a model version: data, code, environment, config and fingerprint."""
    keys = ("data_md5", "code", "config_hash", "fingerprint", "declaration")
    return json_hash({k: lineage.get(k) for k in keys})[:12]


def previous_versions(context: dg.AssetExecutionContext, limit: int = 100) -> list[Any]:
    return list(
        context.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=context.asset_key, asset_partitions=[context.partition_key]
            ),
            limit=limit,
        ).records
    )


def _inputs(lineage: dict[str, Any]) -> dict[str, Any]:
    """What must be equal for two trainings to be called the same: data, config, code, lock
    and the declaration (absent from lineage recorded before declarations existed)."""
    inputs = {k: lineage[k] for k in ("data_md5", "config_hash")}
    inputs |= {k: lineage["code"][k] for k in ("source_digest", "lock_hash")}
    inputs["declaration"] = (lineage.get("declaration") or {}).get("sha256")
    return inputs


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
    inputs = _inputs(lineage)
    fingerprint_now = lineage["fingerprint"]["combined"]
    latest_other: dict[str, Any] | None = None
    for record in history:
        earlier = record.asset_materialization.metadata.get("lineage")
        if earlier is None:
            continue
        earlier_lineage = earlier.value
        earlier_inputs = _inputs(earlier_lineage)
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
    other_inputs = _inputs(latest_other)
    changed = sorted(k for k in inputs if inputs[k] != other_inputs[k])
    return dg.AssetCheckResult(
        check_name="reproducible",
        passed=True,
        metadata={"changed_inputs": changed},
        description="New model version of this data version; changed on purpose: "
        f"{', '.join(changed)}.",
    )


def build_trained_model(model: LoadedDeclaration) -> dg.AssetsDefinition:
    """The trained_model asset of one declared model."""
    declared = model.model
    task = task_for(declared.contract.task)

    @dg.asset(
        key=model.key("trained_model"),
        ins=model.inputs("features"),
        partitions_def=model.data_versions,
        group_name=model.name,
        kinds={"sklearn"},
        owners=OWNERS,
        tags={"lifecycle/stage": "3-training"},
        io_manager_key=IO_MANAGER_KEY,
        code_version=code_version(sys.modules[__name__], fingerprint_module, declaration=model),
        check_specs=[
            dg.AssetCheckSpec(
                "reproducible",
                asset=model.key("trained_model"),
                blocking=True,
                description="Re-training with identical data, code, lock, config and declaration "
                "gives the same fingerprint.",
            )
        ],
    )
    def trained_model(
        context: dg.AssetExecutionContext, config: TrainingConfig, features: FeatureSet
    ) -> Iterator[dg.Output[TrainedModel] | dg.AssetCheckResult]:
        """The fitted scikit-learn pipeline, seeds and thread counts pinned, and its fingerprint."""
        history = previous_versions(context)
        pipeline, fit_seconds = fit(features, config, declared)
        failpoint("training.fitted")
        skops = dump_model(pipeline)  # stored as is: the artifact and the package carry it
        trusted = check_trusted_types(skops, model)
        golden = golden_inputs(
            features,
            config.golden_rows,
            {name: f.type for name, f in declared.contract.features.items()},
        )
        model_fingerprint = fingerprint(pipeline, golden, task.raw_outputs)
        code = code_state(Settings.from_env().project_root, model_files(model))
        resolved_config = config.model_dump()
        hyperparameters = {
            "estimator": declared.estimator.class_,
            **estimator_params(declared.estimator, config.params, config.seed),
        }
        lineage: dict[str, Any] = {
            "data_md5": features.data_md5,
            "split": {"seed": features.seed, "test_size": features.test_size},
            "code": code.to_dict(),
            "config": resolved_config,
            "config_hash": json_hash(
                {"training": resolved_config, "split": [features.seed, features.test_size]}
            ),
            "declaration": {"name": declared.name, "sha256": model.sha256},
            "estimator": {"class": declared.estimator.class_, "trusted_types": trusted},
            "fingerprint": model_fingerprint.to_dict(),
        }
        version_id = lineage_hash(lineage)
        yield dg.Output(
            TrainedModel(
                pipeline=pipeline,
                golden_inputs=golden,
                fingerprint=model_fingerprint,
                lineage=lineage,
                skops=skops,
            ),
            data_version=dg.DataVersion(model_fingerprint.combined[:32]),
            metadata={
                "model/fingerprint": dg.MetadataValue.text(model_fingerprint.combined),
                "model/state_digest": dg.MetadataValue.text(model_fingerprint.state),
                "model/prediction_digest": dg.MetadataValue.text(model_fingerprint.predictions),
                "model/version_id": dg.MetadataValue.text(version_id),
                "estimator": dg.MetadataValue.text(repr(pipeline)),
                "hyperparameters": dg.MetadataValue.json(hyperparameters),
                "seed": setting(config.seed),
                "threads": setting(config.threads),
                "fit_seconds": dg.MetadataValue.float(round(fit_seconds, 4)),
                "code/commit": dg.MetadataValue.text(code.commit),
                "code/dirty": dg.MetadataValue.bool(code.dirty),
                "env/lock_hash": dg.MetadataValue.text(code.lock_hash),
                "env/libraries": dg.MetadataValue.json(library_versions()),
                "env/machine": dg.MetadataValue.json(machine()),
                "config_hash": dg.MetadataValue.text(lineage["config_hash"]),
                "declaration/sha256": dg.MetadataValue.text(model.sha256),
                "dvc/md5": dg.MetadataValue.text(features.data_md5),
                "golden_inputs/rows": setting(len(golden)),
                "lineage": dg.MetadataValue.json(lineage),
                **upstream_metadata(features.source),
            },
        )
        yield reproducibility_verdict(lineage, history)

    return trained_model
