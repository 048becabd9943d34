"""The drift monitor flags the shifted batch, names the shifted columns, and fails clearly."""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from lifecycle_pipeline.definitions import build_definitions
from lifecycle_pipeline.demo import failed_on_input
from lifecycle_pipeline.lineage.query import check_results, history, latest, metadata_values
from lifecycle_pipeline.resources.artifact_store import ArtifactStore
from tests.conftest import FAST_TRAINING, Pipeline, Registry, scratch_pipeline, tree_digest
from tests.test_bad_versions import failure_text


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
    return metadata_values(latest(pipeline.instance, "drift_monitor", batch))


def test_drifting_batch_is_flagged_with_exactly_the_shifted_columns(
    monitored: Pipeline, sample_dir: Path
) -> None:
    manifest = json.loads((sample_dir / "manifest.json").read_text())
    shifted = manifest["batches"]["batch-002"]["shifted_columns"]
    assert manifest["batches"]["batch-001"]["shifted_columns"] == []

    calm, drifting = drift_metadata(monitored, "batch-001"), drift_metadata(monitored, "batch-002")
    assert calm["drift/verdict"] == "no drift" and calm["drift/drifted_columns"] == []
    assert drifting["drift/verdict"] == "drift"
    assert isinstance(drifting["drift/drifted_columns"], list)
    assert sorted(drifting["drift/drifted_columns"]) == sorted(shifted)
    assert drifting["drift/share"] == pytest.approx(len(shifted) / 30)
    assert drifting["reference/version"] == "data-v1"
    assert drifting["drift/method"] == "psi"


def test_drift_check_is_a_warning_and_metadata_is_complete(
    monitored: Pipeline, demo_registry: Registry
) -> None:
    record = latest(monitored.instance, "drift_monitor", "batch-002")
    assert record is not None
    check = check_results(monitored.instance, record.run_id)["drift_monitor:drift_share"]
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
    assert summary["prediction"]["column"] == "prediction_probability"
    assert isinstance(meta["drift/prediction_score"], float)
    assert meta["sample/seed"] == 20241122
    assert meta["upstream/trained_model"]["partition"] == "data-v1"


def test_sampling_cap_is_recorded_and_deterministic(monitored: Pipeline) -> None:
    config = {"sample_cap": 150, "seed": 11}
    first, second = monitored.drift("batch-002", config), monitored.drift("batch-002", config)
    assert first.success and second.success
    runs = history(monitored.instance, "drift_monitor", "batch-002")[-2:]
    metas = [metadata_values(r) for r in runs]
    assert metas[0]["sample/current_rows"] == metas[0]["sample/reference_rows"] == 150
    assert metas[0]["artifact/sha256"] != ""
    tables = [m["drift/columns"] for m in metas]
    assert all(isinstance(t, dg.TableMetadataValue) for t in tables)
    scores = [{r.data["column"]: r.data["score"] for r in t.records} for t in tables]
    assert scores[0] == scores[1]


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
            "column 'worst_area': must be numeric",
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
        registry=registry_copy.resource(),
        artifact_store=ArtifactStore(root=str(monitored.artifacts)),
    )
    pipeline = Pipeline(defs=defs, instance=monitored.instance, artifacts=monitored.artifacts)
    before = tree_digest(monitored.artifacts / "drift_monitor")
    earlier = latest(monitored.instance, "drift_monitor", "batch-002")

    result = pipeline.drift(batch, {"reference_version": "data-v1"})
    assert not result.success
    assert failed_on_input(result)  # `lifecycle drift` exits 2 (refused), not 3 (defect)
    message = failure_text(result)
    assert f"production batch '{batch}'" in message and expected in message, message
    assert latest(monitored.instance, "drift_monitor", batch) is None
    assert tree_digest(monitored.artifacts / "drift_monitor") == before
    assert latest(monitored.instance, "drift_monitor", "batch-002").storage_id == earlier.storage_id  # type: ignore[union-attr]


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
    result = monitored.defs.resolve_job_def("lifecycle").execute_in_process(
        partition_key=request.partition_key,
        instance=monitored.instance,
        run_config=FAST_TRAINING,
        tags=request.tags,
        raise_on_error=False,
    )
    assert result.success
    card = metadata_values(latest(monitored.instance, "model_card", "data-v1"))["model_card"]
    assert isinstance(card, str)
    assert "drift on production batch batch-002: share 0.100 > 0.05" in card


def test_each_drift_rule_is_evidentlys_own() -> None:
    """Our verdict per test equals Evidently's implementation below, at and above the score."""
    import numpy as np
    from evidently.legacy.calculations.stattests.registry import (
        StatTestInvalidFeatureTypeError,
        get_stattest,
    )
    from evidently.legacy.core import ColumnType

    from lifecycle_pipeline.monitoring.drift import DRIFTS_WHEN

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


def test_an_undefined_drift_score_is_an_error_never_no_drift() -> None:
    """Evidently's t-test gives NaN on a constant column: that is not a calm column."""
    import numpy as np

    from lifecycle_pipeline.monitoring.drift import DriftError, DriftSettings, compute_drift

    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"constant": np.ones(200), "x": rng.normal(size=200)})
    current = pd.DataFrame({"constant": np.ones(200), "x": rng.normal(size=200)})
    settings = DriftSettings(method="t_test", threshold=0.05)
    with (
        pytest.raises(DriftError, match=r"no finite score for constant \(nan\)"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy on identical constant samples
        compute_drift(reference, current, ["constant", "x"], settings)
    results, _ = compute_drift(reference, current, ["x"], settings)  # defined: a verdict
    assert results["x"].drifted is False
    with pytest.raises(DriftError, match="'t-test' is not one of Evidently's tests"):
        DriftSettings(method="t-test")
