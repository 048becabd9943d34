"""Lifecycle stage 4: held-out metrics, per-slice metrics and the blocking metric gates, all as
the model's declaration and its task define them."""

import sys
from collections.abc import Iterator
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from lifecycle_pipeline import gates as gates_module
from lifecycle_pipeline.assets.common import (
    IO_MANAGER_KEY,
    OWNERS,
    code_version,
    setting,
    upstream_metadata,
)
from lifecycle_pipeline.assets.features import ROW_ID
from lifecycle_pipeline.declaration import LoadedDeclaration, ModelDeclaration, Slice
from lifecycle_pipeline.gates import gate_check_name, gates_for, judge
from lifecycle_pipeline.lineage.records import (
    EvaluationReport,
    FeatureSet,
    TrainedModel,
)
from lifecycle_pipeline.tasks import Task, task_for


class EvaluationConfig(dg.Config):
    """Run-time overrides of declared gate thresholds (recorded with the evaluation)."""

    gates: dict[str, float] = Field(
        default_factory=dict,
        description="Metric -> threshold for this run, replacing the declared one; only metrics "
        "the declaration gates on.",
    )


def slice_masks(test: pd.DataFrame, item: Slice) -> dict[str, np.ndarray]:
    """Rows of each declared band or category, named "<factor> = <band>"."""
    values = test[item.column]
    masks: dict[str, np.ndarray] = {}
    if item.bins is not None:
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
        for label, low, high in item.bands():
            masks[f"{item.title} = {label}"] = (numbers >= low) & (numbers < high)
    else:
        categories = item.categories or tuple(sorted(values.dropna().astype(str).unique()))
        for category in categories:
            masks[f"{item.title} = {category}"] = (values.astype(str) == category).to_numpy()
    return masks


def evaluate(
    model: TrainedModel,
    feature_set: FeatureSet,
    declared: ModelDeclaration,
    gates: dict[str, Any],
    task: Task | None = None,
) -> EvaluationReport:
    """Held-out metrics overall and per slice, and a verdict for each gate."""
    task = task or task_for(declared.contract.task)
    test = feature_set.test
    raw = task.raw_outputs(model.pipeline, test[list(feature_set.feature_columns)])
    classes = list(getattr(model.pipeline, "classes_", []))
    y_true = test[feature_set.target].to_numpy()
    contract, evaluation = declared.contract, declared.evaluation

    def score(mask: np.ndarray | None = None) -> dict[str, Any]:
        if mask is None:
            return task.score(y_true, raw, classes, contract, evaluation)
        return task.score(y_true[mask], raw[mask], classes, contract, evaluation)

    overall = score()
    per_slice = {
        name: score(mask)
        for item in evaluation.slices
        for name, mask in slice_masks(test, item).items()
        if mask.any()
    }
    verdicts = judge(gates, overall)
    predictions = task.predictions(raw, classes, contract, evaluation)
    predictions.insert(0, ROW_ID, test[ROW_ID].to_numpy())
    return EvaluationReport(
        metrics={m: overall[m] for m in task.metric_names(contract)},
        slices=per_slice,
        gates=verdicts,
        predictions=predictions,
        model_fingerprint=model.fingerprint.combined,
        decision_threshold=evaluation.decision_threshold if contract.task == "binary" else None,
    )


def slice_table(slices: dict[str, dict[str, Any]], factor: str = "slice") -> dg.TableMetadataValue:
    """Every slice with every column; a metric undefined on a slice (ROC AUC with one class
    present) is an empty cell, never a number and never a missing field (Dagster refuses
    records whose fields differ)."""
    columns: list[str] = []
    for values in slices.values():
        columns += [c for c in values if c not in columns]
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({"slice": name, **{c: values.get(c) for c in columns}})
            for name, values in slices.items()
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("slice", "string", description=factor),
                *(
                    dg.TableColumn(
                        c,
                        "int" if c in ("rows", "positives") else "float",
                        description=None
                        if c in ("rows", "positives")
                        else "empty where undefined on the slice",
                    )
                    for c in columns
                ),
            ]
        ),
    )


def build_evaluation(model: LoadedDeclaration) -> dg.AssetsDefinition:
    """The evaluation asset of one declared model, with one blocking check per declared gate."""
    declared = model.model
    task = task_for(declared.contract.task)
    factors = ", ".join(s.title for s in declared.evaluation.slices) or "none declared"

    @dg.asset(
        key=model.key("evaluation"),
        ins=model.inputs("trained_model", "features"),
        partitions_def=model.data_versions,
        group_name=model.name,
        kinds={"sklearn"},
        owners=OWNERS,
        tags={"lifecycle/stage": "4-evaluation"},
        io_manager_key=IO_MANAGER_KEY,
        code_version=code_version(sys.modules[__name__], gates_module, declaration=model),
        check_specs=[
            dg.AssetCheckSpec(
                gate_check_name(metric),
                asset=model.key("evaluation"),
                blocking=True,
                description=f"Metric gate: held-out {metric} {gate.comparison} "
                f"{gate.threshold:g} (declared in {model.path.name}).",
            )
            for metric, gate in declared.evaluation.gates.items()
        ],
    )
    def evaluation(
        context: dg.AssetExecutionContext,
        config: EvaluationConfig,
        trained_model: TrainedModel,
        features: FeatureSet,
    ) -> Iterator[dg.Output[EvaluationReport] | dg.AssetCheckResult]:
        """Held-out metrics overall and per declared slice, gated by blocking threshold checks."""
        gates = gates_for(declared.evaluation, config.gates, str(model.path))
        report = evaluate(trained_model, features, declared, gates, task)
        yield dg.Output(
            report,
            metadata={
                **{
                    f"metric/{m}": dg.MetadataValue.float(v)
                    for m, v in report.metrics.items()
                    if v is not None
                },
                "slices": slice_table(report.slices, factors),
                "slice_factor": dg.MetadataValue.text(factors),
                "task": dg.MetadataValue.text(declared.contract.task),
                **(
                    {"decision_threshold": setting(report.decision_threshold)}
                    if report.decision_threshold is not None
                    else {}
                ),
                "gates": dg.MetadataValue.json([g.to_dict() for g in report.gates]),
                "gates/passed": dg.MetadataValue.int(sum(g.passed for g in report.gates)),
                "gates/total": setting(len(report.gates)),
                "test/rows": dg.MetadataValue.int(len(report.predictions)),
                "model/fingerprint": dg.MetadataValue.text(report.model_fingerprint),
                **upstream_metadata(trained_model.source, features.source),
            },
        )
        for gate in report.gates:
            if not gate.passed:
                context.log.error(
                    f"{gate.describe()} (partition {context.partition_key}); downstream blocked."
                )
            yield dg.AssetCheckResult(
                check_name=gate.name,
                passed=gate.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                description=gate.describe(),
                metadata={
                    "value": gate.value,
                    "threshold": gate.threshold,
                    "comparison": gate.comparison,
                },
            )

    return evaluation
