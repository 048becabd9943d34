"""The drift monitor judges each column by its declared type and test, keeps the calm sample
batch calm and flags the drifting one by exactly its shifted columns, counts values unseen in
training, and fails clearly instead of ever calling an undefined result "no drift"."""

from __future__ import annotations

import io
import json
import textwrap
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from lifecycle_pipeline.assets.features import FeaturesConfig, split
from lifecycle_pipeline.assets.monitoring import DriftConfig, judge_batch
from lifecycle_pipeline.assets.training import TrainingConfig, fit
from lifecycle_pipeline.contract import parse, validate
from lifecycle_pipeline.declaration import DeclarationError, LoadedDeclaration, parse_declaration
from lifecycle_pipeline.definitions import build_definitions
from lifecycle_pipeline.demo import failed_on_input
from lifecycle_pipeline.lineage.query import check_results, history, latest, metadata_values
from lifecycle_pipeline.lineage.records import (
    DataSnapshot,
    FeatureSet,
    ResolvedVersion,
    TrainedModel,
)
from lifecycle_pipeline.monitoring.drift import (
    APPLIES_TO,
    DRIFTS_WHEN,
    ColumnTest,
    DriftError,
    check_applies,
    compute_drift,
    drift_summary,
    outside_training,
)
from lifecycle_pipeline.resources.artifact_store import ArtifactStore
from tests.conftest import (
    FAST_TRAINING,
    SAMPLE,
    SAMPLE_MODEL,
    Pipeline,
    Registry,
    scratch_pipeline,
    tree_digest,
)
from tests.test_bad_versions import failure_text

# One worker: the module-scoped monitored versions are built once, not once per xdist worker.
pytestmark = pytest.mark.xdist_group("monitoring")

# -- the declared tests, on their own --------------------------------------------------------


def test_each_drift_rule_is_evidentlys_own() -> None:
    """Our verdict per test equals Evidently's implementation below, at and above the score."""
    from evidently.legacy.calculations.stattests.registry import (
        StatTestInvalidFeatureTypeError,
        get_stattest,
    )
    from evidently.legacy.core import ColumnType

    rng = np.random.default_rng(1)
    samples = {
        ColumnType.Numerical: (pd.Series(rng.normal(size=300)), pd.Series(rng.normal(0.3, 1, 300))),
        ColumnType.Categorical: (
            pd.Series(rng.choice(["a", "b"], 300)),
            pd.Series(rng.choice(["a", "b"], 300, p=[0.7, 0.3])),
        ),
    }

    def applicable(kind: ColumnType, method: str) -> bool:
        try:
            get_stattest(*samples[kind], kind, method)
        except StatTestInvalidFeatureTypeError:
            return False
        return True

    for method, rule in DRIFTS_WHEN.items():
        kind = next(k for k in samples if applicable(k, method))
        test = get_stattest(*samples[kind], kind, method)
        with warnings.catch_warnings():  # scipy's deprecation notes inside Evidently's tests
            warnings.simplefilter("ignore", UserWarning)
            score = test(*samples[kind], kind, 0.5).drift_score
            for threshold in (score - 0.01, score, score + 0.01):
                evidently = test(*samples[kind], kind, threshold).drifted
                assert rule(score, threshold) == evidently, (method, score, threshold)


def test_which_test_applies_to_which_kind_is_evidentlys_own() -> None:
    from evidently.legacy.calculations.stattests.registry import _registered_stat_tests
    from evidently.legacy.core import ColumnType

    ours = {"numeric": ColumnType.Numerical, "categorical": ColumnType.Categorical}
    for method, kinds in APPLIES_TO.items():
        allowed = {
            t
            for impl in _registered_stat_tests[method].values()
            for t in impl.allowed_feature_types
        }
        assert {ours[k] for k in kinds} == allowed & set(ours.values()), method
    assert set(APPLIES_TO) == set(DRIFTS_WHEN)

    with pytest.raises(DriftError, match=r"drift.categorical: 'ks' does not apply to categorical"):
        check_applies("ks", "categorical", "drift.categorical")
    with pytest.raises(DriftError, match="'t-test' is not one of Evidently's tests"):
        check_applies("t-test", "numeric", "drift.numeric")


