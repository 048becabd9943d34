"""A task (binary, multiclass, regression) is a strategy: it supplies the metrics and gates, the
model's raw outputs and the prediction columns, and how its target is checked and split.

Stages ask the task, never ``if task == ...``; adding a task means adding one module here and
one entry in ``TASKS``. The package runtime (``predict.py``) cannot import this package, so it
follows ``output_schema.json``, which :meth:`Task.output_schema` writes.

Task modules import scikit-learn inside the methods that use it (``score``,
``check_estimator``), never at module top: validating a declaration asks its task for metric
names and gates, and a command that only identifies a model (``lifecycle reproduce``) must not
pay scikit-learn's import (~1 s) for that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from lifecycle_pipeline.declaration import Contract, Evaluation, Gate


class Task:
    """What every task provides; subclasses fill in the task-specific parts."""

    name: ClassVar[str]
    higher_is_better: ClassVar[frozenset[str]] = frozenset()
    lower_is_better: ClassVar[frozenset[str]] = frozenset()

    # -- declaration checks -------------------------------------------------------------
    def metric_names(self, contract: Contract) -> tuple[str, ...]:
        raise NotImplementedError

    def gateable(self, contract: Contract) -> dict[str, str]:
        """Metric -> the gate bound that makes sense for it ('min' or 'max')."""
        names = self.metric_names(contract)
        return {
            m: "min" if self._higher(m) else "max"
            for m in names
            if self._higher(m) or self._lower(m)
        }

    def _higher(self, metric: str) -> bool:
        return metric in self.higher_is_better or metric.startswith("recall/")

    def _lower(self, metric: str) -> bool:
        return metric in self.lower_is_better

    def check_gate(self, metric: str, gate: Gate, contract: Contract) -> None:
        gateable = self.gateable(contract)
        if metric not in gateable:
            raise ValueError(
                f"{metric!r} is not a metric of a {self.name} task; gates "
                f"may use {', '.join(gateable)}"
            )
        bound = "min" if gate.min is not None else "max"
        if bound != gateable[metric]:
            better = "higher" if gateable[metric] == "min" else "lower"
            raise ValueError(
                f"{better} is better for {metric}, so its gate is "
                f"`{gateable[metric]}:`, not `{bound}:`"
            )

    def check_estimator(self, cls: type, path: str) -> None:
        raise NotImplementedError

    # -- data --------------------------------------------------------------------------
    def target_problems(self, target: pd.Series, contract: Contract) -> list[str]:
        """What is wrong with a training target (empty when nothing is)."""
        raise NotImplementedError

    def target_dtype(self, contract: Contract) -> str | None:
        raise NotImplementedError

    def stratify(self, target: pd.Series) -> pd.Series | None:
        return None

    def balance(self, target: pd.Series) -> tuple[float, str]:
        """The snapshot's balance figure and its description (checked against a minimum)."""
        raise NotImplementedError

    # -- model outputs -------------------------------------------------------------------
    def raw_outputs(self, estimator: Any, inputs: pd.DataFrame) -> np.ndarray:
        """What identifies a model's behaviour: probabilities, or predicted values."""
        raise NotImplementedError

    def predictions(
        self, raw: np.ndarray, classes: list[Any], contract: Contract, evaluation: Evaluation
    ) -> pd.DataFrame:
        """The columns a consumer receives (the package's output schema), from raw outputs."""
        raise NotImplementedError

    def output_schema(
        self, classes: list[Any], contract: Contract, evaluation: Evaluation
    ) -> dict[str, Any]:
        raise NotImplementedError

    def monitored_output(self, raw: np.ndarray, classes: list[Any], contract: Contract) -> Any:
        """The one column of model output whose drift is watched, and whether it is numeric."""
        raise NotImplementedError

    def score(
        self,
        y_true: np.ndarray,
        raw: np.ndarray,
        classes: list[Any],
        contract: Contract,
        evaluation: Evaluation,
    ) -> dict[str, Any]:
        """Metrics for one set of rows; a metric undefined on them is None, never 0."""
        raise NotImplementedError


def task_for(name: str) -> Task:
    from lifecycle_pipeline.tasks.binary import Binary
    from lifecycle_pipeline.tasks.multiclass import Multiclass
    from lifecycle_pipeline.tasks.regression import Regression

    tasks: dict[str, Task] = {
        "binary": Binary(),
        "multiclass": Multiclass(),
        "regression": Regression(),
    }
    try:
        return tasks[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; use one of {', '.join(tasks)}") from None
