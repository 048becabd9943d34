"""`lifecycle drift calibrate`: thresholds that hold at the team's batch size.

The invariants are checked on generated data with a known population, so "fresh" calm batches
are rows no calibration ever saw (the demo data has no rows beyond its versions; its figures
are in bench/results/drift_calibration.json).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from lifecycle_pipeline.cli import main
from lifecycle_pipeline.declaration import Drift, parse_declaration
from lifecycle_pipeline.errors import ExitCode
from lifecycle_pipeline.monitoring.calibration import (
    BatchScorer,
    CalibrationError,
    CalmScores,
    calibrate,
    shift_detection,
    threshold_beyond,
)
from lifecycle_pipeline.monitoring.drift import drift_summary

ATTRIBUTES = """\
name: sensors
description: a generated binary model for calibration tests
data: {path: data/sensors.csv}
contract:
  target: alarm
  task: binary
  row: one reading
  classes: [{value: 0, name: calm}, {value: 1, name: alarm, positive: true}]
  features:
    a: {type: numeric}
    b: {type: numeric}
    c: {type: numeric}
    d: {type: numeric}
    e: {type: integer}
    site: {type: categorical}
estimator:
  class: sklearn.linear_model.LogisticRegression
  params: {max_iter: 500}
evaluation: {gates: {roc_auc: {min: 0.5}}}
drift:
  numeric: {method: wasserstein, threshold: 0.1}
  categorical: {method: jensenshannon, threshold: 0.1}
  prediction: {method: ks, threshold: 0.001}
  share_threshold: 0.05
