"""Drift of a production batch against a model's training reference, computed with Evidently 0.7.

What counts as drift is the model declaration's ``drift:`` section, not Evidently's defaults:

- Evidently chooses its statistical test by sample size (Kolmogorov-Smirnov up to 1000 rows,
  Wasserstein above), so the same shift would be judged differently at different volumes.
  The declaration pins one test and threshold per kind of column instead: ``drift.numeric``
  for numeric and integer features, ``drift.categorical`` for categorical and boolean ones,
  and ``drift.prediction`` (default: the test of the output's kind) for the model's output.
- Evidently also guesses each column's type from its values: an integer column with at most
  10 distinct values becomes categorical (so Wasserstein refuses it), and a text column whose
  values are mostly distinct becomes free text (so every categorical test refuses it). The
  contract states the types, so they are handed to Evidently in a ``DataDefinition`` and
  never guessed.
- Both sides are sampled to a fixed cap with a recorded seed, which bounds time and memory
  and keeps verdicts comparable across batches.

Values the model never saw in training (a numeric value outside the training split's range,
a category absent from it) are counted on the whole batch and recorded beside the verdict:
they are evidence of drift that a distribution test on a large batch can dilute.

Not byte-reproducible: Evidently's HTML report and snapshot embed their generation time and
random widget ids. Scores, verdicts and ``summary.json`` are deterministic for the same inputs.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from lifecycle_pipeline.errors import LifecycleError

if TYPE_CHECKING:
    from lifecycle_pipeline.declaration import Contract, Drift, ModelDeclaration

Kind = Literal["numeric", "categorical"]

PREDICTION_COLUMN = "prediction"
"""Name of the model-output column in the report; prefixed with '_' while a feature has it."""

# Evidently 0.7's own rule for each test (evidently/legacy/calculations/stattests/*.py):
# p-values drift below the threshold, distances above it, each with its own strictness.
# tests/test_monitoring.py checks every entry against Evidently's implementation.
DRIFTS_WHEN: dict[str, Callable[[float, float], bool]] = {
    "anderson": operator.lt,
    "chisquare": operator.lt,
    "cramer_von_mises": operator.le,
    "ed": operator.gt,
    "empirical_mmd": operator.lt,
    "es": operator.lt,
    "fisher_exact": operator.lt,
    "g_test": operator.lt,
    "hellinger": operator.ge,
    "jensenshannon": operator.ge,
    "kl_div": operator.ge,
    "ks": operator.le,
    "mannw": operator.lt,
    "psi": operator.ge,
    "t_test": operator.lt,
    "TVD": operator.lt,
    "wasserstein": operator.ge,
    "z": operator.lt,
}

_NUMERIC: frozenset[Kind] = frozenset({"numeric"})
_CATEGORICAL: frozenset[Kind] = frozenset({"categorical"})
_BOTH: frozenset[Kind] = frozenset({"numeric", "categorical"})

# Which kinds of column each test accepts (Evidently's ``allowed_feature_types``; checked
# against its registry by tests/test_monitoring.py). A test applied to the wrong kind is a
# configuration error, reported before any data is read.
APPLIES_TO: dict[str, frozenset[Kind]] = {
    "anderson": _NUMERIC,
    "chisquare": _CATEGORICAL,
    "cramer_von_mises": _NUMERIC,
    "ed": _NUMERIC,
    "empirical_mmd": _NUMERIC,
    "es": _NUMERIC,
    "fisher_exact": _CATEGORICAL,
    "g_test": _CATEGORICAL,
    "hellinger": _BOTH,
    "jensenshannon": _BOTH,
    "kl_div": _BOTH,
    "ks": _NUMERIC,
    "mannw": _NUMERIC,
    "psi": _BOTH,
    "t_test": _NUMERIC,
    "TVD": _CATEGORICAL,
    "wasserstein": _NUMERIC,
    "z": _CATEGORICAL,
}

_SYMBOL: dict[Callable[[float, float], bool], str] = {
    operator.lt: "<",
    operator.le: "<=",
    operator.gt: ">",
    operator.ge: ">=",
}

# The contract's feature types, by the kind of drift test that judges them.
KIND_OF_TYPE: dict[str, Kind] = {
    "numeric": "numeric",
    "integer": "numeric",
    "categorical": "categorical",
    "boolean": "categorical",
}

_SHOWN_CATEGORIES = 20


class DriftError(LifecycleError, ValueError):
    """Drift cannot be judged as declared: a test that does not apply, or an undefined score."""


def drifts_when(method: str) -> str:
    """``'score >= threshold'``-style wording of ``method``'s rule, for people."""
    return f"score {_SYMBOL[DRIFTS_WHEN[method]]} threshold"


