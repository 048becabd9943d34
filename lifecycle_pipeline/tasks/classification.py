"""What binary and multiclass classification share: class checks and probabilities."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

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
