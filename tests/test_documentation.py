"""The documentation bundle: every section, values equal to the record, gaps never invented,
and every domain word taken from the model's declaration."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from lifecycle_pipeline.declaration import (
    COMPONENT_TYPE,
    DECLARATION_FILE,
    LoadedDeclaration,
    load_declaration,
)
from lifecycle_pipeline.definitions import build_definitions
from lifecycle_pipeline.documentation.spec import REQUIRED_FIELDS, SpecError, load_spec
from lifecycle_pipeline.lineage.query import check_results, history, latest, metadata_values
from lifecycle_pipeline.resources.artifact_store import ArtifactStore
from tests.conftest import (
    FAST_TRAINING,
    PROJECT_ROOT,
    Pipeline,
    Registry,
    scratch_pipeline,
)

# One worker: the module-scoped documented run is made once, not once per xdist worker.
pytestmark = pytest.mark.xdist_group("documentation")

SAMPLE = PROJECT_ROOT / "models" / "breast_cancer" / DECLARATION_FILE
SPEC = PROJECT_ROOT / "models" / "breast_cancer" / "model_card.yaml"
SAMPLE_WORDS = ("malignant", "benign", "breast", "tumour", "mean_radius")
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
    record = metadata_values(latest(pipeline.instance, pipeline.key("model_card"), key))
    folder = Path(record["artifact/uri"])
    return json.loads((folder / "bundle.json").read_text()), folder


def rows(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["label"]: r for s in document["sections"] for r in s["rows"]}


@pytest.fixture(scope="module")
def documented(
    demo_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    """data-v1 through the whole lifecycle once; the tests that only read its bundle share it."""
    with scratch_pipeline(demo_registry, tmp_path_factory.mktemp("documented")) as pipeline:
        assert pipeline.run("data-v1").success
        yield pipeline


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
    model = latest(documented.instance, documented.key("trained_model"), "data-v1")
    snapshot = latest(documented.instance, documented.key("data_snapshot"), "data-v1")
    evaluation = latest(documented.instance, documented.key("evaluation"), "data-v1")
    assert model is not None and snapshot is not None and evaluation is not None
    model_md, snapshot_md, evaluation_md = (
        metadata_values(r) for r in (model, snapshot, evaluation)
    )

    assert card["Model fingerprint"]["value"] == model_md["model/fingerprint"]
    assert card["Model fingerprint"]["source"] == {
        "asset": "breast_cancer/trained_model",
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
    # Domain wording is the declaration's, cited with the declaration's digest.
    declaration = load_declaration(SAMPLE)
    assert card["Decision threshold (P(malignant))"]["value"] == evaluation_md["decision_threshold"]
    assert card["precision"]["value"] == "share of predicted malignant that are malignant"
    assert card["What one row is"]["value"] == declaration.model.contract.row
    assert card["Estimator (import path)"]["value"] == "sklearn.ensemble.RandomForestClassifier"
    assert card["Declaration at training (sha256)"]["value"] == declaration.sha256
    assert card["What one row is"]["source"]["sha256"] == declaration.sha256
    counts = snapshot_md["class_counts"]
    assert sheet["Label balance (rows per class)"]["value"].startswith(
        f"benign: {counts['0']} of {snapshot_md['dagster/row_count']}"
    )
    assert record["declaration"] == {
        "name": "breast_cancer",
        "path": "models/breast_cancer/defs.yaml",
        "sha256": declaration.sha256,
    }
    slices = next(
        t
        for s in record["documents"][0]["sections"]
        for t in s["tables"]
        if t["columns"][0] == "slice"
    )
    assert {r[0] for r in slices["rows"]} <= {
        "tumour size = small (<12mm)",
        "tumour size = medium (12-15mm)",
        "tumour size = large (>=15mm)",
    }
    # Every non-gap row names where its value came from.
    for document in record["documents"]:
        for row in rows(document).values():
            assert row["gap"] or row["source"], row["label"]
    # The Markdown shown in the UI is the stored one.
    card_md = metadata_values(latest(documented.instance, documented.key("model_card"), "data-v1"))[
        "model_card"
    ]
    assert model_md["model/fingerprint"] in card_md


def test_removed_required_field_is_a_named_gap_and_still_materializes(
    demo_registry: Registry, pipeline_factory: Callable[[Registry], Pipeline], tmp_path: Path
) -> None:
    spec = yaml.safe_load(SPEC.read_text())
    del spec["governance"]["responsible_person"]
    del spec["data"]["anonymisation"]
    edited = tmp_path / "spec.yaml"
    edited.write_text(yaml.safe_dump(spec))
    pipeline = pipeline_factory(demo_registry)
    config = {
        "ops": {
            **FAST_TRAINING["ops"],
            pipeline.op("model_card"): {"config": {"spec_path": str(edited)}},
        }
    }
    assert pipeline.run("data-v1", run_config=config).success

    record, folder = bundle(pipeline)
    assert any("governance.responsible_person" in g for g in record["gaps"])
    assert any("data.anonymisation" in g for g in record["gaps"])
    annex = rows(record["documents"][2])
    assert annex["Responsible person"]["value"] is None
    assert "governance.responsible_person" in annex["Responsible person"]["gap"]
    assert "**GAP**" in (folder / "technical_documentation.md").read_text()
    metadata = metadata_values(latest(pipeline.instance, pipeline.key("model_card"), "data-v1"))
    assert metadata["gaps/count"] == len(record["gaps"]) >= 3  # anonymisation appears twice


def test_what_changed_names_hyperparameters_metric_deltas_and_reason(
    demo_registry: Registry, pipeline_factory: Callable[[Registry], Pipeline]
) -> None:
    pipeline = pipeline_factory(demo_registry)
    assert pipeline.run("data-v1").success
    changed = {"ops": {pipeline.op("trained_model"): {"config": {"params": {"n_estimators": 60}}}}}
    job = pipeline.defs.resolve_job_def(pipeline.model.scoped("lifecycle"))
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
    assert elements["declaration sha256"][3] is False
    assert elements["hyperparameters"][1]["n_estimators"] == 40
    assert elements["hyperparameters"][2]["n_estimators"] == 60
    deltas = {row[0]: row for row in section["tables"][1]["rows"]}
    assert set(deltas) >= {"accuracy", "f1", "roc_auc"}
    # Both columns are the metrics the two evaluations recorded, read here from the instance.
    first, second = (
        metadata_values(r)
        for r in history(pipeline.instance, pipeline.key("evaluation"), "data-v1")
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


def test_the_spec_comes_from_the_declaration_and_a_missing_one_names_where_it_was_set(
    tmp_path: Path,
) -> None:
    """A typo in the spec path must not document a model as all gaps; the error says whether
    the run config or the declaration file named the path."""
    from lifecycle_pipeline.assets.documentation import ModelCardConfig

    sample = load_declaration(SAMPLE)
    assert ModelCardConfig().resolved_spec_path(sample)[0] == SPEC
    declaration = tmp_path / DECLARATION_FILE
    declaration.write_text(
        SAMPLE.read_text().replace("spec: model_card.yaml", "spec: model_crad.yaml")
    )
    moved = load_declaration(declaration)
    typo = tmp_path / "model_crad.yaml"
    assert ModelCardConfig().resolved_spec_path(moved)[0] == typo
    expected = (
        f"{typo}: the model-card spec named by documentation.spec in the declaration "
        f"{declaration} cannot be read"
    )
    with pytest.raises(SpecError, match=re.escape(expected)):
        load_spec(*ModelCardConfig().resolved_spec_path(moved))
    with pytest.raises(
        SpecError, match=r"named by run config ops\.breast_cancer__model_card\.config\.spec_path"
    ):
        load_spec(*ModelCardConfig(spec_path=str(typo)).resolved_spec_path(sample))
    # The run config replaces the declared spec for one run.
    override = ModelCardConfig(spec_path=str(SPEC)).resolved_spec_path(moved)
    assert load_spec(*override).gaps == ()


def test_a_missing_spec_fails_model_card_and_records_nothing(
    demo_registry: Registry, pipeline_factory: Callable[[Registry], Pipeline], tmp_path: Path
) -> None:
    pipeline = pipeline_factory(demo_registry)
    typo = tmp_path / "model_crad.yaml"
    config = {
        "ops": {
            **FAST_TRAINING["ops"],
            pipeline.op("model_card"): {"config": {"spec_path": str(typo)}},
        }
    }
    result = pipeline.run("data-v1", run_config=config)
    assert not result.success
    [failure] = [
        e for e in result.get_step_failure_events() if e.step_key == pipeline.op("model_card")
    ]
    assert f"{typo}: the model-card spec named by run config" in str(
        failure.step_failure_data.error
    )
    assert latest(pipeline.instance, pipeline.key("model_card"), "data-v1") is None
    # only the card failed
    assert latest(pipeline.instance, pipeline.key("evaluation"), "data-v1") is not None


def test_an_untraceable_previous_version_is_a_gap_never_a_first_version(
    demo_registry: Registry, pipeline_factory: Callable[[Registry], Pipeline]
) -> None:
    """An earlier model whose lineage is gone must not be documented as "first version"."""
    pipeline = pipeline_factory(demo_registry)
    upstream = [pipeline.key(s) for s in ("data_snapshot", "features", "trained_model")]
    trained = pipeline.run("data-v1", selection=upstream)
    assert trained.success
    assert pipeline.run("data-v1", run_config={}, selection=[pipeline.key("evaluation")]).success
    pipeline.instance.delete_run(trained.run_id)  # the earlier evaluation's upstream is gone
    changed = {"ops": {pipeline.op("trained_model"): {"config": {"params": {"n_estimators": 60}}}}}
    assert pipeline.run("data-v1", run_config=changed).success

    record, _ = bundle(pipeline)
    section = record["documents"][0]["sections"][-1]
    previous = {r["label"]: r for r in section["rows"]}["Previous version"]
    assert previous["value"] is None
    assert "exists but its lineage cannot be traced" in previous["gap"]
    assert any("Previous version: the previous version" in g for g in record["gaps"])
    meta = metadata_values(latest(pipeline.instance, pipeline.key("model_card"), "data-v1"))
    assert str(meta["previous_version"]).startswith("untraceable: breast_cancer/evaluation@data-v1")


# -- unit: documents built from hand-made lineage, for every task --------------------------------

REGRESSION = """
name: flat_prices
description: Estimates the asking price of a flat from its listing, to flag outliers.
data: {path: data/flats.csv}
contract:
  target: price
  task: regression
  row: one flat listed for sale
  target_unit: EUR
  features:
    area: {type: numeric, range: [10, 500], unit: m², description: living area}
    rooms: {type: integer, range: [1, null]}
    district: {type: categorical, categories: [north, south]}
    lift: {type: boolean, nullable: true, description: the building has a lift}
  drop: [listing_id]