def methods_for(kind: Kind) -> list[str]:
    return sorted(m for m, kinds in APPLIES_TO.items() if kind in kinds)


def check_applies(method: str, kind: Kind, where: str) -> None:
    """Refuse a test that Evidently cannot run on ``kind`` columns, naming the setting.

    Usable at declaration load time (``where`` = the YAML field, e.g. ``drift.categorical``),
    so a mismatch is reported before any data is read; the monitor checks again at run time.
    """
    if method not in DRIFTS_WHEN:
        raise DriftError(
            f"{where}: drift method {method!r} is not one of Evidently's tests: "
            f"{', '.join(sorted(DRIFTS_WHEN))}."
        )
    if kind not in APPLIES_TO[method]:
        raise DriftError(
            f"{where}: {method!r} does not apply to {kind} columns; use one of "
            f"{', '.join(methods_for(kind))}."
        )


@dataclass(frozen=True)
class ColumnTest:
    """Which test judges one column, and which declaration setting chose it."""

    column: str
    kind: Kind
    method: str
    threshold: float
    setting: str  # e.g. "drift.numeric"


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str
    method: str
    score: float
    threshold: float
    drifted: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "kind": self.kind,
            "method": self.method,
            "score": self.score,
            "threshold": self.threshold,
            "drifts_when": drifts_when(self.method),
            "drifted": self.drifted,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnDrift:
        return cls(
            **{k: data[k] for k in ("column", "kind", "method", "score", "threshold", "drifted")}
        )

    @property
    def test(self) -> str:
        """The declared test as a rule, e.g. ``'psi >= 0.2'`` or ``'ks <= 0.001'``."""
        return f"{self.method} {_SYMBOL[DRIFTS_WHEN[self.method]]} {self.threshold:g}"

    def describe(self) -> str:
        rule = _SYMBOL[DRIFTS_WHEN[self.method]]
        return f"{self.method} {self.score:.3g}, drifts at {rule} {self.threshold:g}"


def _names(columns: dict[str, dict[str, Any]], shown: int = 5) -> str:
    """The columns with the most affected rows first; the rest counted, not listed."""
    ranked = sorted(columns, key=lambda c: -columns[c]["rows"])
    more = f" and {len(ranked) - shown} more column(s)" if len(ranked) > shown else ""
    return ", ".join(ranked[:shown]) + more


@dataclass(frozen=True)
class OutsideTraining:
    """Batch rows holding a value the reference model never saw in its training split.

    Counted on the whole batch (not the drift sample): one such row is already a fact about
    production, where a distribution test needs many rows to move.
    """

    batch_rows: int
    rows: int  # rows with an out-of-range numeric value or an unseen category (or both)
    out_of_range_rows: int
    unseen_category_rows: int
    out_of_range: dict[str, dict[str, Any]] = field(default_factory=dict)
    unseen_categories: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def share(self) -> float:
        return self.rows / self.batch_rows if self.batch_rows else 0.0

    def describe(self) -> str:
        if not self.rows:
            return "every value within the training range and categories"
        parts = []
        if self.out_of_range_rows:
            parts.append(
                f"{self.out_of_range_rows} row(s) outside the training range "
                f"({_names(self.out_of_range)})"
            )
        if self.unseen_category_rows:
            parts.append(
                f"{self.unseen_category_rows} row(s) with a category unseen in training "
                f"({_names(self.unseen_categories)})"
            )
        return f"{self.rows} of {self.batch_rows} rows hold values unseen in training: " + (
            "; ".join(parts)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_rows": self.batch_rows,
            "rows": self.rows,
            "share": self.share,
            "out_of_range_rows": self.out_of_range_rows,
            "unseen_category_rows": self.unseen_category_rows,
            "out_of_range": self.out_of_range,
            "unseen_categories": self.unseen_categories,
        }