def test_each_column_is_judged_as_its_contract_type_not_as_evidently_guesses() -> None:
    """Evidently left alone calls a 5-valued integer column categorical (Wasserstein refuses it)
    and a mostly-distinct text column free text (every categorical test refuses it)."""
    rng = np.random.default_rng(3)
    n = 300

    def frame(shift: bool) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "visits": rng.integers(0, 5, n) + (2 if shift else 0),
                "postcode": [f"p{i}" for i in rng.integers(0, 250 if not shift else 500, n)],
                "smoker": rng.choice([True, False], n, p=[0.8, 0.2] if shift else [0.2, 0.8]),
                "level": rng.choice(["low", "high"], n).astype(object),
            }
        )

    reference, current = frame(False), frame(True)
    tests = [
        ColumnTest("visits", "numeric", "wasserstein", 0.1, "drift.numeric"),
        ColumnTest("postcode", "categorical", "jensenshannon", 0.1, "drift.categorical"),
        ColumnTest("smoker", "categorical", "chisquare", 0.05, "drift.categorical"),
        ColumnTest("level", "categorical", "chisquare", 0.05, "drift.categorical"),
    ]
    results, _ = compute_drift(reference, current, tests)
    assert {c: r.drifted for c, r in results.items()} == {
        "visits": True,
        "postcode": True,
        "smoker": True,
        "level": False,
    }
    assert results["smoker"].kind == "categorical" and results["smoker"].method == "chisquare"
    with pytest.raises(DriftError, match=r"drift.categorical: 'wasserstein' does not apply"):
        compute_drift(
            reference,
            current,
            [ColumnTest("level", "categorical", "wasserstein", 0.1, "drift.categorical")],
        )


