"""The documentation bundle: every section, values equal to the record, gaps never invented."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lifecycle_pipeline.documentation.spec import REQUIRED_FIELDS, SpecError, load_spec
from lifecycle_pipeline.lineage.query import history, latest, metadata_values
from tests.conftest import FAST_TRAINING, PROJECT_ROOT, Pipeline, Registry

SPEC = PROJECT_ROOT / "specs" / "model_card.yaml"
MITCHELL = [
    "Model details",
    "Intended use",
    "Factors",
    "Metrics",
    "Evaluation data",
    "Training data",
    "Quantitative analyses",
    "Ethical considerations",
    "Caveats and recommendations",
]
GEBRU = [
    "Motivation",
    "Composition",
    "Collection process",
    "Preprocessing, cleaning, labelling",
    "Uses",
    "Distribution",
    "Maintenance",
]
ANNEX_IV = [
    "1. General description",
    "2. Development process and design choices",
    "3. Compute used",
    "4. Data provenance",
    "5. Validation and test results",
    "6. Risk management",
    "7. Post-market monitoring plan",
    "8. Changes over the lifecycle",
]


def bundle(pipeline: Pipeline, key: str = "data-v1") -> tuple[dict[str, Any], Path]:
    record = metadata_values(latest(pipeline.instance, "model_card", key))
    folder = Path(record["artifact/uri"])
    return json.loads((folder / "bundle.json").read_text()), folder


def rows(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["label"]: r for s in document["sections"] for r in s["rows"]}


@pytest.fixture
def documented(
    demo_registry: Registry, pipeline_factory: Callable[[Registry], Pipeline]
) -> Pipeline:
    pipeline = pipeline_factory(demo_registry)
    assert pipeline.run("data-v1").success
    return pipeline


def test_every_section_is_present_and_the_demo_spec_has_no_gaps(documented: Pipeline) -> None:
    record, folder = bundle(documented)
    card, sheet, annex = record["documents"]
    assert [s["title"] for s in card["sections"]][: len(MITCHELL)] == MITCHELL
    assert [s["title"] for s in sheet["sections"]] == GEBRU
    assert [s["title"].split(" (")[0] for s in annex["sections"]] == ANNEX_IV
    assert card["sections"][-1]["title"] == "What changed since the previous version"
    # The spec fills every human field; the only gap is the run's missing retraining reason.
    assert [g for g in record["gaps"] if "Reason for retraining" not in g] == []
    assert any("no `lifecycle/reason` tag" in g for g in record["gaps"])
    markdown = (folder / "model_card.md").read_text()
    for title in MITCHELL:
        assert f"## {title}" in markdown
    html = (folder / "documentation.html").read_text()
    assert "<h2>Datasheet</h2>" in html and "<h2>Technical documentation</h2>" in html


def test_card_values_equal_what_the_instance_recorded(documented: Pipeline) -> None:
    record, _ = bundle(documented)
    card, sheet, annex = (rows(d) for d in record["documents"])
    model = latest(documented.instance, "trained_model", "data-v1")
    snapshot = latest(documented.instance, "data_snapshot", "data-v1")
    evaluation = latest(documented.instance, "evaluation", "data-v1")
    assert model is not None and snapshot is not None and evaluation is not None
    model_md, snapshot_md, evaluation_md = (
        metadata_values(r) for r in (model, snapshot, evaluation)
    )

    assert card["Model fingerprint"]["value"] == model_md["model/fingerprint"]
    assert card["Model fingerprint"]["source"] == {
        "asset": "trained_model",
        "partition": "data-v1",
        "run_id": model.run_id,
    }
    assert card["Hyperparameters"]["value"] == model_md["hyperparameters"]
    assert card["Code commit"]["value"] == model_md["code/commit"]
    assert sheet["Content digest (DVC md5)"]["value"] == snapshot_md["dvc/md5"]
    assert sheet["Instances (rows)"]["value"] == snapshot_md["dagster/row_count"]
    assert sheet["Content digest (DVC md5)"]["source"]["run_id"] == snapshot.run_id
    for metric in ("accuracy", "f1", "roc_auc", "recall", "brier"):
        assert annex[metric]["value"] == evaluation_md[f"metric/{metric}"]
        assert annex[metric]["source"]["run_id"] == evaluation.run_id
    # Every non-gap row names where its value came from.
    for document in record["documents"]:
        for row in rows(document).values():
            assert row["gap"] or row["source"], row["label"]
    # The Markdown shown in the UI is the stored one.
    card_md = metadata_values(latest(documented.instance, "model_card", "data-v1"))["model_card"]
    assert model_md["model/fingerprint"] in card_md


def test_removed_required_field_is_a_named_gap_and_still_materializes(
    demo_registry: Registry, pipeline_factory: Callable[[Registry], Pipeline], tmp_path: Path
) -> None:
    import yaml

    spec = yaml.safe_load(SPEC.read_text())
    del spec["governance"]["responsible_person"]
    del spec["data"]["anonymisation"]
    edited = tmp_path / "spec.yaml"
    edited.write_text(yaml.safe_dump(spec))
    pipeline = pipeline_factory(demo_registry)
    config = {"ops": {**FAST_TRAINING["ops"], "model_card": {"config": {"spec_path": str(edited)}}}}
    assert pipeline.run("data-v1", run_config=config).success

    record, folder = bundle(pipeline)
    assert any("governance.responsible_person" in g for g in record["gaps"])
    assert any("data.anonymisation" in g for g in record["gaps"])
    annex = rows(record["documents"][2])
    assert annex["Responsible person"]["value"] is None
    assert "governance.responsible_person" in annex["Responsible person"]["gap"]
    assert "**GAP**" in (folder / "technical_documentation.md").read_text()
    metadata = metadata_values(latest(pipeline.instance, "model_card", "data-v1"))
    assert metadata["gaps/count"] == len(record["gaps"]) >= 3  # anonymisation appears twice


def test_what_changed_names_hyperparameters_metric_deltas_and_reason(
    demo_registry: Registry, pipeline_factory: Callable[[Registry], Pipeline]
) -> None:
    pipeline = pipeline_factory(demo_registry)
    assert pipeline.run("data-v1").success
    changed = {"ops": {"trained_model": {"config": {"n_estimators": 60}}}}
    job = pipeline.defs.resolve_job_def("lifecycle")
    result = job.execute_in_process(
        partition_key="data-v1",
        instance=pipeline.instance,
        run_config=changed,
        tags={"lifecycle/reason": "drift on batch-002 (mean_texture)"},
    )
    assert result.success
    record, _ = bundle(pipeline)
    section = record["documents"][0]["sections"][-1]
    labels = {r["label"]: r for r in section["rows"]}
    assert labels["Reason for retraining"]["value"] == "drift on batch-002 (mean_texture)"
    elements = {row[0]: row for row in section["tables"][0]["rows"]}
    assert elements["hyperparameters"][3] is True
    assert elements["data md5"][3] is False
    assert elements["hyperparameters"][1]["n_estimators"] == 40
    assert elements["hyperparameters"][2]["n_estimators"] == 60
    deltas = {row[0]: row for row in section["tables"][1]["rows"]}
    assert set(deltas) >= {"accuracy", "f1", "roc_auc"}
    # Both columns are the metrics the two evaluations recorded, read here from the instance.
    first, second = (
        metadata_values(r) for r in history(pipeline.instance, "evaluation", "data-v1")
    )
    for name, before, after, delta in deltas.values():
        assert (before, after) == (first[f"metric/{name}"], second[f"metric/{name}"]), name
        assert delta == pytest.approx(second[f"metric/{name}"] - first[f"metric/{name}"])
    assert any(delta != 0 for *_, delta in deltas.values())  # 40 vs 60 trees: metrics moved


def test_spec_requires_every_listed_field_and_rejects_malformed_fields(tmp_path: Path) -> None:
    assert load_spec(SPEC).gaps == ()
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert set(load_spec(empty).gaps) == set(REQUIRED_FIELDS)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  owners: just a string\n")
    with pytest.raises(SpecError, match=r"model\.owners"):
        load_spec(bad)
    bad.write_text("modle:\n  name: typo\n")
    with pytest.raises(SpecError, match="modle"):
        load_spec(bad)


def test_a_spec_path_that_does_not_exist_is_an_error_naming_where_it_was_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in the spec path must not document a model as all gaps."""
    from lifecycle_pipeline.assets.documentation import ModelCardConfig

    typo = tmp_path / "model_crad.yaml"
    monkeypatch.setenv("LIFECYCLE_MODEL_CARD_SPEC", str(typo))
    with pytest.raises(SpecError, match=r"named by \$LIFECYCLE_MODEL_CARD_SPEC cannot be read"):
        load_spec(*ModelCardConfig().resolved_spec_path())
    with pytest.raises(SpecError, match=r"named by run config ops\.model_card\.config\.spec_path"):
        load_spec(*ModelCardConfig(spec_path=str(typo)).resolved_spec_path())
    monkeypatch.delenv("LIFECYCLE_MODEL_CARD_SPEC")
    assert ModelCardConfig().resolved_spec_path()[0] == SPEC