estimator:
  {class: sklearn.linear_model.Ridge, params: {alpha: 2.0}, impute: median,
   trusted_types: [numpy.dtype]}
evaluation:
  gates: {rmse: {max: 50000}, r2: {min: 0.5}}
  slices:
    - {column: district, name: city district}
    - {column: area, name: flat size, bins: [60], labels: [compact, spacious]}
documentation: {spec: card.yaml}
"""

MULTICLASS = """
name: iris_species
description: Names the species of an iris flower from two petal measurements.
data: {path: data/iris.csv}
contract:
  target: species
  task: multiclass
  row: one iris flower, measured by hand
  classes:
    - {value: 0, name: setosa}
    - {value: 1, name: versicolor}
    - {value: 2, name: virginica}
  features:
    petal_length: {type: numeric, range: [0, null], unit: cm}
    petal_width: {type: numeric, range: [0, null], unit: cm}
estimator: {class: sklearn.linear_model.LogisticRegression, params: {max_iter: 500}}
evaluation:
  gates: {macro_f1: {min: 0.8}, recall/virginica: {min: 0.7}}
  slices: [{column: petal_length, name: petal length, bins: [2.5, 5]}]
documentation: {spec: card.yaml}
"""


def _materialization(asset: str, metadata: dict[str, Any]) -> Any:
    from lifecycle_pipeline.lineage.trace import Materialization

    return Materialization(asset, "data-v1", f"run-{asset}-0000", 1, time.time(), metadata)


def _lineage(model: LoadedDeclaration, rows: int = 12, seed: int = 3) -> Any:
    """What the four upstream assets record, built from the task's own scoring (no pipeline)."""
    from lifecycle_pipeline.assets.evaluation import slice_masks, slice_table
    from lifecycle_pipeline.documentation.bundle import Lineage
    from lifecycle_pipeline.gates import gate_check_name
    from lifecycle_pipeline.lineage.records import GateVerdict
    from lifecycle_pipeline.tasks import task_for

    declared = model.model
    contract = declared.contract
    task = task_for(contract.task)
    rng = np.random.default_rng(seed)
    test = pd.DataFrame(
        {
            name: rng.choice(list(f.categories or ("a",)), rows)
            if f.type == "categorical"
            else rng.uniform(0.5, 120, rows)
            for name, f in contract.features.items()
        }
    )
    classes = [c.value for c in contract.classes or ()]
    if classes:
        y_true = np.resize(np.asarray(classes), rows)
        raw = rng.dirichlet(np.ones(len(classes)), rows)
    else:
        y_true = rng.uniform(1e5, 5e5, rows)
        raw = y_true + rng.normal(0, 2e4, rows)
    score = lambda m: task.score(y_true[m], raw[m], classes, contract, declared.evaluation)  # noqa: E731
    overall = score(np.ones(rows, dtype=bool))
    slices = {
        name: score(mask)
        for item in declared.evaluation.slices
        for name, mask in slice_masks(test, item).items()
        if mask.any()
    }
    gates = [
        GateVerdict(gate_check_name(m), m, float(overall[m]), g.threshold, g.comparison).to_dict()
        for m, g in declared.evaluation.gates.items()
    ]
    factor = ", ".join(s.title for s in declared.evaluation.slices)
    counts = {str(v): int((y_true == v).sum()) for v in classes} if classes else None
    columns = dg.TableSchema(
        columns=[dg.TableColumn(n, f.type, f.description) for n, f in contract.features.items()]
    )
    return Lineage(
        snapshot=_materialization(
            model.asset("data_snapshot"),
            {
                "dagster/row_count": rows * 4,
                "dagster/column_schema": columns,
                "null_counts": dict.fromkeys(contract.features, 0),
                "dvc/md5": "0" * 32,
                **({"class_counts": counts} if counts else {}),
            },
        ),
        features=_materialization(
            model.asset("features"),
            {"feature_columns": list(contract.features), "test/rows": rows, "train/rows": rows * 3},
        ),
        model=_materialization(
            model.asset("trained_model"),
            {
                "hyperparameters": {
                    "estimator": declared.estimator.class_,
                    **declared.estimator.params,
                },
                "declaration/sha256": model.sha256,
                "lineage": {"estimator": {"class": declared.estimator.class_, "trusted_types": []}},
                "model/fingerprint": "f" * 64,
            },
        ),
        evaluation=_materialization(
            model.asset("evaluation"),
            {
                **{f"metric/{k}": v for k, v in overall.items() if k != "rows" and v is not None},
                "slices": slice_table(slices, factor),
                "slice_factor": factor,
                "task": contract.task,
                **(
                    {"decision_threshold": declared.evaluation.decision_threshold}
                    if contract.task == "binary"
                    else {}
                ),
                "gates": gates,
                "gates/passed": sum(g["passed"] for g in gates),
                "gates/total": len(gates),
            },
        ),
    )


