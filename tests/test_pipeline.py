"""Acceptance: two data versions through all four stages, read back from the instance."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lifecycle_pipeline.lineage.query import (
    check_results,
    history,
    latest,
    metadata_values,
    summarize,
)
from tests.conftest import SAMPLE, SAMPLE_MODEL, Pipeline, Registry, scratch_pipeline

# One worker: the module-scoped two versions are materialized once, not once per xdist worker.
pytestmark = pytest.mark.xdist_group("pipeline")

# Check names carry the asset's full key.
REPRODUCIBLE = "breast_cancer/trained_model:reproducible"


@pytest.fixture(scope="module")
def two_versions(
    demo_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    """data-v1 and data-v2 through the whole lifecycle once, read by the tests below."""
    with scratch_pipeline(demo_registry, tmp_path_factory.mktemp("two_versions")) as pipeline:
        for key in ("data-v1", "data-v2"):
            assert pipeline.run(key).success, key
        yield pipeline


def test_two_versions_materialize_with_lineage_read_back(
    demo_registry: Registry, two_versions: Pipeline
) -> None:
    pipeline = two_versions
    resolved = {k: demo_registry.resource().resolve(k) for k in ("data-v1", "data-v2")}
    rows = {k: summarize(pipeline.instance, SAMPLE_MODEL.name, k) for k in resolved}
    for key, version in resolved.items():
        row = rows[key]
        assert row is not None
        assert row.md5 == version.md5
        assert row.commit == version.commit
        assert len(row.fingerprint) == 64
        assert set(row.metrics) == {
            "accuracy",
            "precision",
            "recall",
            "f1",
            "roc_auc",
            "brier",
            "ece",
        }
        assert 0.9 < row.metrics["roc_auc"] <= 1.0
        assert row.verdict == "PASS"
    assert rows["data-v1"].md5 != rows["data-v2"].md5  # type: ignore[union-attr]
    assert rows["data-v1"].fingerprint != rows["data-v2"].fingerprint  # type: ignore[union-attr]

    # Dagster's own data versions differ per data version and equal the DVC md5.
    for key, version in resolved.items():
        record = latest(pipeline.instance, pipeline.key("data_snapshot"), key)
        assert record is not None
        tags = record.event_log_entry.dagster_event.event_specific_data.materialization.tags
        assert tags["dagster/data_version"] == version.md5


def test_each_stage_records_the_exact_upstream_artifact(two_versions: Pipeline) -> None:
    pipeline = two_versions
    snapshot = metadata_values(latest(pipeline.instance, SAMPLE["data_snapshot"], "data-v1"))
    features = metadata_values(latest(pipeline.instance, SAMPLE["features"], "data-v1"))
    model = metadata_values(latest(pipeline.instance, SAMPLE["trained_model"], "data-v1"))
    evaluation = metadata_values(latest(pipeline.instance, SAMPLE["evaluation"], "data-v1"))

    # Upstream artifacts are named by their full key: the model's prefix and the stage.
    assert features["upstream/breast_cancer/data_snapshot"]["sha256"] == snapshot["artifact/sha256"]
    assert model["upstream/breast_cancer/features"]["sha256"] == features["artifact/sha256"]
    assert evaluation["upstream/breast_cancer/trained_model"]["sha256"] == model["artifact/sha256"]
    assert evaluation["model/fingerprint"] == model["model/fingerprint"]
    # Artifacts live at content-addressed paths under the model's key and the partition.
    assert model["artifact/uri"].endswith(
        f"/breast_cancer/trained_model/data-v1/{model['artifact/sha256']}.zip"
    )
    # Training lineage carries every element of the lineage tuple.
    lineage = model["lineage"]
    assert lineage["data_md5"] == snapshot["dvc/md5"]
    assert set(lineage["code"]) == {"commit", "dirty", "source_digest", "lock_hash"}
    assert len(lineage["code"]["lock_hash"]) == 64
    assert model["hyperparameters"]["n_estimators"] == 40
    assert {"scikit-learn", "numpy", "pandas", "python"} <= set(model["env/libraries"])
    # Column schema and null counts on the snapshot.
    schema = snapshot["dagster/column_schema"]
    assert len(schema.columns) == 31
    assert sum(snapshot["null_counts"].values()) == 0
    assert features["train/rows"] + features["test/rows"] == snapshot["dagster/row_count"]


def test_rematerializing_reproduces_fingerprint_and_prediction_digest(
    demo_registry: Registry, pipeline_factory: Callable[[Registry], Pipeline]
) -> None:
    pipeline = pipeline_factory(demo_registry)
    first = pipeline.run("data-v1")
    second = pipeline.run("data-v1")
    assert first.success and second.success

    trained = history(pipeline.instance, SAMPLE["trained_model"], "data-v1")
    models = [metadata_values(r) for r in trained]
    assert len(models) == 2
    assert models[0]["model/fingerprint"] == models[1]["model/fingerprint"]
    assert models[0]["model/prediction_digest"] == models[1]["model/prediction_digest"]
    assert models[0]["model/state_digest"] == models[1]["model/state_digest"]

    check = check_results(pipeline.instance, second.run_id)[REPRODUCIBLE]
    assert check.passed
    assert check.metadata["compared_run"] == first.run_id

    evaluations = [
        metadata_values(r) for r in history(pipeline.instance, SAMPLE["evaluation"], "data-v1")
    ]
    # Evaluation and its inputs are byte-identical, so the store keeps one artifact.
    assert evaluations[0]["artifact/sha256"] == evaluations[1]["artifact/sha256"]


def test_changed_hyperparameter_is_a_new_version_not_a_failure(
    demo_registry: Registry, pipeline_factory: Callable[[Registry], Pipeline]
) -> None:
    pipeline = pipeline_factory(demo_registry)
    assert pipeline.run("data-v1").success
    changed = {"ops": {pipeline.op("trained_model"): {"config": {"params": {"n_estimators": 41}}}}}
    assert pipeline.op("trained_model") == "breast_cancer__trained_model"
    result = pipeline.run("data-v1", run_config=changed)
    assert result.success
    check = check_results(pipeline.instance, result.run_id)[REPRODUCIBLE]
    assert check.passed
    assert check.metadata["changed_inputs"] == ["config_hash"]
    fingerprints = {
        metadata_values(r)["model/fingerprint"]
        for r in history(pipeline.instance, SAMPLE["trained_model"], "data-v1")
    }
    assert len(fingerprints) == 2


def test_without_a_lock_reproducibility_is_unknown_never_identical(
    demo_registry: Registry,
    pipeline_factory: Callable[[Registry], Pipeline],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two trainings outside a checkout with no uv.lock: same inputs as far as anyone can
    tell, but the environment is unidentified, so the check warns "unknown"."""
    monkeypatch.setenv("LIFECYCLE_PROJECT_ROOT", str(tmp_path))  # no uv.lock, no git
    monkeypatch.setenv("LIFECYCLE_MODEL", str(SAMPLE_MODEL.path))  # nor models/
    pipeline = pipeline_factory(demo_registry)
    training = [SAMPLE[s] for s in ("data_snapshot", "features", "trained_model", "evaluation")]
    first = pipeline.run("data-v1", selection=training)
    second = pipeline.run("data-v1", selection=training)
    assert first.success and second.success  # a warning, not a failure: the model is usable
    trained = history(pipeline.instance, SAMPLE["trained_model"], "data-v1")
    models = [metadata_values(r) for r in trained]
    assert [m["env/lock_hash"] for m in models] == ["unknown", "unknown"]
    for run in (first, second):
        check = check_results(pipeline.instance, run.run_id)[REPRODUCIBLE]
        assert not check.passed and check.metadata["verdict"] == "unknown"
        assert "Reproducibility unknown: no uv.lock" in check.description
        assert "compared_run" not in check.metadata  # "unknown" == "unknown" proves nothing
    row = summarize(pipeline.instance, SAMPLE_MODEL.name, "data-v1")
    assert row is not None and row.reproduced == "unknown"


def test_a_reproduction_with_an_unidentified_element_is_unknown_never_identical() -> None:
    from lifecycle_pipeline.reproduce import Element, ReproductionReport

    def report(*elements: Element) -> ReproductionReport:
        return ReproductionReport("data-v1", "run", "current", "c" * 40, ".", list(elements))

    same = Element("fingerprint.combined", "f" * 64, "f" * 64)
    unknown = report(same, Element("code.lock_hash", "unknown", "unknown"))
    assert not unknown.identical and unknown.verdict == "unknown: not identified: code.lock_hash"
    assert unknown.to_dict()["elements"][1]["same"] is None
    assert "unknown" in unknown.render().splitlines()[-2]  # the lock row says so
    different = report(Element("code.lock_hash", "unknown", "a" * 64),
                       Element("fingerprint.combined", "f" * 64, "e" * 64))  # fmt: skip
    assert different.verdict == "different: fingerprint.combined"
    assert report(same).verdict == "identical"