def test_a_missing_spec_fails_model_card_and_records_nothing(
    demo_registry: Registry, pipeline_factory: Callable[[Registry], Pipeline], tmp_path: Path
) -> None:
    pipeline = pipeline_factory(demo_registry)
    typo = tmp_path / "model_crad.yaml"
    config = {"ops": {**FAST_TRAINING["ops"], "model_card": {"config": {"spec_path": str(typo)}}}}
    result = pipeline.run("data-v1", run_config=config)
    assert not result.success
    [failure] = [e for e in result.get_step_failure_events() if e.step_key == "model_card"]
    assert f"{typo}: the model-card spec named by run config" in str(
        failure.step_failure_data.error
    )
    assert latest(pipeline.instance, "model_card", "data-v1") is None
    assert latest(pipeline.instance, "evaluation", "data-v1") is not None  # only the card failed


def test_an_untraceable_previous_version_is_a_gap_never_a_first_version(
    demo_registry: Registry, pipeline_factory: Callable[[Registry], Pipeline]
) -> None:
    """An earlier model whose lineage is gone must not be documented as "first version"."""
    pipeline = pipeline_factory(demo_registry)
    trained = pipeline.run("data-v1", selection=["data_snapshot", "features", "trained_model"])
    assert trained.success
    assert pipeline.run("data-v1", run_config={}, selection=["evaluation"]).success
    pipeline.instance.delete_run(trained.run_id)  # the earlier evaluation's upstream is gone
    changed = {"ops": {"trained_model": {"config": {"n_estimators": 60}}}}
    assert pipeline.run("data-v1", run_config=changed).success

    record, _ = bundle(pipeline)
    section = record["documents"][0]["sections"][-1]
    previous = {r["label"]: r for r in section["rows"]}["Previous version"]
    assert previous["value"] is None
    assert "exists but its lineage cannot be traced" in previous["gap"]
    assert any("Previous version: the previous version" in g for g in record["gaps"])
    meta = metadata_values(latest(pipeline.instance, "model_card", "data-v1"))
    assert str(meta["previous_version"]).startswith("untraceable: evaluation@data-v1")