def _render(model: LoadedDeclaration, lineage: Any, spec_path: Path) -> tuple[dict[str, Any], str]:
    """Every document, rendered to every file the bundle holds; the record and all its text."""
    from lifecycle_pipeline.assets.documentation import bundle_files, documents_for
    from lifecycle_pipeline.documentation.bundle import changes_since

    spec = load_spec(spec_path, "test")
    documents = documents_for(lineage, spec, changes_since(lineage, None, None), model)
    files = bundle_files(documents, "unit", spec, {}, model)
    text = "\n".join(content.decode() for content in files.values())
    return json.loads(files["bundle.json"]), text


def _declared(tmp_path: Path, text: str) -> LoadedDeclaration:
    """A model folder: ``text`` as the lifecycle component's attributes in its defs.yaml."""
    component = {"type": COMPONENT_TYPE, "attributes": yaml.safe_load(text)}
    (tmp_path / DECLARATION_FILE).write_text(
        yaml.safe_dump(component, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    (tmp_path / "card.yaml").write_text("model:\n  name: Unit-test model\n", encoding="utf-8")
    return load_declaration(tmp_path)


def test_a_regression_card_is_worded_from_its_declaration(tmp_path: Path) -> None:
    model = _declared(tmp_path, REGRESSION)
    record, text = _render(model, _lineage(model), model.spec_path())
    card, sheet, annex = (rows(d) for d in record["documents"])

    assert "regression" in card["Task"]["value"] and "EUR" in card["Task"]["value"]
    assert card["What one row is"]["value"] == "one flat listed for sale"
    assert card["rmse"]["value"].startswith(
        "root mean squared error of the predicted price, in EUR"
    )
    assert "price" in card["r2"]["value"]
    assert not any(label.startswith("Decision threshold") for label in card | annex)
    assert "Label balance (rows per class)" not in sheet
    assert sheet["Target (label)"]["value"] == "`price`: a number, in EUR"
    assert sheet["Columns dropped on read"]["value"] == ["listing_id"]
    assert card["Estimator (import path)"]["value"] == "sklearn.linear_model.Ridge"
    assert card["Declared estimator parameters"]["value"] == {"alpha": 2.0}
    assert card["Declared gates (blocking)"]["value"] == ["rmse <= 50000", "r2 >= 0.5"]
    assert card["Declaration at training (sha256)"]["value"] == model.sha256
    assert model.sha256 in card["Model declaration"]["value"]
    assert record["declaration"]["sha256"] == model.sha256
    contract = next(
        t
        for s in record["documents"][1]["sections"]
        for t in s["tables"]
        if t["columns"][0] == "feature"
    )
    assert ["area", "numeric", "m²", "10 to 500", False, "living area"] in contract["rows"]
    assert ["lift", "boolean", "", "true or false", True, "the building has a lift"] in contract[
        "rows"
    ]
    assert ["district", "categorical", "", "one of north, south", False, ""] in contract["rows"]
    slices = next(
        t
        for s in record["documents"][0]["sections"]
        for t in s["tables"]
        if t["columns"][0] == "slice"
    )
    assert {r[0] for r in slices["rows"]} >= {"city district = north", "flat size = spacious"}
    assert "rmse" in slices["columns"] and "positives" not in slices["columns"]
    assert any(
        "flat size (column `area`): compact [< 60]" in s for s in card["Slice definitions"]["value"]
    )
    for word in SAMPLE_WORDS:
        assert word not in text.lower(), word


def test_a_multiclass_card_names_every_class_and_has_no_threshold(tmp_path: Path) -> None:
    model = _declared(tmp_path, MULTICLASS)
    record, text = _render(model, _lineage(model), model.spec_path())
    card, sheet, annex = (rows(d) for d in record["documents"])

    assert card["Task"]["value"].startswith("multiclass classification of `species` into 3")
    assert card["recall/versicolor"]["value"] == "share of versicolor cases found"
    assert "macro_f1" in card and "log_loss" in card
    assert not any(label.startswith("Decision threshold") for label in card | annex)
    assert sheet["Label balance (rows per class)"]["value"] == (
        "setosa: 4 of 12 (33.3%); versicolor: 4 of 12 (33.3%); virginica: 4 of 12 (33.3%)"
    )
    assert "P(class) for each of setosa, versicolor, virginica" in card["Output"]["value"]
    assert annex["recall/virginica"]["value"] == record_metric(record, "recall/virginica")
    assert card["Declared gates (blocking)"]["value"] == [
        "macro_f1 >= 0.8",
        "recall/virginica >= 0.7",
    ]
    for document in record["documents"]:
        for row in rows(document).values():
            assert row["gap"] or row["source"], row["label"]
    for word in SAMPLE_WORDS:
        assert word not in text.lower(), word


def record_metric(record: dict[str, Any], name: str) -> Any:
    metrics = next(
        t
        for s in record["documents"][0]["sections"]
        for t in s["tables"]
        if t["columns"] == ["metric", "value"]
    )
    return dict(map(tuple, metrics["rows"]))[name]


def test_a_binary_card_names_the_positive_class_and_flags_another_declaration() -> None:
    model = load_declaration(SAMPLE)
    lineage = _lineage(model, rows=10)
    record, _ = _render(model, lineage, SPEC)
    card, sheet, _annex = (rows(d) for d in record["documents"])
    assert card["Decision threshold (P(malignant))"]["value"] == 0.5
    assert card["precision"]["value"] == "share of predicted malignant that are malignant"
    assert card["recall"]["value"].startswith("share of malignant cases found")
    assert sheet["Label balance (rows per class)"]["value"] == (
        "benign: 5 of 10 (50.0%); malignant: 5 of 10 (50.0%)"
    )
    assert not any("model_card.yaml" in g for g in record["gaps"])  # the spec is complete

    # A model trained with another declaration is documented with a gap, never silently.
    other = _materialization(
        model.asset("trained_model"), {**lineage.model.metadata, "declaration/sha256": "0" * 64}
    )
    record, _ = _render(
        model, type(lineage)(lineage.snapshot, lineage.features, other, lineage.evaluation), SPEC
    )
    row = rows(record["documents"][0])["Declaration at training (sha256)"]
    assert row["value"] is None and "was trained with declaration sha256 " + "0" * 64 in row["gap"]


def test_the_documentation_code_holds_no_sample_wording() -> None:
    """Every domain word comes from the declaration: the framework names no dataset."""
    package = PROJECT_ROOT / "lifecycle_pipeline"
    files = [
        package / "assets" / "documentation.py",
        *sorted((package / "documentation").glob("*.py")),
        package / "templates" / "bundle.html.j2",
    ]
    for path in files:
        text = path.read_text(encoding="utf-8").lower()
        for word in SAMPLE_WORDS:
            assert word not in text, f"{path}: {word}"


def test_a_changed_declaration_is_a_new_model_version_and_says_so(
    demo_registry: Registry, tmp_path: Path
) -> None:
    """The declaration's sha256 is in the lineage tuple: a reviewed change to it (here a
    hyperparameter) is a new model version, named as the changed input, not a failed
    reproduction, and the card's "What changed" shows both digests."""
    folder = tmp_path / "model"
    shutil.copytree(SAMPLE.parent, folder)
    text = (folder / DECLARATION_FILE).read_text(encoding="utf-8")
    assert "min_samples_leaf: 2" in text
    (folder / DECLARATION_FILE).write_text(
        text.replace("min_samples_leaf: 2", "min_samples_leaf: 3")
    )
    changed = load_declaration(folder)
    (tmp_path / "p").mkdir()
    with scratch_pipeline(demo_registry, tmp_path / "p") as first:
        assert first.run("data-v1").success
        defs = build_definitions(
            model=changed,
            registry=demo_registry.resource(),
            artifact_store=ArtifactStore(root=str(first.artifacts)),
        )
        second = Pipeline(
            defs=defs, instance=first.instance, artifacts=first.artifacts, model=changed
        )
        result = second.run("data-v1")
        assert result.success
        reproducible = f"{changed.asset('trained_model')}:reproducible"
        check = check_results(second.instance, result.run_id)[reproducible]
        assert check.passed and check.metadata["changed_inputs"] == ["declaration"]
        record, _ = bundle(second)
    section = record["documents"][0]["sections"][-1]
    elements = {row[0]: row for row in section["tables"][0]["rows"]}
    before, after, changed_flag = elements["declaration sha256"][1:4]
    assert changed_flag is True
    assert (before, after) == (load_declaration(SAMPLE).sha256, changed.sha256)
