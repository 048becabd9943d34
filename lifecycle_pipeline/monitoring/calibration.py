"""Drift thresholds calibrated to a team's batch size and the false-alarm rate it accepts.

A distance such as PSI, or a p-value, moves with the batch size on resampling noise alone: a
threshold tuned for 300-row batches flags calm 60-row batches. A threshold means something
only together with the batch size it was measured at, so this module measures it.

How calm batches are drawn, and why:

- The reference is exactly the monitor's: the training split, sampled to ``sample_cap`` with
  the declared seed, and the model's output on it.
- Calm batches are drawn from the **held-out** rows (the test split), never from the
  reference rows: a batch resampled from the reference resembles it more than new production
  rows do, and the false-alarm rate would be underestimated.
- Rows are drawn **with replacement** (a bootstrap of the held-out rows). Drawing 60 of 114
  held-out rows without replacement makes every batch half of the same pool, with about half
  the variance of batches drawn from the population (finite-population correction); the
  bootstrap mimics draws from the population. The pool is itself a sample, so the calm scores
  also carry its own distance to the reference: the estimated rate tends to err on the high
  side, and the proposed thresholds on the side of fewer alarms (and less sensitivity).
- Each test is scored with Evidently's own statistical test, on the same cleaned values
  (``column_score``; ``tests/test_drift_calibration.py`` checks it equals the monitor's
  Evidently report), and a batch larger than ``sample_cap`` is sampled as the monitor does.

What is calibrated: the batch verdict (more than ``share_threshold`` of the features drift)
is what raises the alarm, and per-column rates add up across columns (30 columns each at 1%
alarm on about a quarter of calm batches). So the feature thresholds and the share threshold
are chosen together for the verdict: with ``min_drifted`` columns needed for an alarm (default
1, so that one shifted feature is still caught), every kind of column gets the same per-column
rate, the largest for which at most ``floor(rate * (draws + 1)) - 1`` calm draws raise the
verdict. For one statistic this is the split-conformal bound: the expected rate on fresh calm
batches from the same population is at most the target. The prediction test is not part of the
verdict (it is reported apart), so it is calibrated on its own at the target rate.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.monitoring.drift import (
    DRIFTS_WHEN,
    ColumnTest,
    DriftError,
    _as_kind,
    _output_column,
    feature_tests,
    prediction_test,
    sample,
)

if TYPE_CHECKING:
    from lifecycle_pipeline.declaration import Drift, ModelDeclaration

DEFAULT_DRAWS = 200
DEFAULT_SEED = 0
_SIGNIFICANT = 3  # digits of a proposed threshold: readable, and rounded toward fewer alarms


class CalibrationError(LifecycleError, ValueError):
    """Thresholds cannot be calibrated as asked: too few draws, data or a test that never calms."""


def _distance(method: str) -> bool:
    """True when larger scores drift (distances); False for p-values (smaller scores drift)."""
    return DRIFTS_WHEN[method] in (operator.gt, operator.ge)


def column_score(test: ColumnTest, reference: pd.Series, current: pd.Series) -> float:
    """``test``'s score of ``current`` against ``reference``, as Evidently's ``ValueDrift`` gets
    it (the monitor's computation): infinities and missing values dropped, then Evidently's
    registered statistical test. Calling the test directly skips the report's histograms and
    widgets (about 80 ms per 30-column batch instead of a second), which makes hundreds of
    draws affordable."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    column_type = ColumnType.Numerical if test.kind == "numeric" else ColumnType.Categorical
    sides = []
    for side, values in (("reference", reference), ("batch", current)):
        clean = _as_kind(values, test.kind).replace([-np.inf, np.inf], np.nan).dropna()
        if clean.empty:
            raise DriftError(
                f"column {test.column!r} has no values in the {side} ({len(values)} rows, all "
                "missing): its drift cannot be judged. Leave it out of drift.columns, or "
                "calibrate with a larger batch size."
            )
        sides.append(clean)
    function = get_stattest(sides[0], sides[1], column_type, test.method)
    score = float(function(sides[0], sides[1], column_type, test.threshold).drift_score)
    if not math.isfinite(score):
        raise DriftError(
            f"no finite drift score for {test.column} ({test.method}: {score}): drift is "
            f"undefined there (a constant column makes some tests divide by zero); declare "
            f"another test in {test.setting}, or leave the column out of drift.columns."
        )
    return score


@dataclass(frozen=True)
class CalmScores:
    """Every monitored test's score on ``draws`` calm batches of ``batch_size`` rows.

    ``tests`` are the feature tests in ``drift.columns`` order, then the prediction test when a
    model was given; ``scores[d, j]`` is test ``j`` on draw ``d``. The thresholds in ``tests``
    are the declared ones; scores do not depend on them, so any threshold can be judged on
    the same draws.
    """

    tests: tuple[ColumnTest, ...]
    features: int  # the first ``features`` tests are the verdict's columns
    scores: np.ndarray
    batch_size: int
    seed: int
    reference_rows: int
    pool_rows: int

    @property
    def draws(self) -> int:
        return int(self.scores.shape[0])

    @property
    def prediction(self) -> ColumnTest | None:
        return self.tests[self.features] if len(self.tests) > self.features else None

    def drifted(self, thresholds: Sequence[float]) -> np.ndarray:
        """Which test drifts on which draw, each by Evidently's rule for its method."""
        flags = np.zeros(self.scores.shape, dtype=bool)
        for j, (test, threshold) in enumerate(zip(self.tests, thresholds, strict=True)):
            rule: Any = DRIFTS_WHEN[test.method]  # an operator: elementwise on an array
            flags[:, j] = rule(self.scores[:, j], threshold)
        return flags

    def scored_with(self, settings: Drift) -> bool:
        """Whether ``settings`` declare the tests these draws were scored with (only then can
        these scores judge its thresholds)."""
        try:
            for j, test in enumerate(self.tests):
                _declared_threshold(test, settings, prediction=j == self.features)
        except CalibrationError:
            return False
        return True

    def rates(self, settings: Drift) -> Rates:
        """The false-alarm rates of ``settings``' thresholds on these calm draws."""
        thresholds = [
            _declared_threshold(t, settings, prediction=j == self.features)
            for j, t in enumerate(self.tests)
        ]
        flags = self.drifted(thresholds)
        features = flags[:, : self.features]
        # The monitor's verdict, as DriftSummary.drifted computes it.
        verdict = features.sum(axis=1) / self.features > settings.share_threshold
        kinds: dict[str, float] = {}
        for kind in ("numeric", "categorical"):
            columns = [j for j in range(self.features) if self.tests[j].kind == kind]
            if columns:
                kinds[kind] = float(features[:, columns].mean())
        if self.prediction is not None:
            kinds["prediction"] = float(flags[:, self.features].mean())
        return Rates(
            verdict=float(verdict.mean()),
            per_kind=kinds,
            per_column={
                t.column: float(flags[:, j].mean())
                for j, t in enumerate(self.tests[: self.features])
            },
        )


@dataclass(frozen=True)
class Rates:
    """Measured false-alarm rates: of the batch verdict, per kind of test (the mean over its
    columns, i.e. the chance one column of that kind drifts) and per column."""

    verdict: float
    per_kind: dict[str, float]
    per_column: dict[str, float]


def _declared_threshold(test: ColumnTest, settings: Drift, *, prediction: bool) -> float:
    """The threshold ``settings`` give ``test`` (the prediction's defaults to its kind's)."""
    declared = settings.prediction if prediction else None
    if declared is None:
        declared = settings.numeric if test.kind == "numeric" else settings.categorical
    if declared.method != test.method:
        raise CalibrationError(
            f"{test.column}: calm batches were scored with {test.method}, but the settings "
            f"judged declare {declared.method}; score the draws with the same tests."
        )
    return declared.threshold


def calm_batches(pool_rows: int, batch_size: int, draws: int, seed: int) -> np.ndarray:
    """Row positions of ``draws`` calm batches, each ``batch_size`` rows drawn with replacement
    from ``pool_rows`` held-out rows by one seeded generator (see the module's docstring)."""
    if pool_rows < 1:
        raise CalibrationError("no held-out rows to draw calm batches from.")
    return np.random.default_rng(seed).integers(0, pool_rows, size=(draws, batch_size))


class BatchScorer:
    """Scores batches against one reference as the monitor does (``drift_summary``): the
    reference sampled to ``sample_cap`` with the declared seed, a batch above the cap with
    ``seed + 1``, the model's monitored output computed on each sampled side."""

    def __init__(
        self,
        reference: pd.DataFrame,
        model: ModelDeclaration,
        estimator: Any | None,
        settings: Drift,
    ) -> None:
        from lifecycle_pipeline.tasks import task_for

        self.model = model
        self.estimator = estimator
        self.settings = settings
        self.features = list(model.contract.feature_names)
        self.task = task_for(model.contract.task)
        self.classes = list(getattr(estimator, "classes_", []))
        self.output = _output_column(self.features)
        tests = feature_tests(model, settings)
        self.feature_count = len(tests)
        self.output_is_numeric = True
        self.reference = self._with_output(
            sample(reference[self.features], settings.sample_cap, settings.seed)
        )
        if estimator is not None:
            tests.append(
                prediction_test(self.output, self.output_is_numeric, settings, model.contract.task)
            )
        self.tests = tuple(tests)

    def _with_output(self, frame: pd.DataFrame, output: bool = True) -> pd.DataFrame:
        picked = frame[self.features].reset_index(drop=True)
        if self.estimator is not None and output:
            raw = self.task.raw_outputs(self.estimator, picked)
            values, numeric = self.task.monitored_output(raw, self.classes, self.model.contract)
            picked[self.output] = np.asarray(values)
            self.output_is_numeric = bool(numeric)
        return picked

    def score(self, batch: pd.DataFrame, only: Sequence[int] | None = None) -> np.ndarray:
        """Every test's score on ``batch`` (NaN for tests not in ``only``, when given)."""
        wanted = range(len(self.tests)) if only is None else only
        current = self._with_output(
            sample(batch, self.settings.sample_cap, self.settings.seed + 1),
            output=any(j >= self.feature_count for j in wanted),
        )
        scores = np.full(len(self.tests), np.nan)
        for j in wanted:
            test = self.tests[j]
            scores[j] = column_score(test, self.reference[test.column], current[test.column])
        return scores

    def calm(self, pool: pd.DataFrame, *, batch_size: int, draws: int, seed: int) -> CalmScores:
        """``draws`` calm batches of ``batch_size`` rows resampled from ``pool``, scored."""
        if batch_size < 2:
            raise CalibrationError(f"batch size {batch_size}: a drift test needs at least 2 rows.")
        if draws < 1:
            raise CalibrationError(f"draws {draws}: at least one calm batch is needed.")
        held = pool[self.features].reset_index(drop=True)
        picks = calm_batches(len(held), batch_size, draws, seed)
        return CalmScores(
            tests=self.tests,
            features=self.feature_count,
            scores=np.vstack([self.score(held.iloc[rows]) for rows in picks]),
            batch_size=batch_size,
            seed=seed,
            reference_rows=len(self.reference),
            pool_rows=len(held),
        )


def calm_scores(
    reference: pd.DataFrame,
    pool: pd.DataFrame,
    model: ModelDeclaration,
    estimator: Any | None,
    settings: Drift,
    *,
    batch_size: int,
    draws: int,
    seed: int,
) -> CalmScores:
    """Score calm batches drawn from ``pool`` (held-out rows) against ``reference`` (the
    training split), as the monitor would score them; the prediction test too when
    ``estimator`` (the model fitted on ``reference``) is given."""
    scorer = BatchScorer(reference, model, estimator, settings)
    return scorer.calm(pool, batch_size=batch_size, draws=draws, seed=seed)


def shift_detection(
    scorer: BatchScorer,
    pool: pd.DataFrame,
    settings: Drift,
    *,
    batch_size: int,
    batches: int,
    seed: int,
    shift_sd: float = 1.0,
) -> dict[str, float]:
    """Per numeric feature, the share of held-out batches whose verdict is drift once that
    one feature is moved by ``shift_sd`` standard deviations of the reference: what a
    threshold that keeps calm batches quiet still catches. Only the moved column is scored
    again (the verdict is the features'; the other columns keep their calm scores)."""
    held = pool[scorer.features].reset_index(drop=True)
    picks = calm_batches(len(held), batch_size, batches, seed)
    calm_rows = [held.iloc[rows].reset_index(drop=True) for rows in picks]
    features = list(range(scorer.feature_count))
    base = np.vstack([scorer.score(batch, only=features) for batch in calm_rows])
    detected: dict[str, float] = {}
    for j, test in enumerate(scorer.tests[: scorer.feature_count]):
        if test.kind != "numeric":
            continue
        sd = float(scorer.reference[test.column].astype("float64").std(ddof=0))
        scores = base.copy()
        for d, batch in enumerate(calm_rows):
            moved = batch.copy()
            moved[test.column] = moved[test.column].astype("float64") + shift_sd * sd
            scores[d, j] = scorer.score(moved, only=[j])[j]
        shifted = CalmScores(
            tests=scorer.tests[: scorer.feature_count],
            features=scorer.feature_count,
            scores=scores,
            batch_size=batch_size,
            seed=seed,
            reference_rows=len(scorer.reference),
            pool_rows=len(held),
        )
        detected[test.column] = shifted.rates(settings).verdict
    return detected


def threshold_beyond(method: str, score: float) -> float:
    """The threshold nearest ``score`` on its calm side, at 3 significant digits: the value at
    which ``score`` (and every calmer one) no longer drifts. Rounded away from alarms, so a
    printed threshold never raises more alarms than were measured."""
    rule = DRIFTS_WHEN[method]
    if _distance(method):
        if score <= 0.0:
            return 10.0 ** -(_SIGNIFICANT + 3)
        unit = 10.0 ** (math.floor(math.log10(score)) - _SIGNIFICANT + 1)
        threshold = math.ceil(score / unit) * unit
        while rule(score, threshold):
            threshold += unit
    else:
        if score <= 0.0:
            raise CalibrationError(
                f"{method}: calm batches reach p-value {score:g}; no positive threshold keeps "
                "them calm. Declare a distance (e.g. psi or wasserstein) for this kind of column."
            )
        unit = 10.0 ** (math.floor(math.log10(score)) - _SIGNIFICANT + 1)
        threshold = math.floor(score / unit) * unit
        while threshold > 0 and rule(score, threshold):
            threshold -= unit
        if threshold <= 0:
            raise CalibrationError(f"{method}: no positive threshold below p-value {score:g}.")
    shown = float(f"{threshold:.{_SIGNIFICANT + 1}g}")  # without the float arithmetic's noise
    return threshold if rule(score, shown) else shown


def check_request(batch_size: int, false_alarm_rate: float, draws: int) -> None:
    """Refuse a calibration that cannot succeed before any data is read or model fitted."""
    if batch_size < 2:
        raise CalibrationError(f"batch size {batch_size}: a drift test needs at least 2 rows.")
    if not 0.0 < false_alarm_rate < 1.0:
        raise CalibrationError(f"false-alarm rate {false_alarm_rate}: must lie in (0, 1).")
    _allowed(false_alarm_rate, draws)


def _allowed(false_alarm_rate: float, draws: int) -> int:
    """Calm draws that may alarm: ``floor(rate * (draws + 1)) - 1`` (split-conformal)."""
    allowed = math.floor(false_alarm_rate * (draws + 1) + 1e-9) - 1
    if allowed < 0:
        raise CalibrationError(
            f"{draws} draws cannot show a false-alarm rate of {false_alarm_rate:g}: use at "
            f"least {math.ceil(1 / false_alarm_rate) - 1} (--draws)."
        )
    return allowed


def _most_drifting(method: str, scores: np.ndarray, rank: int) -> float:
    """The ``rank``-th most drifting score (0-based) under ``method``."""
    ordered = np.sort(scores)
    return float(ordered[::-1][rank] if _distance(method) else ordered[rank])


@dataclass(frozen=True)
class Calibration:
    """Proposed thresholds and what they measured on the calm draws."""

    thresholds: dict[str, tuple[str, float]]  # kind ("numeric", ...) -> (method, threshold)
    share_threshold: float
    min_drifted: int
    false_alarm_rate: float
    rates: Rates
    calm: CalmScores
    settings: Drift  # the declared settings with the proposed thresholds
    detected: dict[str, float] | None = None  # shift_detection of ``settings``, when measured
    shift_batches: int = 0

    def with_detection(self, detected: dict[str, float], batches: int) -> Calibration:
        return dataclasses.replace(self, detected=detected, shift_batches=batches)

    def declaration(self, reference: str) -> dict[str, Any]:
        """The ``drift:`` keys to paste into the declaration, with the calibration record."""
        tests = {k: {"method": m, "threshold": t} for k, (m, t) in self.thresholds.items()}
        measured: dict[str, Any] = {"verdict": round(self.rates.verdict, 4)}
        for kind, (method, threshold) in self.thresholds.items():
            measured[kind] = {
                "method": method,
                "threshold": threshold,
                "column_rate": round(self.rates.per_kind[kind], 5),
            }
        detected = self.detected
        if detected:
            weakest = min(detected, key=detected.__getitem__)
            measured["one_sd_shift"] = {
                "batches": self.shift_batches,
                "min": round(detected[weakest], 4),
                "median": round(float(np.median(list(detected.values()))), 4),
                "weakest": weakest,
            }
        return {
            **tests,
            "share_threshold": self.share_threshold,
            "batch_size": self.calm.batch_size,
            "false_alarm_rate": self.false_alarm_rate,
            "calibration": {
                "batch_size": self.calm.batch_size,
                "false_alarm_rate": self.false_alarm_rate,
                "draws": self.calm.draws,
                "seed": self.calm.seed,
                "min_drifted": self.min_drifted,
                "columns": self.calm.features,
                "share_threshold": self.share_threshold,
                "reference": reference,
                "measured": measured,
            },
        }


def calibrate(
    calm: CalmScores, settings: Drift, *, false_alarm_rate: float, min_drifted: int = 1
) -> Calibration:
    """Thresholds under which at most the target share of calm batches raise the verdict.

    The declared methods are kept; their thresholds and ``share_threshold`` are chosen (see the
    module's docstring). ``min_drifted``: how many drifted features make an alarm; 1 catches a
    shift of one feature, more tolerates lower per-column thresholds for broad shifts.
    """
    if not 0.0 < false_alarm_rate < 1.0:
        raise CalibrationError(f"false-alarm rate {false_alarm_rate}: must lie in (0, 1).")
    allowed = _allowed(false_alarm_rate, calm.draws)
    n = calm.features
    if not 1 <= min_drifted <= n:
        raise CalibrationError(f"min_drifted {min_drifted}: must lie in [1, {n}] (the columns).")
    share = float(f"{(min_drifted - 0.5) / n:.4g}")  # min_drifted - 1 columns stay calm
    kinds = {
        kind: [j for j in range(n) if calm.tests[j].kind == kind]
        for kind in ("numeric", "categorical")
    }
    kinds = {k: v for k, v in kinds.items() if v}
    methods = {k: calm.tests[v[0]].method for k, v in kinds.items()}

    def thresholds_at(level: float) -> dict[str, float]:
        """Each kind's threshold at which about ``level`` of its column scores drift."""
        chosen = {}
        for kind, columns in kinds.items():
            pooled = calm.scores[:, columns].ravel()
            rank = min(math.floor(level * pooled.size), pooled.size - 1)
            chosen[kind] = threshold_beyond(
                methods[kind], _most_drifting(methods[kind], pooled, rank)
            )
        return chosen

    def alarms(chosen: dict[str, float]) -> int:
        per_test = [chosen[calm.tests[j].kind] for j in range(n)]
        flags = calm.drifted([*per_test, *([1.0] if calm.prediction else [])])[:, :n]
        return int((flags.sum(axis=1) >= min_drifted).sum())

    low, high = 0.0, 1.0  # alarms grow with the per-column level; bisect the largest that fits
    if alarms(thresholds_at(low)) > allowed:
        raise CalibrationError(
            "even the calmest thresholds raise the verdict on more calm draws than the target "
            "allows; declare other tests, or a larger min_drifted."
        )
    for _ in range(40):
        middle = (low + high) / 2
        if alarms(thresholds_at(middle)) <= allowed:
            low = middle
        else:
            high = middle
    chosen = thresholds_at(low)
    proposed = {kind: (methods[kind], chosen[kind]) for kind in kinds}
    prediction = calm.prediction
    if prediction is not None:
        score = _most_drifting(prediction.method, calm.scores[:, n], allowed)
        proposed["prediction"] = (prediction.method, threshold_beyond(prediction.method, score))
    calibrated = _with_thresholds(settings, proposed, share)
    rates = calm.rates(calibrated)
    assert rates.verdict * calm.draws <= allowed + 1e-9, "calibration exceeded its own bound"
    return Calibration(
        thresholds=proposed,
        share_threshold=share,
        min_drifted=min_drifted,
        false_alarm_rate=false_alarm_rate,
        rates=rates,
        calm=calm,
        settings=calibrated,
    )


def _with_thresholds(
    settings: Drift, proposed: dict[str, tuple[str, float]], share: float
) -> Drift:
    """``settings`` with the proposed thresholds (a kind without columns keeps its own)."""
    values = settings.model_dump()
    for kind, (method, threshold) in proposed.items():
        values[kind] = {"method": method, "threshold": threshold}
    values["share_threshold"] = share
    values["calibration"] = None
    return type(settings).model_validate(values)
