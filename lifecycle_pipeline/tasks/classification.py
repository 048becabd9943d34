"""What binary and multiclass classification share: class checks, stratification, balance
and probabilities."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from lifecycle_pipeline.tasks import Task

if TYPE_CHECKING:
    from lifecycle_pipeline.declaration import Contract


def declared_values(contract: Contract) -> list[Any]:
    return [c.value for c in contract.classes or ()]


def class_problems(target: pd.Series, contract: Contract) -> list[str]:
    declared = declared_values(contract)
    found = pd.unique(target).tolist()
    unexpected = [v for v in found if v not in declared]
    if unexpected:
        shown = ", ".join(repr(v) for v in sorted(unexpected, key=repr)[:10])
        more = f" and {len(unexpected) - 10} more" if len(unexpected) > 10 else ""
        return [
            f"label(s) {shown}{more} are not among the declared classes "
            f"{declared} (contract.classes)"
        ]
    if len(found) < 2:
        return [f"only one class present ({found[0]!r}); a classifier needs at least two"]
    return []


def class_shares(target: pd.Series) -> tuple[float, Any]:
    counts = target.value_counts()
    smallest = counts.idxmin()
    return float(counts.min() / len(target)), getattr(smallest, "item", lambda: smallest)()


def probabilities(estimator: Any, inputs: pd.DataFrame) -> np.ndarray:
    """Class probabilities with one thread, so reductions run in one order (bit-stable)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return np.asarray(estimator.predict_proba(inputs))


class Classification(Task):
    """The parts of a classification task that do not depend on the number of classes."""

    balance_label: ClassVar[str] = "smallest class"  # how the balance check names its class

    def check_estimator(self, cls: type, path: str) -> None:
        if not hasattr(cls, "predict_proba"):
            raise ValueError(
                f"estimator {path!r} has no predict_proba; a {self.name} task needs class "
                "probabilities"
            )
        from sklearn.base import is_regressor

        if is_regressor(cls()):
            raise ValueError(
                f"estimator {path!r} is a regressor; a {self.name} task needs a classifier"
            )

    def target_problems(self, target: pd.Series, contract: Contract) -> list[str]:
        return class_problems(target, contract)

    def target_dtype(self, contract: Contract) -> str | None:
        return None

    def stratify(self, target: pd.Series) -> pd.Series | None:
        return target

    def balance(self, target: pd.Series) -> tuple[float, str]:
        share, smallest = class_shares(target)
        return share, f"{self.balance_label} {smallest!r} share {share:.3f}"

    def raw_outputs(self, estimator: Any, inputs: pd.DataFrame) -> np.ndarray:
        return probabilities(estimator, inputs)