@dataclass(frozen=True)
class DriftSummary:
    """The verdict on one batch: what drifted, by how much, judged how, on which samples."""

    batch: str
    batch_md5: str
    reference_version: str
    columns: tuple[ColumnDrift, ...]
    prediction: ColumnDrift
    settings: Drift
    reference_rows: int
    current_rows: int
    sampled_reference_rows: int
    sampled_current_rows: int
    outside_training: OutsideTraining
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.columns:
            raise DriftError(f"batch {self.batch}: no feature columns were compared.")

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def drift_share(self) -> float:
        return len(self.drifted_columns) / len(self.columns)

    @property
    def share_threshold(self) -> float:
        return self.settings.share_threshold

    @property
    def drifted(self) -> bool:
        """The batch verdict: the share of drifted features (the prediction is reported apart,
        since a model may rightly ignore a drifting feature, or react to several small ones)."""
        return self.drift_share > self.share_threshold

    @property
    def verdict(self) -> str:
        return "drift" if self.drifted else "no drift"

    def describe(self) -> str:
        columns = ", ".join(self.drifted_columns) or "none"
        prediction = "drifted" if self.prediction.drifted else "no drift"
        return (
            f"Batch {self.batch}: {self.verdict}; drift share {self.drift_share:.3f} "
            f"(threshold {self.share_threshold}), drifted columns: {columns}; "
            f"prediction: {prediction} ({self.prediction.describe()}); "
            f"{self.outside_training.describe()} [against {self.reference_version}]"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "batch_md5": self.batch_md5,
            "reference_version": self.reference_version,
            "verdict": self.verdict,
            "drift_share": self.drift_share,
            "share_threshold": self.share_threshold,
            "drifted_columns": self.drifted_columns,
            "columns": [c.to_dict() for c in self.columns],
            "prediction": self.prediction.to_dict(),
            "outside_training": self.outside_training.to_dict(),
            "settings": self.settings.model_dump(mode="json"),
            "rows": {
                "reference": self.reference_rows,
                "current": self.current_rows,
                "sampled_reference": self.sampled_reference_rows,
                "sampled_current": self.sampled_current_rows,
            },
            **self.extra,
        }


def sample(frame: pd.DataFrame, cap: int, seed: int) -> pd.DataFrame:
    """At most ``cap`` rows, drawn without replacement by a seeded generator, in row order."""
    if len(frame) <= cap:
        return frame
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(frame), size=cap, replace=False))
    return frame.iloc[rows]


def feature_tests(model: ModelDeclaration, settings: Drift) -> list[ColumnTest]:
    """The declared test for every monitored feature, by its contract type."""
    tests = []
    for name in model.drift_columns:
        kind = KIND_OF_TYPE[model.contract.features[name].type]
        declared, setting = (
            (settings.numeric, "drift.numeric")
            if kind == "numeric"
            else (settings.categorical, "drift.categorical")
        )
        check_applies(declared.method, kind, setting)
        tests.append(ColumnTest(name, kind, declared.method, declared.threshold, setting))
    return tests


def prediction_test(column: str, is_numeric: bool, settings: Drift, task: str) -> ColumnTest:
    """``drift.prediction`` if declared, else the test for the output's kind."""
    kind: Kind = "numeric" if is_numeric else "categorical"
    if settings.prediction is not None:
        declared, setting = settings.prediction, "drift.prediction"
    elif is_numeric:
        declared, setting = settings.numeric, "drift.numeric (default for a numeric output)"
    else:
        declared, setting = settings.categorical, "drift.categorical (default for predicted labels)"
    check_applies(declared.method, kind, f"{setting}, judging the {task} model's {kind} output")
    return ColumnTest(column, kind, declared.method, declared.threshold, setting)


