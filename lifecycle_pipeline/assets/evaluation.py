"""Lifecycle stage 4: held-out metrics, per-slice metrics and the blocking metric gates."""

import sys
from collections.abc import Iterator
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field
from sklearn import metrics as skm

from lifecycle_pipeline import schema
from lifecycle_pipeline.assets.common import IO_MANAGER_KEY, OWNERS, code_version, upstream_metadata
from lifecycle_pipeline.assets.features import ROW_ID
from lifecycle_pipeline.lineage.fingerprint import predict_proba
from lifecycle_pipeline.lineage.records import (
    EvaluationReport,
    FeatureSet,
    GateVerdict,
    TrainedModel,
)
from lifecycle_pipeline.partitions import DATA_VERSIONS

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "brier", "ece")
# (check name, metric, comparison); thresholds come from EvaluationConfig.
GATES: tuple[tuple[str, str, str], ...] = (
    ("gate_roc_auc", "roc_auc", ">="),
    ("gate_f1", "f1", ">="),
    ("gate_recall", "recall", ">="),
    ("gate_brier", "brier", "<="),
)


class EvaluationConfig(dg.Config):
    """Decision threshold and the metric gates a model must pass before it may ship."""

    decision_threshold: float = Field(
        default=0.5, gt=0.0, lt=1.0, description="P(malignant) cut-off."
    )
    min_roc_auc: float = Field(default=0.95, ge=0.0, le=1.0, description="Gate: ROC AUC at least.")
    min_f1: float = Field(default=0.90, ge=0.0, le=1.0, description="Gate: F1 at least.")
    min_recall: float = Field(
        default=0.90, ge=0.0, le=1.0, description="Gate: recall (malignant cases found) at least."
    )
    max_brier: float = Field(default=0.08, ge=0.0, le=1.0, description="Gate: Brier score at most.")
    calibration_bins: int = Field(default=10, ge=2, le=100, description="Bins for the ECE.")

    def threshold(self, metric: str) -> float:
        return {
            "roc_auc": self.min_roc_auc,
            "f1": self.min_f1,
            "recall": self.min_recall,
            "brier": self.max_brier,
        }[metric]


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, bins: int) -> float:
    """Weighted mean gap between predicted probability and observed frequency per bin."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(proba, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            error += mask.mean() * abs(float(proba[mask].mean()) - float(y_true[mask].mean()))
    return float(error)


def score(y_true: np.ndarray, proba: np.ndarray, threshold: float, bins: int) -> dict[str, Any]:
    """Metrics for one set of rows; ROC AUC is None where only one class is present."""
    labels = (proba >= threshold).astype("int64")
    both_classes = len(np.unique(y_true)) == 2
    return {
        "rows": len(y_true),
        "positives": int(y_true.sum()),
        "accuracy": float(skm.accuracy_score(y_true, labels)),
        "precision": float(skm.precision_score(y_true, labels, zero_division=0)),
        "recall": float(skm.recall_score(y_true, labels, zero_division=0)),
        "f1": float(skm.f1_score(y_true, labels, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y_true, proba)) if both_classes else None,
        "brier": float(skm.brier_score_loss(y_true, proba)),
        "ece": expected_calibration_error(y_true, proba, bins),
    }


def evaluate(
    model: TrainedModel, feature_set: FeatureSet, config: EvaluationConfig
) -> EvaluationReport:
    test = feature_set.test
    proba = predict_proba(model.pipeline, test[list(feature_set.feature_columns)])[:, 1]
    y_true = test[feature_set.target].to_numpy()
    overall = score(y_true, proba, config.decision_threshold, config.calibration_bins)
    slices = schema.tumour_size_slice(test["mean_radius"])
    per_slice = {
        name: score(y_true[mask], proba[mask], config.decision_threshold, config.calibration_bins)
        for name, *_ in schema.SLICE_BINS
        if (mask := (slices == name).to_numpy()).any()
    }
    gates = tuple(
        GateVerdict(name, metric, float(overall[metric]), config.threshold(metric), comparison)
        for name, metric, comparison in GATES
    )
    predictions = pd.DataFrame(
        {
            ROW_ID: test[ROW_ID].to_numpy(),
            "probability": proba.astype("float64"),
            "label": (proba >= config.decision_threshold).astype("int64"),
        }
    )
    return EvaluationReport(
        metrics={m: float(overall[m]) for m in METRICS},
        slices=per_slice,
        gates=gates,
        predictions=predictions,
        model_fingerprint=model.fingerprint.combined,
        decision_threshold=config.decision_threshold,
    )


def slice_table(slices: dict[str, dict[str, Any]]) -> dg.TableMetadataValue:
    """Every slice with every column; a metric undefined on a slice (ROC AUC with one class
    present) is an empty cell, never a number and never a missing field (Dagster refuses
    records whose fields differ)."""
    columns = ("rows", "positives", *METRICS)
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({"slice": name, **{c: values[c] for c in columns}})
            for name, values in slices.items()
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("slice", "string", description=f"{schema.SLICE_FACTOR} band"),
                *(
                    dg.TableColumn(
                        c,
                        "int" if c in ("rows", "positives") else "float",
                        description="empty where undefined (one class in the slice)"
                        if c == "roc_auc"
                        else None,
                    )
                    for c in columns
                ),
            ]
        ),
    )


@dg.asset(
    partitions_def=DATA_VERSIONS,
    group_name="evaluation",
    kinds={"sklearn"},
    owners=OWNERS,
    tags={"lifecycle/stage": "4-evaluation"},
    io_manager_key=IO_MANAGER_KEY,
    code_version=code_version(sys.modules[__name__], schema),
    check_specs=[
        dg.AssetCheckSpec(
            name,
            asset="evaluation",
            blocking=True,
            description=f"Metric gate: held-out {metric} {comparison} the configured threshold.",
        )
        for name, metric, comparison in GATES
    ],
)
def evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    trained_model: TrainedModel,
    features: FeatureSet,
) -> Iterator[dg.Output[EvaluationReport] | dg.AssetCheckResult]:
    """Held-out metrics overall and per tumour-size slice, gated by blocking threshold checks."""
    report = evaluate(trained_model, features, config)
    yield dg.Output(
        report,
        metadata={
            **{f"metric/{m}": dg.MetadataValue.float(v) for m, v in report.metrics.items()},
            "slices": slice_table(report.slices),
            "slice_factor": dg.MetadataValue.text(schema.SLICE_FACTOR),
            "decision_threshold": dg.MetadataValue.float(config.decision_threshold),
            "gates": dg.MetadataValue.json([g.to_dict() for g in report.gates]),
            "gates/passed": dg.MetadataValue.int(sum(g.passed for g in report.gates)),
            "gates/total": dg.MetadataValue.int(len(report.gates)),
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