def test_an_undefined_drift_score_is_an_error_never_no_drift() -> None:
    """Evidently's t-test gives NaN on a constant column: that is not a calm column."""
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"constant": np.ones(200), "x": rng.normal(size=200)})
    current = pd.DataFrame({"constant": np.ones(200), "x": rng.normal(size=200)})
    tests = [ColumnTest(c, "numeric", "t_test", 0.05, "drift.numeric") for c in ("constant", "x")]
    with (
        pytest.raises(DriftError, match=r"no finite drift score for constant \(t_test: nan\)"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy on identical constant samples
        compute_drift(reference, current, tests)
    results, _ = compute_drift(reference, current, tests[1:])  # defined: a verdict
    assert results["x"].drifted is False

    current["x"] = np.nan
    with pytest.raises(DriftError, match=r"column 'x' has no values in the batch"):
        compute_drift(reference, current, tests[1:])


MULTICLASS_ATTRIBUTES = """\
name: grades
description: a small multiclass model for tests
data: {path: data/grades.csv}
contract:
  target: grade
  task: multiclass
  row: one pupil
  classes: [{value: 0, name: low}, {value: 1, name: mid}, {value: 2, name: high}]
  features:
    score: {type: numeric}
    year: {type: integer, range: [1, 6]}
    school: {type: categorical}
estimator:
  class: sklearn.tree.DecisionTreeClassifier
  params: {max_depth: 3}
evaluation: {gates: {macro_f1: {min: 0.5}}}
drift:
  numeric: {method: psi, threshold: 0.2}
  categorical: {method: jensenshannon, threshold: 0.1}
"""


def _component(attributes: str) -> str:
    """A declaration as a model's defs.yaml holds it: the component type, then the attributes."""
    return "type: lifecycle_pipeline.LifecycleModel\nattributes:\n" + textwrap.indent(
        attributes, "  "
    )


MULTICLASS = _component(MULTICLASS_ATTRIBUTES)


def _grades(
    rng: np.random.Generator, rows: int, score_mean: float, schools: list[str]
) -> pd.DataFrame:
    score = rng.normal(score_mean, 10, rows)
    return pd.DataFrame(
        {
            "score": score,
            "year": rng.integers(1, 7, rows),
            "school": rng.choice(schools, rows).astype(object),
            "grade": np.digitize(score, [45, 55]),
        }
    )


def _multiclass_reference(text: str = MULTICLASS) -> tuple[Any, Any, pd.DataFrame]:
    model = parse_declaration(text, Path("grades.yaml"))
    rng = np.random.default_rng(5)
    train = _grades(rng, 600, 50, ["a", "b", "c"])
    features = list(model.contract.feature_names)
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    from sklearn.tree import DecisionTreeClassifier

    encode = ColumnTransformer(
        [("school", OneHotEncoder(handle_unknown="ignore"), ["school"])], remainder="passthrough"
    )
    estimator = make_pipeline(encode, DecisionTreeClassifier(max_depth=3, random_state=0))
    estimator.fit(train[features], train["grade"])
    return model, estimator, train


def test_a_multiclass_model_is_watched_through_its_predicted_labels() -> None:
    model, estimator, train = _multiclass_reference()
    rng = np.random.default_rng(6)
    calm = _grades(rng, 300, 50, ["a", "b", "c"])
    moved = _grades(rng, 300, 60, ["a", "b", "c", "d"])  # higher scores, a new school
    verdicts = {}
    for name, batch in (("calm", calm), ("moved", moved)):
        summary, _ = drift_summary(
            train,
            batch,
            model,
            estimator,
            model.drift,
            batch=name,
            batch_md5="-",
            reference_version="v1",
        )
        verdicts[name] = summary
    calm_summary, moved_summary = verdicts["calm"], verdicts["moved"]
    prediction = moved_summary.prediction
    assert (prediction.column, prediction.kind, prediction.method) == (
        "prediction",
        "categorical",
        "jensenshannon",
    )
    assert not calm_summary.prediction.drifted and prediction.drifted
    assert calm_summary.drifted_columns == []
    assert moved_summary.drifted_columns == ["score", "school"]
    assert moved_summary.outside_training.unseen_categories["school"]["values"] == ["d"]

    # A test for numbers cannot judge predicted labels: refused when the declaration loads,
    # naming the setting and its line, before any batch is read.
    numeric_only = _component(
        MULTICLASS_ATTRIBUTES + "  prediction: {method: ks, threshold: 0.001}\n"
    )
    assert numeric_only.splitlines()[21] == "    prediction: {method: ks, threshold: 0.001}"
    with pytest.raises(
        DeclarationError,
        match=r"grades.yaml:22: drift.prediction.method: 'ks' does not apply to categorical",
    ):
        parse_declaration(numeric_only, Path("grades.yaml"))


def test_values_unseen_in_training_are_counted_per_row_and_column() -> None:
    model = parse_declaration(MULTICLASS, Path("grades.yaml"))
    reference = pd.DataFrame(
        {"score": [10.0, 20.0, 30.0], "year": [1, 2, 3], "school": ["a", "b", "a"]}
    )
    current = pd.DataFrame(
        {
            "score": [5.0, 20.0, 31.0, np.nan, 15.0, 40.0],
            "year": [1, 4, 2, 2, 3, 2],
            "school": ["a", "c", "b", None, "e", "c"],
        }
    )
    found = outside_training(reference, current, model.contract, model.drift_columns)
    assert found.batch_rows == 6
    assert found.out_of_range_rows == 4  # rows 0, 1 (year), 2, 5; a missing value is not outside
    assert found.unseen_category_rows == 3  # rows 1, 4, 5
    assert found.rows == 5  # every row but 3 (missing values only), each counted once
    assert found.out_of_range["score"] == {
        "rows": 3,
        "below": 1,
        "above": 2,
        "training_min": 10.0,
        "training_max": 30.0,
        "batch_min": 5.0,
        "batch_max": 40.0,
    }
    assert found.out_of_range["year"]["rows"] == 1
    assert found.unseen_categories == {"school": {"rows": 3, "values": ["c", "e"], "distinct": 2}}
    assert "5 of 6 rows hold values unseen in training" in found.describe()


# -- the sample model on the sample batches ---------------------------------------------------


def _sample_reference(
    sample_dir: Path, declared: LoadedDeclaration, version: str, params: dict[str, Any]
) -> tuple[FeatureSet, TrainedModel]:
    """The features and model the lifecycle makes for ``version``, without Dagster."""
    model = declared.model
    raw = (sample_dir / "versions" / version / Path(model.data.path).name).read_bytes()
    source = f"{version} (test)"
    frame = validate(
        parse(raw, source=source, fmt=model.data.format),
        model.contract,
        source=source,
        declaration=str(declared.path),
    )
    resolved = ResolvedVersion(version, "test", model.data.path, "-", "-", len(raw))
    features = split(DataSnapshot(frame, resolved), FeaturesConfig(), model.contract)
    pipeline, _ = fit(features, TrainingConfig(params=params), model)
    return features, TrainedModel(pipeline, pd.DataFrame(), None, {})  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=[{}, {"n_estimators": 40}], ids=["declared", "fast"])
def sample_verdicts(request: pytest.FixtureRequest, sample_dir: Path) -> dict[str, Any]:
    """The shipped declaration's verdicts on both sample batches against data-v2, for the
    declared forest and the tests' smaller one."""
    declared = SAMPLE_MODEL
    features, model = _sample_reference(sample_dir, declared, "data-v2", request.param)
    verdicts = {}
    for batch in ("batch-001", "batch-002"):
        raw = (sample_dir / "batches" / f"{batch}.csv").read_bytes()
        summary, files = judge_batch(
            declared,
            raw,
            features,
            model,
            batch_key=batch,
            reference_version="data-v2",
            source=f"production batch {batch!r}",
        )
        verdicts[batch] = (summary, json.loads(files["summary.json"]))
    return verdicts


def test_the_calm_sample_batch_stays_calm(sample_verdicts: dict[str, Any]) -> None:
    """No feature and no prediction drift on the batch drawn without a shift (300 rows)."""
    summary, stored = sample_verdicts["batch-001"]
    assert summary.verdict == "no drift" and summary.drifted_columns == []
    assert not summary.prediction.drifted, summary.prediction
    assert stored["verdict"] == "no drift" and stored["prediction"]["drifted"] is False


def test_the_drifting_sample_batch_drifts_in_exactly_its_shifted_columns(
    sample_verdicts: dict[str, Any], sample_dir: Path
) -> None:
    manifest = json.loads((sample_dir / "manifest.json").read_text())
    shifted = manifest["batches"]["batch-002"]["shifted_columns"]
    summary, stored = sample_verdicts["batch-002"]
    assert summary.verdict == "drift"
    assert sorted(summary.drifted_columns) == sorted(shifted)
    assert summary.prediction.drifted, summary.prediction
    # Each verdict records the test that made it.
    by_column = {c["column"]: c for c in stored["columns"]}
    declared = SAMPLE_MODEL.model.drift
    assert {(c["method"], c["threshold"]) for c in by_column.values()} == {
        (declared.numeric.method, declared.numeric.threshold)
    }
    assert stored["prediction"]["column"] == "prediction"
    assert stored["declaration"]["sha256"] == SAMPLE_MODEL.sha256
    outside = stored["outside_training"]
    assert outside["rows"] == summary.outside_training.rows > 0
    assert set(outside["out_of_range"]) >= {"mean_texture", "worst_texture"}


# -- the asset in a real pipeline ------------------------------------------------------------


@pytest.fixture(scope="module")
def monitored(
    demo_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    """A trained data-v1 model and drift results for both demo batches."""
    with scratch_pipeline(demo_registry, tmp_path_factory.mktemp("monitored")) as pipeline:
        assert pipeline.run("data-v1").success
        for batch in ("batch-001", "batch-002"):
            assert pipeline.drift(batch).success
        yield pipeline


def drift_metadata(pipeline: Pipeline, batch: str) -> dict[str, object]:
    return metadata_values(latest(pipeline.instance, pipeline.key("drift_monitor"), batch))


def test_drifting_batch_is_flagged_with_exactly_the_shifted_columns(
    monitored: Pipeline, sample_dir: Path
) -> None:
    manifest = json.loads((sample_dir / "manifest.json").read_text())
    shifted = manifest["batches"]["batch-002"]["shifted_columns"]
    assert manifest["batches"]["batch-001"]["shifted_columns"] == []

    calm, drifting = drift_metadata(monitored, "batch-001"), drift_metadata(monitored, "batch-002")
    assert calm["drift/verdict"] == "no drift" and calm["drift/drifted_columns"] == []
    assert calm["drift/prediction_drifted"] is False
    assert drifting["drift/verdict"] == "drift"
    assert isinstance(drifting["drift/drifted_columns"], list)
    assert sorted(drifting["drift/drifted_columns"]) == sorted(shifted)
    assert drifting["drift/share"] == pytest.approx(len(shifted) / 30)
    assert drifting["reference/version"] == "data-v1"
    declared = SAMPLE_MODEL.model.drift
    tests = drifting["drift/tests"]
    assert isinstance(tests, dict)
    assert tests["numeric"] == declared.numeric.model_dump()
    # Settings are text metadata (the UI plots only what varies), read back as numbers.
    assert float(str(drifting["drift/share_threshold"])) == declared.share_threshold
    assert isinstance(drifting["outside_training/rows"], int)
    assert drifting["outside_training/rows"] >= drifting["outside_training/out_of_range_rows"]  # type: ignore[operator]


def test_drift_check_is_a_warning_and_metadata_is_complete(
    monitored: Pipeline, demo_registry: Registry
) -> None:
    record = latest(monitored.instance, SAMPLE["drift_monitor"], "batch-002")
    assert record is not None
    checks = check_results(monitored.instance, record.run_id)
    check = checks["breast_cancer/drift_monitor:drift_share"]
    assert not check.passed
    assert "mean_texture" in check.description
    evaluation = next(
        e
        for e in monitored.instance.get_records_for_run(
            run_id=record.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
    )
    data = evaluation.event_log_entry.get_dagster_event().event_specific_data
    assert data.severity == dg.AssetCheckSeverity.WARN  # type: ignore[union-attr]

    meta = metadata_values(record)
    registry = demo_registry.resource()
    assert meta["batch/dvc_md5"] == registry.resolve("batch-002", "batches/batch-002.csv").md5
    assert Path(str(meta["artifact/entry"])).name == "report.html"
    assert Path(str(meta["artifact/entry"])).stat().st_size > 10_000
    folder = Path(str(meta["artifact/uri"]))
    assert sorted(p.name for p in folder.iterdir()) == [
        "report.html",
        "snapshot.json",
        "summary.json",
    ]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["prediction"]["column"] == meta["drift/prediction_column"] == "prediction"
    assert summary["batch_md5"] == meta["batch/dvc_md5"]
    assert summary["outside_training"]["rows"] == meta["outside_training/rows"]
    assert isinstance(meta["drift/prediction_score"], float)
    declared = SAMPLE_MODEL
    assert meta["sample/seed"] == str(declared.model.drift.seed)
    assert meta["declaration/sha256"] == declared.sha256
    assert meta["drift/overrides"] == {}
    assert meta["upstream/breast_cancer/trained_model"]["partition"] == "data-v1"


def test_sampling_overrides_are_recorded_and_deterministic(monitored: Pipeline) -> None:
    config = {"sample_cap": 150, "seed": 11}
    first, second = monitored.drift("batch-002", config), monitored.drift("batch-002", config)
    assert first.success and second.success
    runs = history(monitored.instance, SAMPLE["drift_monitor"], "batch-002")[-2:]
    metas = [metadata_values(r) for r in runs]
    assert metas[0]["sample/current_rows"] == metas[0]["sample/reference_rows"] == 150
    assert metas[0]["sample/seed"] == "11" and metas[0]["drift/overrides"] == config
    assert metas[0]["artifact/sha256"] != ""
    tables = [m["drift/columns"] for m in metas]
    assert all(isinstance(t, dg.TableMetadataValue) for t in tables)
    scores = [{r.data["column"]: r.data["score"] for r in t.records} for t in tables]
    assert scores[0] == scores[1]


def test_what_counts_as_drift_is_not_a_run_setting() -> None:
    """Tests and thresholds are the declaration's: a run may pick rows, not the rules."""
    assert set(DriftConfig.model_fields) == {"reference_version", "sample_cap", "seed"}


def _batch_csv(sample_dir: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> bytes:
    frame = pd.read_csv(sample_dir / "batches" / "batch-001.csv")
    buffer = io.StringIO()
    edit(frame).to_csv(buffer, index=False)
    return buffer.getvalue().encode()


@pytest.mark.parametrize(
    ("batch", "edit", "expected"),
    [
        (
            "batch-901",
            lambda f: f.drop(columns=["mean_texture", "se_area"]),
            "column 'mean_texture': required column is missing",
        ),
        (
            "batch-902",
            lambda f: f.astype({"worst_area": object}).assign(worst_area="twelve"),
            "column 'worst_area': declared numeric but holds non-numbers",
        ),
        ("batch-903", lambda f: f.iloc[0:0], "the data has no rows"),
    ],
)
def test_malformed_batch_fails_naming_batch_and_problem_and_keeps_earlier_results(
    registry_copy: Registry,
    sample_dir: Path,
    monitored: Pipeline,
    batch: str,
    edit: Callable[[pd.DataFrame], pd.DataFrame],
    expected: str,
) -> None:
    registry_copy.publish(batch, _batch_csv(sample_dir, edit), target=f"batches/{batch}.csv")
    defs = build_definitions(
        model=SAMPLE_MODEL,
        registry=registry_copy.resource(),
        artifact_store=ArtifactStore(root=str(monitored.artifacts)),
    )
    pipeline = Pipeline(defs=defs, instance=monitored.instance, artifacts=monitored.artifacts)
    drift_artifacts = monitored.artifacts / "breast_cancer" / "drift_monitor"
    assert drift_artifacts.is_dir()  # where the earlier results are: nothing there may change
    before = tree_digest(drift_artifacts)
    earlier = latest(monitored.instance, SAMPLE["drift_monitor"], "batch-002")

    result = pipeline.drift(batch, {"reference_version": "data-v1"})
    assert not result.success
    assert failed_on_input(result)  # `lifecycle drift` exits 2 (refused), not 3 (defect)
    message = failure_text(result)
    assert f"production batch '{batch}'" in message and expected in message, message
    if batch != "batch-903":  # rule problems name the declaration that states the rules
        assert str(SAMPLE_MODEL.path) in message, message
    assert latest(monitored.instance, SAMPLE["drift_monitor"], batch) is None
    assert tree_digest(drift_artifacts) == before
    kept = latest(monitored.instance, SAMPLE["drift_monitor"], "batch-002")
    assert kept is not None and earlier is not None
    assert kept.storage_id == earlier.storage_id


def test_drift_above_threshold_requests_one_retraining_with_the_reason(monitored: Pipeline) -> None:
    # A calm result after the drifting one: the sensor must still see the drift before it.
    assert monitored.drift("batch-001").success
    first = monitored.tick("drift_retraining_sensor")
    assert len(first.run_requests or []) == 1, first.skip_message
    request = (first.run_requests or [])[0]
    assert request.partition_key == "data-v1"
    assert request.run_key and request.run_key.startswith("retrain-after-drift:batch-002@")
    reason = request.tags["lifecycle/reason"]
    assert "drift on production batch batch-002: share 0.100 > 0.05" in reason
    assert "columns: mean_texture, mean_smoothness, worst_texture" in reason
    assert "batch-001" not in request.tags["lifecycle/drift_batches"]

    again = monitored.tick("drift_retraining_sensor", first.cursor)
    assert not again.run_requests and again.skip_message == "no new drift results"

    assert monitored.drift("batch-001").success
    calm = monitored.tick("drift_retraining_sensor", first.cursor)
    assert not calm.run_requests and "no drift in batch(es) batch-001" in (calm.skip_message or "")
    assert calm.cursor != first.cursor


def test_retraining_for_drift_puts_the_reason_in_the_next_model_card(monitored: Pipeline) -> None:
    tick = monitored.tick("drift_retraining_sensor")
    request = (tick.run_requests or [])[0]
    result = monitored.defs.resolve_job_def("breast_cancer_lifecycle").execute_in_process(
        partition_key=request.partition_key,
        instance=monitored.instance,
        run_config=FAST_TRAINING,
        tags=request.tags,
        raise_on_error=False,
    )
    assert result.success
    card = metadata_values(latest(monitored.instance, SAMPLE["model_card"], "data-v1"))[
        "model_card"
    ]
    assert isinstance(card, str)
    assert "drift on production batch batch-002: share 0.100 > 0.05" in card


def test_drift_calibration_draws_against_the_reference_the_monitor_used(
    monitored: Pipeline, demo_registry: Registry
) -> None:
    """`lifecycle drift calibrate` without --data: the version, training split and model the
    monitor chose, and calm batches from held-out rows only (never the reference's own)."""
    from lifecycle_pipeline.assets.features import ROW_ID
    from lifecycle_pipeline.cli_drift import inputs_from_instance
    from lifecycle_pipeline.monitoring.calibration import calibrate, calm_scores
    from lifecycle_pipeline.resources.registry import DataRegistry

    registry = DataRegistry.for_model(SAMPLE_MODEL, DataRegistry(url=str(demo_registry.repo)))
    store = ArtifactStore(root=str(monitored.artifacts))
    inputs = inputs_from_instance(monitored.instance, store, SAMPLE_MODEL, registry, None)
    meta = drift_metadata(monitored, "batch-001")
    assert inputs.description.startswith(f"{meta['reference/version']}: ")
    assert len(inputs.reference) == meta["sample/reference_rows"]
    assert set(inputs.reference[ROW_ID]).isdisjoint(inputs.pool[ROW_ID])

    declared = SAMPLE_MODEL.model.drift
    calm = calm_scores(
        inputs.reference, inputs.pool, SAMPLE_MODEL.model, inputs.estimator, declared,
        batch_size=60, draws=40, seed=0,
    )  # fmt: skip
    assert calm.rates(declared).verdict > 0.5  # the sample's 300-row thresholds at 60 rows
    assert calibrate(calm, declared, false_alarm_rate=0.05).rates.verdict <= 0.05
