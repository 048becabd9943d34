"""Multiclass classification: the most probable class, macro metrics and recall per class."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from lifecycle_pipeline.tasks.classification import Classification

if TYPE_CHECKING:
    from lifecycle_pipeline.declaration import Contract, Evaluation


class Multiclass(Classification):
    name = "multiclass"
    higher_is_better: ClassVar[frozenset[str]] = frozenset(
        {"accuracy", "macro_f1", "balanced_accuracy"}
    )
    lower_is_better: ClassVar[frozenset[str]] = frozenset({"log_loss"})

    def metric_names(self, contract: Contract) -> tuple[str, ...]:
        per_class = tuple(f"recall/{c.name}" for c in contract.classes or ())
        return ("accuracy", "macro_f1", "balanced_accuracy", "log_loss", *per_class)

    @staticmethod
    def column(value: Any) -> str:
        return f"probability_{value}"

    def predictions(
        self, raw: np.ndarray, classes: list[Any], contract: Contract, evaluation: Evaluation
    ) -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                self.column(c): np.ascontiguousarray(raw[:, i], "float64")
                for i, c in enumerate(classes)
            }
        )
        frame.insert(0, "label", np.asarray(classes)[np.argmax(raw, axis=1)])
        return frame

    def output_schema(
        self, classes: list[Any], contract: Contract, evaluation: Evaluation
    ) -> dict[str, Any]:
        return {
            "task": self.name,
            "classes": classes,
            "columns": [
                {
                    "name": "label",
                    "dtype": str(np.asarray(classes).dtype),
                    "meaning": "the most probable class: "
                    + ", ".join(f"{c} = {contract.class_name(c)}" for c in classes),
                },
                *(
                    {
                        "name": self.column(c),
                        "dtype": "float64",
                        "meaning": f"P({contract.class_name(c)})",
                    }
                    for c in classes
                ),
            ],
        }

    def monitored_output(self, raw: np.ndarray, classes: list[Any], contract: Contract) -> Any:
        return np.asarray([str(c) for c in np.asarray(classes)[np.argmax(raw, axis=1)]]), False

    def score(
        self,
        y_true: np.ndarray,
        raw: np.ndarray,
        classes: list[Any],
        contract: Contract,
        evaluation: Evaluation,
    ) -> dict[str, Any]:
        from sklearn import metrics as skm  # not at module top: see the package docstring

        predicted = np.asarray(classes)[np.argmax(raw, axis=1)]
        present = set(np.unique(y_true).tolist())
        recalls = skm.recall_score(y_true, predicted, labels=classes, average=None, zero_division=0)
        result: dict[str, Any] = {
            "rows": len(y_true),
            "accuracy": float(skm.accuracy_score(y_true, predicted)),
            "macro_f1": float(skm.f1_score(y_true, predicted, average="macro", zero_division=0)),
            "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, predicted))
            if len(present) > 1
            else None,
            "log_loss": float(skm.log_loss(y_true, raw, labels=classes)),
        }
        for value, recall in zip(classes, recalls, strict=True):
            # Recall of a class absent from these rows is undefined, not 0.
            result[f"recall/{contract.class_name(value)}"] = (
                float(recall) if value in present else None
            )
        return result
