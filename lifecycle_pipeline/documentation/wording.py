"""How the documents word a model's task, metrics, classes and contract.

The sentences are the framework's; every domain word in them (class names, what a row is, the
target and its unit, feature units, slice titles) is read from the model's declaration. The
framework therefore states what a metric measures for *this* model ("share of <positive
class> cases found") without holding a fact about any one dataset.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lifecycle_pipeline.declaration import Contract, Feature, ModelDeclaration, Slice

TASK_NAMES = {
    "binary": "binary classification",
    "multiclass": "multiclass classification",
    "regression": "regression",
}


def _unit(contract: Contract) -> str:
    return f" ({contract.target_unit})" if contract.target_unit else ""


def _in_unit(contract: Contract) -> str:
    return f", in {contract.target_unit}" if contract.target_unit else ""


def classes(contract: Contract) -> str:
    """'0 = a, 1 = b' in declared order."""
    return ", ".join(f"{c.value} = {c.name}" for c in contract.classes or ())


def task(contract: Contract) -> str:
    """The task in one line: what is predicted, and the classes or the unit."""
    kind = TASK_NAMES.get(contract.task, contract.task)
    if contract.task == "binary":
        return (
            f"{kind} of `{contract.target}` ({classes(contract)}); the positive class, the one "
            f"to detect, is {contract.positive.name}"
        )
    if contract.task == "multiclass":
        count = len(contract.classes or ())
        return f"{kind} of `{contract.target}` into {count} classes ({classes(contract)})"
    return f"{kind}: predicts `{contract.target}`{_unit(contract)}, a number"


def output(contract: Contract, decision_threshold: float | None = None) -> str:
    """What one prediction consists of, as a consumer receives it."""
    if contract.task == "binary":
        positive = contract.positive.name
        cut = (
            f" threshold {decision_threshold:g}" if decision_threshold is not None else " threshold"
        )
        return (
            f"P({positive}) per row, and a label: {positive} where P({positive}) is at or above "
            f"the decision{cut}"
        )
    if contract.task == "multiclass":
        names = ", ".join(c.name for c in contract.classes or ())
        return f"P(class) for each of {names}, and the most probable class as the label"
    return f"the predicted {contract.target}{_unit(contract)} per row"


def target(contract: Contract) -> str:
    """The target column and what its values mean."""
    if contract.classes:
        return f"`{contract.target}`: {classes(contract)}"
    return f"`{contract.target}`: a number{_in_unit(contract)}"


def metric_notes(contract: Contract, calibration_bins: int) -> dict[str, str]:
    """Metric -> what it measures for this model, for every metric the task reports."""
    from lifecycle_pipeline.tasks import task_for

    if contract.task == "binary":
        notes = _binary(contract, calibration_bins)
    elif contract.task == "multiclass":
        notes = _multiclass(contract)
    else:
        notes = _regression(contract)
    return {
        name: notes.get(name, "(no description for this metric)")
        for name in task_for(contract.task).metric_names(contract)
    }


def _binary(contract: Contract, bins: int) -> dict[str, str]:
    positive = contract.positive.name
    negative = next(c.name for c in contract.classes or () if not c.positive)
    return {
        "accuracy": "share of correct labels at the decision threshold",
        "precision": f"share of predicted {positive} that are {positive}",
        "recall": f"share of {positive} cases found (1 - recall is the share missed)",
        "f1": "harmonic mean of precision and recall",
        "roc_auc": f"how well P({positive}) ranks {positive} above {negative} cases, across "
        "all thresholds (0.5 = chance, 1 = perfect)",
        "brier": f"mean squared error of P({positive}) (calibration and sharpness; 0 = perfect)",
        "ece": f"expected calibration error of P({positive}) over {bins} equal-width "
        "probability bins",
    }


def _multiclass(contract: Contract) -> dict[str, str]:
    notes = {
        "accuracy": "share of rows whose most probable class is the true class",
        "macro_f1": "F1 (harmonic mean of precision and recall) of each class, averaged with "
        "equal weight per class",
        "balanced_accuracy": "recall averaged over the classes with equal weight (unaffected by "
        "how common each class is)",
        "log_loss": "mean negative log of the probability given to the true class (confidence "
        "and calibration; 0 = perfect)",
    }
    for label in contract.classes or ():
        notes[f"recall/{label.name}"] = f"share of {label.name} cases found"
    return notes


def _regression(contract: Contract) -> dict[str, str]:
    name, unit = contract.target, _in_unit(contract)
    residual = f"residual = actual - predicted {name}"
    return {
        "rmse": f"root mean squared error of the predicted {name}{unit} (large errors weigh more)",
        "mae": f"mean absolute error of the predicted {name}{unit}",
        "r2": f"share of the variance of {name} explained (1 = perfect, 0 = no better than "
        "predicting the mean)",
        "residual_mean": f"mean {residual}{unit} (bias: positive means under-prediction)",
        "residual_std": f"standard deviation of the {residual}{unit}",
        "residual_p05": f"5th percentile of the {residual}{unit} (largest over-predictions)",
        "residual_p95": f"95th percentile of the {residual}{unit} (largest under-predictions)",
    }


def gates(declared: ModelDeclaration) -> list[str]:
    """The declared gates as 'metric >= threshold'."""
    return [
        f"{metric} {gate.comparison} {gate.threshold:g}"
        for metric, gate in declared.evaluation.gates.items()
    ]


def slice_definition(item: Slice) -> str:
    """'<title> (column `c`): band [edges], ...' or the declared categories."""
    head = f"{item.title} (column `{item.column}`)"
    if item.bins is not None:
        bands = ", ".join(f"{label} [{_interval(low, high)}]" for label, low, high in item.bands())
        return f"{head}: {bands}"
    if item.categories:
        return f"{head}: {', '.join(item.categories)}"
    return f"{head}: every category present in the held-out rows"


def _interval(low: float, high: float) -> str:
    if low == -math.inf:
        return f"< {high:g}"
    if high == math.inf:
        return f">= {low:g}"
    return f"{low:g} to < {high:g}"


def domain(feature: Feature) -> str:
    """The values a feature may take, as declared (empty when nothing is declared)."""
    if feature.categories:
        return "one of " + ", ".join(feature.categories)
    if feature.type == "boolean":
        return "true or false"
    if feature.range is None:
        return ""
    low, high = feature.range
    if low is not None and high is not None:
        return f"{low:g} to {high:g}"
    if low is not None:
        return f">= {low:g}"
    if high is not None:
        return f"<= {high:g}"
    return ""


def contract_rows(contract: Contract) -> list[tuple[Any, ...]]:
    """One row per declared feature: name, type, unit, domain, nullable, description."""
    return [
        (
            name,
            feature.type,
            feature.unit or "",
            domain(feature),
            feature.nullable,
            feature.description or "",
        )
        for name, feature in contract.features.items()
    ]


CONTRACT_COLUMNS = ("feature", "type", "unit", "allowed values", "nullable", "description")


def contract_summary(contract: Contract) -> str:
    """'N features (a numeric, b categorical); target `t`; dropped on read: x, y'."""
    counts: dict[str, int] = {}
    for feature in contract.features.values():
        counts[feature.type] = counts.get(feature.type, 0) + 1
    kinds = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    dropped = ", ".join(contract.drop) or "none"
    return (
        f"{len(contract.features)} features ({kinds}); target `{contract.target}`; "
        f"dropped on read: {dropped}"
    )


def label_balance(contract: Contract, counts: Mapping[str, Any] | None) -> str | None:
    """'name n (share%)' per declared class, from the snapshot's recorded class counts."""
    if not counts:
        return None
    total = sum(int(n) for n in counts.values())
    parts = []
    for value, n in counts.items():
        share = int(n) / total if total else 0.0
        parts.append(f"{contract.class_name(value)}: {int(n)} of {total} ({share:.1%})")
    return "; ".join(parts)