def _column_scores(report_dict: dict[str, Any]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for metric in report_dict["metrics"]:
        config = metric.get("config", {})
        if config.get("type") == "evidently:metric_v2:ValueDrift":
            scores[config["column"]] = float(metric["value"])
    return scores


def _is_drifted(method: str, score: float, threshold: float) -> bool:
    """Evidently's rule for ``method``; an undefined score is an error, never "no drift"."""
    return DRIFTS_WHEN[method](score, threshold)


def _as_kind(values: pd.Series, kind: Kind) -> pd.Series:
    """One representation per kind on both sides: float64 numbers, or category text.

    Booleans and whole-number category codes become text, so reference and batch compare
    category by category whatever dtype each side was parsed with; missing values stay missing.
    """
    if kind == "numeric":
        return values.astype("float64")
    return values.astype("object").where(values.isna(), values.astype(str))


def compute_drift(
    reference: pd.DataFrame, current: pd.DataFrame, tests: Sequence[ColumnTest]
) -> tuple[dict[str, ColumnDrift], Any]:
    """Each column judged by its own test; returns (column -> verdict, Evidently snapshot)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    for test in tests:
        check_applies(test.method, test.kind, test.setting)
        for side, frame in (("reference", reference), ("batch", current)):
            if frame[test.column].notna().sum() == 0:
                raise DriftError(
                    f"column {test.column!r} has no values in the {side} ({len(frame)} rows, "
                    "all missing): its drift cannot be judged. Check how the batch was "
                    "exported, or leave the column out of drift.columns."
                )
    columns = [t.column for t in tests]
    definition = DataDefinition(
        numerical_columns=[t.column for t in tests if t.kind == "numeric"],
        categorical_columns=[t.column for t in tests if t.kind == "categorical"],
    )

    def dataset(frame: pd.DataFrame) -> Any:
        typed = pd.DataFrame({t.column: _as_kind(frame[t.column], t.kind) for t in tests})
        return Dataset.from_pandas(typed, data_definition=definition)

    report = Report(
        [ValueDrift(column=t.column, method=t.method, threshold=t.threshold) for t in tests]
    )
    snapshot = report.run(dataset(current), dataset(reference))
    scores = _column_scores(snapshot.dict())
    missing = [c for c in columns if c not in scores]
    if missing:
        raise RuntimeError(f"Evidently returned no drift score for {missing}")
    undefined = [t for t in tests if not math.isfinite(scores[t.column])]
    if undefined:
        raise DriftError(
            "no finite drift score for "
            + ", ".join(f"{t.column} ({t.method}: {scores[t.column]})" for t in undefined)
            + ": drift is undefined there (a constant column makes some tests divide by zero). "
            "Such a column is neither drifted nor calm; declare another test in "
            + ", ".join(sorted({t.setting for t in undefined}))
            + " (e.g. psi or wasserstein), or leave the column out of drift.columns."
        )
    return (
        {
            t.column: ColumnDrift(
                column=t.column,
                kind=t.kind,
                method=t.method,
                score=scores[t.column],
                threshold=t.threshold,
                drifted=_is_drifted(t.method, scores[t.column], t.threshold),
            )
            for t in tests
        },
        snapshot,
    )


def outside_training(
    reference: pd.DataFrame, current: pd.DataFrame, contract: Contract, columns: Sequence[str]
) -> OutsideTraining:
    """Rows of ``current`` with a numeric value outside the reference's [min, max] or a
    category the reference does not hold, over ``columns``; missing values count as neither."""
    range_any = np.zeros(len(current), dtype=bool)
    unseen_any = np.zeros(len(current), dtype=bool)
    out_of_range: dict[str, dict[str, Any]] = {}
    unseen: dict[str, dict[str, Any]] = {}
    for name in columns:
        kind = KIND_OF_TYPE[contract.features[name].type]
        if kind == "numeric":
            known = reference[name].to_numpy(dtype="float64", na_value=np.nan)
            values = current[name].to_numpy(dtype="float64", na_value=np.nan)
            if np.isnan(known).all():
                continue  # no training range to leave; compute_drift refuses such a column
            low, high = float(np.nanmin(known)), float(np.nanmax(known))
            below, above = values < low, values > high  # NaN compares False: not outside
            hit = below | above
            if hit.any():
                out_of_range[name] = {
                    "rows": int(hit.sum()),
                    "below": int(below.sum()),
                    "above": int(above.sum()),
                    "training_min": low,
                    "training_max": high,
                    "batch_min": float(np.nanmin(values)),
                    "batch_max": float(np.nanmax(values)),
                }
                range_any |= hit
        else:
            known_set = set(_as_kind(reference[name], kind).dropna())
            text = _as_kind(current[name], kind)
            hit = (text.notna() & ~text.isin(known_set)).to_numpy()
            if hit.any():
                values_seen = sorted(set(text[hit]))
                unseen[name] = {
                    "rows": int(hit.sum()),
                    "values": values_seen[:_SHOWN_CATEGORIES],
                    "distinct": len(values_seen),
                }
                unseen_any |= hit
    outside_any = range_any | unseen_any
    return OutsideTraining(
        batch_rows=len(current),
        rows=int(outside_any.sum()),
        out_of_range_rows=int(range_any.sum()),
        unseen_category_rows=int(unseen_any.sum()),
        out_of_range=out_of_range,
        unseen_categories=unseen,
    )


def _output_column(features: Sequence[str]) -> str:
    name = PREDICTION_COLUMN
    while name in features:
        name = "_" + name
    return name


def _missing(frame: pd.DataFrame, needed: Sequence[str], what: str) -> None:
    absent = [c for c in needed if c not in frame.columns]
    if absent:
        raise DriftError(
            f"the {what} lacks declared feature(s) {absent}: it was not made under this "
            "model declaration. Compare against a reference version trained with it."
        )


def drift_summary(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    model: ModelDeclaration,
    estimator: Any,
    settings: Drift,
    *,
    batch: str,
    batch_md5: str,
    reference_version: str,
    extra: dict[str, Any] | None = None,
) -> tuple[DriftSummary, Any]:
    """Feature drift on the declared columns and drift of the model's monitored output.

    ``reference`` is the reference version's training split and ``estimator`` the model fitted
    on it; ``current`` is the batch, already validated against the contract; ``settings`` is the
    declaration's ``drift:`` (after any recorded run override of sample cap or seed). The model
    scores both seeded samples, and the task decides what of its output is watched: P(positive
    class) for a binary task, the predicted label for multiclass, the value for regression.
    Returns the summary and Evidently's snapshot (for ``report_files``).
    """
    from lifecycle_pipeline.tasks import task_for

    contract = model.contract
    features = list(contract.feature_names)
    _missing(reference, features, "reference training split")
    _missing(current, features, "batch")
    tests = feature_tests(model, settings)
    task = task_for(contract.task)
    classes = list(getattr(estimator, "classes_", []))
    output = _output_column(features)
    sampled: list[pd.DataFrame] = []
    is_numeric = True
    for frame, seed in ((reference, settings.seed), (current, settings.seed + 1)):
        picked = sample(frame[features], settings.sample_cap, seed).copy()
        raw = task.raw_outputs(estimator, picked[features])
        values, is_numeric = task.monitored_output(raw, classes, contract)
        picked[output] = np.asarray(values)
        sampled.append(picked)
    tests.append(prediction_test(output, is_numeric, settings, contract.task))
    results, snapshot = compute_drift(sampled[0], sampled[1], tests)
    summary = DriftSummary(
        batch=batch,
        batch_md5=batch_md5,
        reference_version=reference_version,
        columns=tuple(results[c] for c in model.drift_columns),
        prediction=results[output],
        settings=settings,
        reference_rows=len(reference),
        current_rows=len(current),
        sampled_reference_rows=len(sampled[0]),
        sampled_current_rows=len(sampled[1]),
        outside_training=outside_training(reference, current, contract, model.drift_columns),
        extra=extra or {},
    )
    return summary, snapshot


def report_files(summary: DriftSummary, snapshot: Any) -> dict[str, bytes]:
    """The Evidently HTML report and JSON snapshot, and our summary, as files to store."""
    return {
        "report.html": snapshot.get_html_str(as_iframe=False).encode("utf-8"),
        "snapshot.json": snapshot.json().encode("utf-8"),
        "summary.json": json.dumps(summary.to_dict(), indent=1, sort_keys=True).encode("utf-8"),
    }
