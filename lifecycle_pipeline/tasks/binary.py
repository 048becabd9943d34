"""Binary classification: one positive class to detect, a decision threshold, calibration."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from lifecycle_pipeline.tasks.classification import Classification

if TYPE_CHECKING:
    from lifecycle_pipeline.declaration import Contract, Evaluation


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


class Binary(Classification):
    name = "binary"
    balance_label = "minority class"
    higher_is_better: ClassVar[frozenset[str]] = frozenset(
        {"accuracy", "precision", "recall", "f1", "roc_auc"}
    )
    lower_is_better: ClassVar[frozenset[str]] = frozenset({"brier", "ece"})

    def metric_names(self, contract: Contract) -> tuple[str, ...]:
        return ("accuracy", "precision", "recall", "f1", "roc_auc", "brier", "ece")

    def _positive_index(self, classes: list[Any], contract: Contract) -> int:
        return classes.index(contract.positive.value)

    def positive_probability(
        self, raw: np.ndarray, classes: list[Any], contract: Contract
    ) -> np.ndarray:
        return np.ascontiguousarray(raw[:, self._positive_index(classes, contract)], "float64")

    def predictions(
        self, raw: np.ndarray, classes: list[Any], contract: Contract, evaluation: Evaluation
    ) -> pd.DataFrame:
        proba = self.positive_probability(raw, classes, contract)
        negative = next(c for c in classes if c != contract.positive.value)
        labels = np.where(proba >= evaluation.decision_threshold, contract.positive.value, negative)
        return pd.DataFrame({"probability": proba, "label": labels})

    def output_schema(
        self, classes: list[Any], contract: Contract, evaluation: Evaluation
    ) -> dict[str, Any]:
        meanings = ", ".join(f"{c.value} = {c.name}" for c in contract.classes or ())
        return {
            "task": self.name,
            "classes": classes,
            "positive_class": contract.positive.value,
            "threshold": evaluation.decision_threshold,
            "columns": [
                {
                    "name": "probability",
                    "dtype": "float64",
                    "meaning": f"P({contract.positive.name})",
                },
                {"name": "label", "dtype": str(np.asarray(classes).dtype), "meaning": meanings},
            ],
        }

    def monitored_output(self, raw: np.ndarray, classes: list[Any], contract: Contract) -> Any:
        return self.positive_probability(raw, classes, contract), True

    def score(
        self,
        y_true: np.ndarray,
        raw: np.ndarray,
        classes: list[Any],
        contract: Contract,
        evaluation: Evaluation,
    ) -> dict[str, Any]:
        from sklearn import metrics as skm  # not at module top: see the package docstring

        proba = self.positive_probability(raw, classes, contract)
        truth = (y_true == contract.positive.value).astype("int64")
        labels = (proba >= evaluation.decision_threshold).astype("int64")
        both_classes = len(np.unique(truth)) == 2
        positives, predicted = int(truth.sum()), int(labels.sum())
        # Undefined is None, as `Task.score` promises: precision with nothing predicted
        # positive, recall and F1 (of the positive class) on rows with no positives. A slice
        # of negatives only must not read as a model that finds no positives.
        return {
            "rows": len(truth),
            "positives": positives,
            "accuracy": float(skm.accuracy_score(truth, labels)),
            "precision": float(skm.precision_score(truth, labels)) if predicted else None,
            "recall": float(skm.recall_score(truth, labels)) if positives else None,
            "f1": float(skm.f1_score(truth, labels)) if positives else None,
            "roc_auc": float(skm.roc_auc_score(truth, proba)) if both_classes else None,
            "brier": float(skm.brier_score_loss(truth, proba)),
            "ece": expected_calibration_error(truth, proba, evaluation.calibration_bins),
        }