"""
NUMERIC = ("a", "b", "c", "d", "e")
BATCH = 60


def _declaration(attributes: str = ATTRIBUTES) -> str:
    return "type: lifecycle_pipeline.LifecycleModel\nattributes:\n" + textwrap.indent(
        attributes, "  "
    )


def population(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    """The population every batch comes from: normal, skewed and whole-number features, a
    categorical one, and a label that depends on two of them."""
    a = rng.normal(0, 1, rows)
    b = rng.lognormal(0, 0.5, rows)
    frame = pd.DataFrame(
        {
            "a": a,
            "b": b,
            "c": 0.6 * a + rng.normal(0, 0.8, rows),
            "d": rng.uniform(0, 10, rows),
            "e": rng.poisson(6, rows).astype("int64"),
            "site": rng.choice(["north", "south", "east"], rows, p=[0.5, 0.3, 0.2]).astype(object),
        }
    )
    frame["alarm"] = (a + b + rng.normal(0, 1, rows) > 1.5).astype("int64")
    return frame


@pytest.fixture(scope="module")
def generated() -> dict[str, Any]:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    model = parse_declaration(_declaration(), Path("sensors.yaml"))
    rng = np.random.default_rng(11)
    train, held_out = population(rng, 400), population(rng, 150)
    features = list(model.contract.feature_names)
    encode = ColumnTransformer(
        [("site", OneHotEncoder(handle_unknown="ignore"), ["site"])], remainder="passthrough"
    )
    estimator = make_pipeline(encode, LogisticRegression(max_iter=500))
    estimator.fit(train[features], train["alarm"])
    scorer = BatchScorer(train, model, estimator, model.drift)
    calm = scorer.calm(held_out, batch_size=BATCH, draws=100, seed=0)
    return {
        "model": model,
        "train": train,
        "held_out": held_out,
        "estimator": estimator,
        "scorer": scorer,
        "calm": calm,
        "result": calibrate(calm, model.drift, false_alarm_rate=0.05),
    }


def _scores(scorer: BatchScorer, batches: list[pd.DataFrame], seed: int) -> CalmScores:
    return CalmScores(
        tests=scorer.tests,
        features=scorer.feature_count,
        scores=np.vstack([scorer.score(b) for b in batches]),
        batch_size=BATCH,
        seed=seed,
        reference_rows=len(scorer.reference),
        pool_rows=0,
    )


def test_calibrated_thresholds_keep_fresh_calm_batches_quiet_and_catch_a_one_sd_shift(
    generated: dict[str, Any],
) -> None:
    scorer, result = generated["scorer"], generated["result"]
    # On its own draws the verdict stays within floor(0.05 * 101) - 1 = 4 alarms of 100.
    assert result.rates.verdict * generated["calm"].draws <= 4
    assert result.share_threshold == pytest.approx(0.5 / 6, abs=1e-4)  # one drifted feature

    # 100 fresh batches of the population (rows never seen): a binomial count at rate 0.05
    # is at most 10 in 99% of runs; the calibration errs on the quiet side, so more is a bug.
    rng = np.random.default_rng(12345)
    fresh = _scores(scorer, [population(rng, BATCH) for _ in range(100)], seed=12345)
    alarms = round(fresh.rates(result.settings).verdict * 100)
    assert alarms <= 10, f"{alarms} false alarms on 100 fresh calm batches at target 0.05"
    # The declared (uncalibrated) thresholds were far noisier at this size: the defect.
    assert fresh.rates(generated["model"].drift).verdict > 0.5

    # One numeric feature moved by one standard deviation is flagged, whichever it is.
    shifted: dict[str, float] = {}
    for column in NUMERIC:
        batches = [population(rng, BATCH) for _ in range(10)]
        sd = float(generated["train"][column].std(ddof=0))
        for batch in batches:
            batch[column] = batch[column].astype("float64") + sd
        shifted[column] = _scores(scorer, batches, seed=0).rates(result.settings).verdict
    assert min(shifted.values()) >= 0.9, shifted
    detected = shift_detection(
        scorer, generated["held_out"], result.settings, batch_size=BATCH, batches=10, seed=3
    )
    assert set(detected) == set(NUMERIC) and min(detected.values()) >= 0.9, detected


def test_calibration_is_deterministic_for_a_seed(generated: dict[str, Any]) -> None:
    model, scorer = generated["model"], generated["scorer"]
    held_out = generated["held_out"]
    first, second, other = (
        scorer.calm(held_out, batch_size=BATCH, draws=40, seed=seed) for seed in (7, 7, 8)
    )
    assert np.array_equal(first.scores, second.scores)
    assert not np.array_equal(first.scores, other.scores)
    proposals = [
        calibrate(c, model.drift, false_alarm_rate=0.05).declaration("generated")
        for c in (first, second)
    ]
    assert proposals[0] == proposals[1]
    assert proposals[0]["calibration"]["seed"] == 7 and proposals[0]["calibration"]["draws"] == 40


def test_calibration_scores_each_test_as_the_monitor_does(generated: dict[str, Any]) -> None:
    """The scorer's numbers are the drift monitor's (its Evidently report), test by test."""
    scorer, result = generated["scorer"], generated["result"]
    rng = np.random.default_rng(99)
    for index in range(2):
        batch = population(rng, BATCH)
        summary, _ = drift_summary(
            generated["train"], batch, generated["model"], generated["estimator"],
            result.settings, batch=f"b{index}", batch_md5="-", reference_version="v1",
        )  # fmt: skip
        monitored = [c.score for c in (*summary.columns, summary.prediction)]
        assert np.allclose(monitored, scorer.score(batch), rtol=1e-9, atol=0.0)


def test_the_batch_verdict_is_calibrated_not_only_each_column(generated: dict[str, Any]) -> None:
    """Each column at the target rate would alarm the batch far more often than the target."""
    calm, result = generated["calm"], generated["result"]
    per_column = calibrate(calm, generated["model"].drift, false_alarm_rate=0.05, min_drifted=6)
    assert per_column.share_threshold == pytest.approx(5.5 / 6, abs=1e-4)
    assert result.rates.verdict <= 0.05
    assert all(rate < 0.05 for kind, rate in result.rates.per_kind.items() if kind != "prediction")


def test_too_few_draws_and_thresholds_rounded_toward_fewer_alarms() -> None:
    calm = CalmScores((), 0, np.zeros((50, 0)), BATCH, 0, 1, 1)
    with pytest.raises(CalibrationError, match=r"50 draws cannot show .* 0.01: use at least 99"):
        calibrate(calm, Drift(), false_alarm_rate=0.01)
    assert threshold_beyond("psi", 0.61234) == 0.613  # psi drifts at >=: just above
    assert threshold_beyond("psi", 0.613) == 0.614
    assert threshold_beyond("ks", 0.0012345) == 0.00123  # ks drifts at <=: just below
    assert threshold_beyond("ks", 0.00123) == 0.00122
    assert threshold_beyond("chisquare", 0.5) == 0.5  # chisquare drifts at <: equal is calm


def _project(tmp_path: Path, drift_extra: str = "") -> tuple[Path, Path]:
    folder = tmp_path / "models" / "sensors"
    folder.mkdir(parents=True)
    attributes = ATTRIBUTES + drift_extra
    (folder / "defs.yaml").write_text(_declaration(attributes), encoding="utf-8")
    data = tmp_path / "sensors.csv"
    population(np.random.default_rng(21), 560).to_csv(data, index=False)
    return folder / "defs.yaml", data


def test_lifecycle_drift_calibrate_prints_a_declaration_that_loads_and_check_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    declaration, data = _project(tmp_path)
    code = main(
        [
            "--model", str(declaration), "drift", "calibrate", "--data", str(data),
            "--batch-size", "60", "--false-alarm-rate", "0.05", "--draws", "60",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == ExitCode.OK
    assert "batch verdict" in out and "One numeric feature moved by 1 SD" in out
    proposed = yaml.safe_load(out)["drift"]
    assert proposed["calibration"]["draws"] == 60 and proposed["batch_size"] == 60
    assert proposed["calibration"]["measured"]["one_sd_shift"]["batches"] == 20

    # Another test for the numeric features: calibrated on its own draws, nothing to compare.
    code = main(
        [
            "--model", str(declaration), "drift", "calibrate", "--data", str(data),
            "--batch-size", "60", "--false-alarm-rate", "0.05", "--draws", "40", "--numeric", "ks",
        ]
    )  # fmt: skip
    other = capsys.readouterr().out
    assert code == ExitCode.OK and "other test" in other
    assert yaml.safe_load(other)["drift"]["numeric"]["method"] == "ks"

    # Pasted under drift:, it loads, and check measures it at the declared size: no warning.
    text = declaration.read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    document["attributes"]["drift"].update(proposed)
    declaration.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    code = main(["--model", str(declaration), "check", "--offline", "--data", str(data)])
    out, err = capsys.readouterr()
    assert code == ExitCode.OK and err == "", err
    assert "drift: at batch size 60, the declared thresholds raised the verdict" in out


def test_lifecycle_check_warns_when_declared_thresholds_alarm_too_often(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    declaration, data = _project(tmp_path, "  batch_size: 60\n  false_alarm_rate: 0.05\n")
    code = main(["--model", str(declaration), "check", "--offline", "--data", str(data)])
    out, err = capsys.readouterr()
    assert code == ExitCode.OK  # a warning, not a failure
    assert "warning: drift: the declared thresholds raise the verdict on" in err
    assert "above drift.false_alarm_rate 0.05" in err and "drift calibrate --data" in err

    # Without data it says what it did not do.
    code = main(["--model", str(declaration), "check", "--offline"])
    out, err = capsys.readouterr()
    assert code == ExitCode.OK and err == ""
    assert "thresholds not measured at batch size 60 (give --data FILE" in out


def test_lifecycle_drift_keeps_its_batch_check_beside_calibrate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lifecycle_pipeline.cli import _drift, build_parser
    from lifecycle_pipeline.cli_drift import _calibrate

    parser = build_parser()
    checked = parser.parse_args(["drift", "--batch", "batch-002", "--version", "data-v1"])
    assert (checked.handler, checked.batch, checked.version) == (_drift, "batch-002", "data-v1")
    calibrating = parser.parse_args(["drift", "calibrate", "--batch-size", "60"])
    assert (calibrating.handler, calibrating.batch_size) == (_calibrate, 60)
    declaration, data = _project(tmp_path)
    assert main(["--model", str(declaration), "drift"]) == ExitCode.REFUSED
    assert "give --batch BATCH" in capsys.readouterr().err
    code = main(["--model", str(declaration), "drift", "calibrate", "--data", str(data)])
    assert code == ExitCode.REFUSED
    assert "drift.batch_size" in capsys.readouterr().err


def test_the_calibration_record_is_shown_by_the_monitor_and_the_card(
    generated: dict[str, Any], tmp_path: Path
) -> None:
    from lifecycle_pipeline.assets.monitoring import calibration_metadata
    from lifecycle_pipeline.declaration import load_declaration
    from lifecycle_pipeline.documentation.bundle import _drift_rows

    proposed = generated["result"].declaration("generated rows")
    document = yaml.safe_load(_declaration())
    document["attributes"]["drift"].update(proposed)
    path = tmp_path / "sensors" / "defs.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    loaded = load_declaration(path)
    drift = loaded.model.drift
    assert drift.calibration is not None and drift.calibration_mismatches(6) == []

    recorded = calibration_metadata(drift, 6)
    assert recorded["drift/calibration"].data["describes_declared_settings"] is True
    assert recorded["drift/calibration"].data["draws"] == 100
    tests, calibration = (row.value for row in _drift_rows(loaded))
    assert "wasserstein, drifts when score >= " in str(tests)
    assert "of its 6 features drift" in str(tests)
    assert "measured at 60-row batches on 100 calm draws (seed 0) from generated rows" in str(
        calibration
    )

    # A threshold edited after calibration: the record no longer speaks for it, and says so.
    document["attributes"]["drift"]["numeric"]["threshold"] = 0.2
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    edited = load_declaration(path)
    recorded = calibration_metadata(edited.model.drift, 6)
    assert recorded["drift/calibration"].data["describes_declared_settings"] is False
    assert "drift.numeric is wasserstein 0.2, calibrated was" in str(_drift_rows(edited)[1].value)


def test_the_committed_benchmark_meets_the_target_and_is_what_benchmarks_md_shows() -> None:
    """bench/results/drift_calibration.json (`make bench-calibrate`), both demo models at 60
    rows: at most 2 false alarms in 100 fresh calm batches at target 0.01 (a binomial count:
    0-2 in 92% of runs at exactly 0.01), and with the Wasserstein test every single-feature
    one-SD shift flagged in at least 90% of batches."""
    import json

    from bench.drift_calibration import RESULTS, section

    root = Path(__file__).resolve().parents[1]
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    assert set(results["models"]) == {
        "breast_cancer",
        "breast_cancer+wasserstein",
        "diabetes",
        "diabetes+wasserstein",
    }
    for key, measured in results["models"].items():
        assert measured["fresh"]["after"]["batches"] == 100
        assert measured["fresh"]["after"]["alarms"] <= 2, key
        assert all(a["monitor"] == a["calibration"] for a in measured["monitor_agreement"]), key
        if key.endswith("+wasserstein"):
            assert measured["shifted"]["after"]["min"] >= 0.9, key
        else:  # the defect: the declared 300-row thresholds at 60 rows
            assert measured["fresh"]["before"]["alarms"] >= 90, key
    shown = (root / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert "\n".join(section(results)) in shown
