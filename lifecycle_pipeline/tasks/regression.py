"""Regression: a predicted value, error metrics and a summary of the residuals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from lifecycle_pipeline.tasks import Task

if TYPE_CHECKING:
    from lifecycle_pipeline.declaration import Contract, Evaluation


class Regression(Task):
    name = "regression"
    higher_is_better: ClassVar[frozenset[str]] = frozenset({"r2"})
    lower_is_better: ClassVar[frozenset[str]] = frozenset({"rmse", "mae"})

    def metric_names(self, contract: Contract) -> tuple[str, ...]:
        return (
            "rmse",
            "mae",
            "r2",
            "residual_mean",
            "residual_std",
            "residual_p05",
            "residual_p95",
        )

    def check_estimator(self, cls: type, path: str) -> None:
        from sklearn.base import is_classifier

        if is_classifier(cls()):
            raise ValueError(
                f"estimator {path!r} is a classifier; a regression task needs a regressor"
            )

    def target_problems(self, target: pd.Series, contract: Contract) -> list[str]:
        if not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
            bad = target[pd.to_numeric(target, errors="coerce").isna()]
            example = f" (first at row {bad.index[0]}: {bad.iloc[0]!r})" if len(bad) else ""
            return [f"a regression target must be numeric{example}"]
        values = target.to_numpy(dtype="float64", na_value=np.nan)
        if not np.isfinite(values).all():
            return [f"{int((~np.isfinite(values)).sum())} non-finite target value(s)"]
        if float(np.ptp(values)) == 0.0:
            return [f"the target is constant ({values[0]!r}); there is nothing to learn"]
        return []

    def target_dtype(self, contract: Contract) -> str | None:
        return "float64"

    def balance(self, target: pd.Series) -> tuple[float, str]:
        """Share of rows off the most common target value: near 1 for a measured quantity,
        lower for counts, and small only when almost every row has the same target."""
        off_mode = 1.0 - float(target.value_counts(normalize=True).iloc[0])
        return off_mode, f"share of rows off the most common target value {off_mode:.3f}"

    def raw_outputs(self, estimator: Any, inputs: pd.DataFrame) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            return np.asarray(estimator.predict(inputs), dtype="float64")

    def predictions(
        self, raw: np.ndarray, classes: list[Any], contract: Contract, evaluation: Evaluation
    ) -> pd.DataFrame:
        return pd.DataFrame({"prediction": np.ascontiguousarray(raw, "float64")})

    def output_schema(
        self, classes: list[Any], contract: Contract, evaluation: Evaluation
    ) -> dict[str, Any]:
        unit = f" ({contract.target_unit})" if contract.target_unit else ""
        return {
            "task": self.name,
            "columns": [
                {
                    "name": "prediction",
                    "dtype": "float64",
                    "meaning": f"predicted {contract.target}{unit}",
                },
            ],
        }

    def monitored_output(self, raw: np.ndarray, classes: list[Any], contract: Contract) -> Any:
        return np.ascontiguousarray(raw, "float64"), True

    def score(
        self,
        y_true: np.ndarray,
        raw: np.ndarray,
        classes: list[Any],
        contract: Contract,
        evaluation: Evaluation,
    ) -> dict[str, Any]:
        from sklearn import metrics as skm  # not at module top: see the package docstring

        truth = y_true.astype("float64")
        residual = truth - raw
        return {
            "rows": len(truth),
            "rmse": float(np.sqrt(skm.mean_squared_error(truth, raw))),
            "mae": float(skm.mean_absolute_error(truth, raw)),
            "r2": float(skm.r2_score(truth, raw)) if len(truth) > 1 and np.ptp(truth) > 0 else None,
            "residual_mean": float(residual.mean()),
            "residual_std": float(residual.std()),
            "residual_p05": float(np.quantile(residual, 0.05)),
            "residual_p95": float(np.quantile(residual, 0.95)),
        }
