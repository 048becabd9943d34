"""Drift of a production batch against a training reference, computed with Evidently 0.7.

Evidently chooses its statistical test by sample size (Kolmogorov-Smirnov up to 1000 rows,
Wasserstein above), so the same shift can be judged differently at different volumes. The
method and threshold are pinned here instead, and both sides are sampled to a fixed cap with
a recorded seed, which keeps time and memory bounded and verdicts comparable across batches.
PSI is the default: on the demo data it flags exactly the shifted columns at 300 rows, where
Wasserstein at 0.1 also flags resampling noise.

Not byte-reproducible: Evidently's HTML report and snapshot embed their generation time and
random widget ids. Scores, verdicts and ``summary.json`` are deterministic for the same inputs.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lifecycle_pipeline.errors import LifecycleError

PREDICTION_COLUMN = "prediction_probability"

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


class DriftError(LifecycleError, ValueError):
    """Drift cannot be judged as configured: an unknown method, or a score that is undefined."""


@dataclass(frozen=True)
class DriftSettings:
    method: str = "psi"
    threshold: float = 0.1
    drift_share_threshold: float = 0.05
    sample_cap: int = 100_000
    seed: int = 20241122

    def __post_init__(self) -> None:
        if self.method not in DRIFTS_WHEN:
            raise DriftError(
                f"drift method {self.method!r} is not one of Evidently's tests: "
                f"{', '.join(sorted(DRIFTS_WHEN))}."
            )


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    score: float
    threshold: float
    drifted: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "method": self.method,
            "score": self.score,
            "threshold": self.threshold,
            "drifted": self.drifted,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnDrift:
        return cls(**{k: data[k] for k in ("column", "method", "score", "threshold", "drifted")})


@dataclass(frozen=True)
class DriftSummary:
    """The verdict on one batch: what drifted, by how much, judged how, on which samples."""

    batch: str
    batch_md5: str
    reference_version: str
    columns: tuple[ColumnDrift, ...]
    prediction: ColumnDrift
    settings: DriftSettings
    reference_rows: int
    current_rows: int
    sampled_reference_rows: int
    sampled_current_rows: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def __post_init__(self) -> None:
        if not self.columns:
            raise DriftError(f"batch {self.batch}: no feature columns were compared.")

    @property
    def drift_share(self) -> float:
        return len(self.drifted_columns) / len(self.columns)

    @property
    def drifted(self) -> bool:
        return self.drift_share > self.settings.drift_share_threshold

    @property
    def verdict(self) -> str:
        return "drift" if self.drifted else "no drift"

    def describe(self) -> str:
        columns = ", ".join(self.drifted_columns) or "none"
        return (
            f"Batch {self.batch}: {self.verdict}; drift share {self.drift_share:.3f} "
            f"(threshold {self.settings.drift_share_threshold}), drifted columns: {columns} "
            f"[{self.settings.method} at {self.settings.threshold}, "
            f"against {self.reference_version}]"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "batch_md5": self.batch_md5,
            "reference_version": self.reference_version,
            "verdict": self.verdict,
            "drift_share": self.drift_share,
            "drifted_columns": self.drifted_columns,
            "columns": [c.to_dict() for c in self.columns],
            "prediction": self.prediction.to_dict(),
            "settings": vars(self.settings),
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


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    settings: DriftSettings,
) -> tuple[dict[str, ColumnDrift], Any]:
    """Per-column drift with pinned method and threshold; returns (columns, Evidently snapshot)."""
    from evidently import Report
    from evidently.metrics import ValueDrift

    report = Report(
        [
            ValueDrift(column=c, method=settings.method, threshold=settings.threshold)
            for c in columns
        ]
    )
    snapshot = report.run(current[columns], reference[columns])
    scores = _column_scores(snapshot.dict())
    missing = [c for c in columns if c not in scores]
    if missing:
        raise RuntimeError(f"Evidently returned no drift score for {missing}")
    undefined = {c: scores[c] for c in columns if not math.isfinite(scores[c])}
    if undefined:
        raise DriftError(
            f"Evidently's {settings.method!r} test gave no finite score for "
            f"{', '.join(f'{c} ({s})' for c, s in undefined.items())}: drift is undefined there "
            "(a constant column makes some tests divide by zero). Such a column is neither "
            "drifted nor calm; choose another `method` in the drift_monitor run config, e.g. "
            "psi or wasserstein."
        )
    return (
        {
            c: ColumnDrift(
                column=c,
                method=settings.method,
                score=scores[c],
                threshold=settings.threshold,
                drifted=_is_drifted(settings.method, scores[c], settings.threshold),
            )
            for c in columns
        },
        snapshot,
    )


def drift_summary(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    estimator: Any,
    settings: DriftSettings,
    *,
    batch: str,
    batch_md5: str,
    reference_version: str,
) -> tuple[DriftSummary, Any]:
    """Feature drift on ``columns`` and prediction drift of ``estimator``, on seeded samples.

    Returns the summary and Evidently's snapshot (for ``report_files``). The drift monitor
    asset, ``lifecycle drift`` and the benchmark all run this one function.
    """
    from lifecycle_pipeline.lineage.fingerprint import predict_proba

    sampled_reference = sample(reference[columns], settings.sample_cap, settings.seed).copy()
    sampled_current = sample(current[columns], settings.sample_cap, settings.seed + 1).copy()
    for frame in (sampled_reference, sampled_current):
        frame[PREDICTION_COLUMN] = predict_proba(estimator, frame[columns])[:, 1]
    results, snapshot = compute_drift(
        sampled_reference, sampled_current, [*columns, PREDICTION_COLUMN], settings
    )
    summary = DriftSummary(
        batch=batch,
        batch_md5=batch_md5,
        reference_version=reference_version,
        columns=tuple(results[c] for c in columns),
        prediction=results[PREDICTION_COLUMN],
        settings=settings,
        reference_rows=len(reference),
        current_rows=len(current),
        sampled_reference_rows=len(sampled_reference),
        sampled_current_rows=len(sampled_current),
    )
    return summary, snapshot


def report_files(summary: DriftSummary, snapshot: Any) -> dict[str, bytes]:
    """The Evidently HTML report and JSON snapshot, and our summary, as files to store."""
    return {
        "report.html": snapshot.get_html_str(as_iframe=False).encode("utf-8"),
        "snapshot.json": snapshot.json().encode("utf-8"),
        "summary.json": json.dumps(summary.to_dict(), indent=1, sort_keys=True).encode("utf-8"),
    }
