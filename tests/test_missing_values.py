"""Missing values have one meaning everywhere: the pipeline's Arrow reader (training, drift,
`lifecycle check`, inference) and the package's pandas reader (predict.py, `lifecycle predict`)
read the same fields as missing: an empty field, and the markers the declaration lists under
``data.missing_values``, in every feature type and the target, in CSV and in Parquet."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle_pipeline.contract import (
    DataValidationError,
    infer_contract,
    parse,
    parse_csv,
    read_local,
    validate,
)
from lifecycle_pipeline.declaration import (
    COMPONENT_TYPE,
    DECLARATION_FILE,
    DeclarationError,
    LoadedDeclaration,
    load_declaration,
)
from lifecycle_pipeline.lineage.query import check_results, latest, metadata_values
from lifecycle_pipeline.missing import MissingValues
from lifecycle_pipeline.package import runtime
from lifecycle_pipeline.package.build import differing_columns
from lifecycle_pipeline.registry_demo import Publication, init_registry, publish
from lifecycle_pipeline.resources.codecs import decode
from tests.conftest import Registry, lifecycle_cli, scratch_pipeline

MARKERS = ("NA", "?")

GAPPY = """
name: gappy
description: A model whose every feature type, and the data's own format, has missing values.
data:
  path: data/people.csv
  missing_values: ["NA", "?"]
contract:
  target: outcome
  task: binary
  row: one person
  classes:
    - {value: "no", name: "No"}
    - {value: "yes", name: "Yes", positive: true}
  features:
    age: {type: integer, nullable: true, range: [0, 120]}
    income: {type: numeric, nullable: true}
    sex: {type: categorical, nullable: true, categories: [female, male]}
    smoker: {type: boolean, nullable: true}
estimator:
  class: sklearn.ensemble.RandomForestClassifier
  params: {n_estimators: 40, min_samples_leaf: 2}
  trusted_types: [sklearn.tree._tree.Tree]
evaluation:
  gates: {roc_auc: {min: 0.6}}
"""


def declare(folder: Path, text: str) -> LoadedDeclaration:
    """A model folder holding ``text`` as the attributes of its defs.yaml, loaded."""
    folder.mkdir(parents=True, exist_ok=True)
    component = {"type": COMPONENT_TYPE, "attributes": yaml.safe_load(text)}
    path = folder / DECLARATION_FILE
    path.write_text(yaml.safe_dump(component, sort_keys=False), encoding="utf-8")
    (folder / "model_card.yaml").write_text("# every human field a gap, on purpose\n")
    return load_declaration(path)


def people(rows: int = 400, seed: int = 5) -> pd.DataFrame:
    """Every feature type with gaps written three ways (empty, 'NA', '?'), as text cells."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, rows)
    income = rng.normal(50.0, 15.0, rows).round(3)
    sex = rng.choice(["female", "male"], rows)
    smoker = rng.random(rows) < 0.3
    score = (age - 50) / 20 + smoker * 1.5 + (sex == "male") * 0.8 + rng.normal(0, 0.6, rows)
    frame = pd.DataFrame(
        {
            "age": age.astype(str),
            "income": [repr(float(v)) for v in income],
            "sex": sex,
            "smoker": np.where(smoker, "true", "false"),
            "outcome": np.where(score > 0.3, "yes", "no"),
        }
    ).astype(object)
    for column in ("age", "income", "sex", "smoker"):
        gaps = np.flatnonzero(rng.random(rows) < 0.08)
        for i, row in enumerate(gaps):
            frame.at[row, column] = ("", "NA", "?")[i % 3]
    return frame


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode("utf-8")


def markers_mask(frame: pd.DataFrame) -> pd.DataFrame:
    """Where the text cells hold a missing value under the rule (empty, 'NA' or '?')."""
    return frame.isin(["", *MARKERS])


# -- the two readers ---------------------------------------------------------------------


def test_an_empty_categorical_field_is_missing_to_the_pipelines_reader() -> None:
    """The defect as found: Arrow kept an empty text field as '' while predict.py read NaN."""
    raw = b"sex,outcome\nfemale,yes\n,no\nmale,no\n"
    frame = parse(raw, source="people.csv", fmt="csv")
    assert frame["sex"].isna().tolist() == [False, True, False]
    assert frame["sex"][1] is None


def test_both_readers_read_the_same_fields_as_missing(tmp_path: Path) -> None:
    """Empty fields and the declared markers, in a categorical, a numeric, an integer and a
    boolean column (and the target): the same mask from both readers, and 'None', which
    pandas alone would take for missing, is a value to both."""
    declaration = declare(tmp_path / "gappy", GAPPY)
    frame = people(60)
    frame.at[3, "sex"] = "None"  # not declared: a category (refused later, never missing)
    path = tmp_path / "people.csv"
    path.write_bytes(to_csv_bytes(frame))
    missing = declaration.model.data.missing
    ours = parse(
        path.read_bytes(),
        source=str(path),
        fmt="csv",
        contract=declaration.model.contract,
        missing=missing,
    )
    theirs = runtime.read_table(
        path, {"columns": _schema_columns(declaration), **missing.to_schema()}
    )
    expected = markers_mask(frame)
    assert expected.to_numpy().sum() > 20
    for column in frame.columns:
        assert ours[column].isna().tolist() == expected[column].tolist(), column
        assert theirs[column].isna().tolist() == expected[column].tolist(), column
    assert ours["sex"][3] == theirs["sex"][3] == "None"


def _schema_columns(declaration: LoadedDeclaration) -> list[dict[str, Any]]:
    return [
        {"name": name, "type": feature.type, "nullable": feature.nullable}
        for name, feature in declaration.model.contract.features.items()
    ]


def test_declared_markers_apply_to_parquet_text_columns_in_both_readers(tmp_path: Path) -> None:
    """One meaning whatever the format: in Parquet a null is missing, and a text value that is
    empty or a declared marker is too (a file converted from CSV means the same)."""
    frame = pd.DataFrame(
        {"sex": ["female", "", "NA", None, "male", "?"], "income": [1.5, None, 2.0, 3.0, 4.0, 5]}
    )
    path = tmp_path / "rows.parquet"
    frame.to_parquet(path, index=False)
    missing = MissingValues(MARKERS)
    ours = parse(path.read_bytes(), source=str(path), fmt="parquet", missing=missing)
    theirs = runtime.read_table(path, {"columns": [], **missing.to_schema()})
    expected = [False, True, True, True, False, True]
    assert ours["sex"].isna().tolist() == theirs["sex"].isna().tolist() == expected
    assert ours["income"].isna().tolist() == theirs["income"].isna().tolist()


def test_a_package_built_before_the_rule_reads_as_it_always_did(tmp_path: Path) -> None:
    """An input schema without ``missing_values`` (an older package's) keeps pandas' reading,
    so a rollback target scores its rows as it did in production."""
    path = tmp_path / "rows.csv"
    path.write_bytes(b"sex,income\nNA,1.5\n,2.5\nmale,NA\n")
    old = runtime.read_table(path, {"columns": [{"name": "sex", "type": "categorical"}]})
    assert old["sex"].isna().tolist() == [True, True, False]
    assert old["income"].isna().tolist() == [False, False, True]


CELLS = st.sampled_from(
    ["", "NA", "None", "?", "null", "nan", "NaN", "n/a", "1", "007", "-2", "1.5", "1e3", "0.1",
     "true", "false", "x", "a b", " "]
)  # fmt: skip


class TextTable(NamedTuple):
    rows: list[list[str]]
    tokens: tuple[str, ...]  # the declared markers
    kinds: tuple[str, ...]  # per column: declared categorical, declared numeric, or neither


@st.composite
def text_tables(draw: st.DrawFn) -> TextTable:
    """Small tables of text cells that look like numbers, booleans, words, empty fields and
    missing-value markers, a declared marker list, and each column's declared kind."""
    width = draw(st.integers(2, 4))
    rows = draw(st.lists(st.lists(CELLS, min_size=width, max_size=width), min_size=1, max_size=8))
    tokens = tuple(draw(st.lists(st.sampled_from(["NA", "?", "None", "n/a"]), unique=True)))
    kinds = tuple(draw(st.sampled_from(["categorical", "numeric", "other"])) for _ in range(width))
    return TextTable(rows, tokens, kinds)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text_tables())
def test_property_both_readers_agree_on_every_missing_field(table: TextTable) -> None:
    """Whatever the cells, the two readers mark the same cells missing, and a cell is missing
    exactly when it is empty or a declared marker."""
    rows, tokens, kinds = table
    text = tuple(f"c{i}" for i, kind in enumerate(kinds) if kind == "categorical")
    numbers = tuple(f"c{i}" for i, kind in enumerate(kinds) if kind == "numeric")
    width = len(rows[0])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([f"c{i}" for i in range(width)])
    writer.writerows(rows)
    raw = buffer.getvalue().encode("utf-8")
    missing = MissingValues(tokens)
    ours = parse_csv(
        raw, source="generated.csv", text_columns=text, number_columns=numbers, missing=missing
    )
    with tempfile.TemporaryDirectory() as folder:  # per example: hypothesis reruns the body
        path = Path(folder) / "generated.csv"
        path.write_bytes(raw)
        columns = [{"name": name, "type": "categorical"} for name in text]
        theirs = runtime.read_table(path, {"columns": columns, **missing.to_schema()})
    expected = pd.DataFrame(rows, columns=[f"c{i}" for i in range(width)]).isin(["", *tokens])
    for column in expected.columns:
        assert ours[column].isna().tolist() == expected[column].tolist(), (column, rows)
        assert theirs[column].isna().tolist() == expected[column].tolist(), (column, rows)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.lists(st.none() | CELLS, min_size=2, max_size=2), min_size=1, max_size=8),
    st.lists(st.sampled_from(["NA", "?", "None", "n/a"]), unique=True),
)
def test_property_parquet_text_means_what_the_same_csv_field_means(
    rows: list[list[str | None]], tokens: list[str]
) -> None:
    """Parquet text columns: a null, an empty value and a declared marker are missing to both
    readers, and nothing else is."""
    frame = pd.DataFrame(rows, columns=["c0", "c1"], dtype=object)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    missing = MissingValues(tuple(tokens))
    ours = parse(buffer.getvalue(), source="generated.parquet", fmt="parquet", missing=missing)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generated.parquet"
        path.write_bytes(buffer.getvalue())
        theirs = runtime.read_table(path, {"columns": [], **missing.to_schema()})
    expected = frame.isna() | frame.isin(["", *tokens])
    for column in frame.columns:
        assert ours[column].isna().tolist() == expected[column].tolist(), (column, rows)
        assert theirs[column].isna().tolist() == expected[column].tolist(), (column, rows)


# -- inference and the declaration ----------------------------------------------------------


def test_inference_proposes_nullable_and_never_the_empty_category(tmp_path: Path) -> None:
    frame = people(80)
    path = tmp_path / "people.csv"
    path.write_bytes(to_csv_bytes(frame.replace({"NA": "", "?": ""})))
    proposed = infer_contract(read_local(path), target="outcome")
    features = proposed["features"]
    assert features["sex"] == {"type": "categorical", "categories": ["female", "male"],
                               "nullable": True}  # fmt: skip
    assert features["smoker"] == {"type": "boolean", "nullable": True}
    assert features["income"]["nullable"] and features["age"]["nullable"]


def test_inference_reads_the_markers_it_is_given(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(to_csv_bytes(people(80)))
    proposed = infer_contract(read_local(path, missing=MissingValues(MARKERS)), target="outcome")
    assert proposed["features"]["sex"]["categories"] == ["female", "male"]
    assert proposed["features"]["income"] == {"type": "numeric", "nullable": True}


def test_contract_infer_declares_the_markers_it_is_given_and_points_out_lookalikes(
    tmp_path: Path,
) -> None:
    """`contract infer --missing-values NA,?` reads with those markers and declares them, so
    the proposal loads and its readers agree; without them, 'NA' is a category, and the
    proposal says which columns hold such look-alikes."""
    data = tmp_path / "people.csv"
    data.write_bytes(to_csv_bytes(people(80)))
    proposal = tmp_path / "with" / DECLARATION_FILE
    args = ["contract", "infer", "--data", str(data), "--target", "outcome", "--name", "gappy"]
    assert lifecycle_cli(*args, "--output", str(proposal), "--missing-values", "NA,?") == 0
    loaded = load_declaration(proposal)
    assert loaded.model.data.missing_values == MARKERS
    sex = loaded.model.contract.features["sex"]
    assert (sex.categories, sex.nullable) == (("female", "male"), True)
    assert "look" not in proposal.read_text() and "holds 'NA'" not in proposal.read_text()
    bare = tmp_path / "without" / DECLARATION_FILE
    assert lifecycle_cli(*args, "--output", str(bare)) == 0
    text = bare.read_text()
    assert "# - column 'sex' holds 'NA', '?': if that means missing" in text
    assert "missing_values" not in yaml.safe_load(text)["attributes"]["data"]


def test_lifecycle_check_reads_a_file_with_the_declared_markers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    declaration = declare(tmp_path / "gappy", GAPPY)
    data = tmp_path / "people.csv"
    data.write_bytes(to_csv_bytes(people(80)))
    assert lifecycle_cli("check", str(declaration.path), "--offline", "--data", str(data)) == 0
    assert "satisfies the contract (80 rows)" in capsys.readouterr().out


def test_missing_values_are_validated_where_declared(tmp_path: Path) -> None:
    for value, expected in [
        ("[-999]", r"data.missing_values.0: -999 is not text .*quote it"),
        ('[""]', "data.missing_values.0: the empty field is always missing"),
        ('["NA", "NA"]', "data.missing_values.1: 'NA' is listed twice"),
    ]:
        text = GAPPY.replace('missing_values: ["NA", "?"]', f"missing_values: {value}")
        with pytest.raises(DeclarationError, match=expected):
            declare(tmp_path / "gappy", text)
    clash = GAPPY.replace("categories: [female, male]", "categories: [female, male, NA]")
    with pytest.raises(DeclarationError, match="'NA' is declared a category of 'sex'"):
        declare(tmp_path / "gappy", clash)


def test_a_missing_target_is_a_named_error() -> None:
    raw = b"sex,outcome\nfemale,yes\nmale,NA\nmale,no\n,\n"
    declared = load_gappy_contract()
    frame = parse(raw, source="v.csv", fmt="csv", contract=declared, missing=MissingValues(MARKERS))
    with pytest.raises(DataValidationError, match="column 'outcome': 2 missing label"):
        validate(frame, declared, source="v.csv", declaration="defs.yaml")


def load_gappy_contract() -> Any:
    from lifecycle_pipeline.declaration import Contract

    contract = yaml.safe_load(GAPPY)["contract"]
    contract["features"] = {"sex": contract["features"]["sex"]}
    return Contract.model_validate(contract)


# -- end to end: data_snapshot, training, evaluation, the package ---------------------------


class Trained(NamedTuple):
    package: Path
    predictions: pd.DataFrame
    test_rows: pd.DataFrame
    snapshot: dict[str, Any]
    card: str
    frame: pd.DataFrame
    drift: dict[str, Any]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """The gappy model through its whole lifecycle on a real git + DVC registry."""
    base = tmp_path_factory.mktemp("gappy")
    declaration = declare(base / "models" / "gappy", GAPPY)
    frame = people()
    upload = base / "people.csv"
    upload.write_bytes(to_csv_bytes(frame))
    registry = Registry(repo=base / "registry", remote=base / "remote")
    init_registry(registry.repo, registry.remote)
    publish(registry.repo, Publication("data-v1", upload, "data/people.csv", "v1"))
    batch = base / "batch.csv"  # the same population, gaps written the same three ways
    batch.write_bytes(to_csv_bytes(people(200, seed=9).drop(columns=["outcome"])))
    publish(registry.repo, Publication("batch-001", batch, "batches/batch-001.csv", "batch"))
    (base / "run").mkdir()
    with scratch_pipeline(registry, base / "run", model=declaration) as pipeline:
        result = pipeline.run("data-v1")
        checks = check_results(pipeline.instance, result.run_id)
        failed = {name: c.description for name, c in checks.items() if not c.passed}
        assert result.success and not failed, failed
        instance = pipeline.instance
        snapshot = metadata_values(latest(instance, pipeline.key("data_snapshot"), "data-v1"))
        evaluation = metadata_values(latest(instance, pipeline.key("evaluation"), "data-v1"))
        features = metadata_values(latest(instance, pipeline.key("features"), "data-v1"))
        package = metadata_values(latest(instance, pipeline.key("deployment_package"), "data-v1"))
        card = metadata_values(latest(instance, pipeline.key("model_card"), "data-v1"))
        drift = pipeline.drift("batch-001")
        assert drift.success
        monitor = metadata_values(latest(instance, pipeline.key("drift_monitor"), "batch-001"))
    report = decode(Path(evaluation["artifact/uri"]).read_bytes(), source="evaluation")
    feature_set = decode(Path(features["artifact/uri"]).read_bytes(), source="features")
    yield Trained(
        package=Path(package["artifact/uri"]),
        predictions=report.predictions,
        test_rows=feature_set.test[list(feature_set.feature_columns)],
        snapshot=snapshot,
        card=str(card["datasheet"]),
        frame=frame,
        drift=monitor,
    )


def test_a_nullable_categorical_with_its_real_categories_trains(trained: Trained) -> None:
    """data_snapshot accepts the declaration (no '' category) and counts every gap."""
    expected = markers_mask(trained.frame).sum()
    counts = trained.snapshot["null_counts"]
    assert counts == {c: int(expected[c]) for c in trained.frame.columns}
    assert counts["sex"] > 0


def test_the_datasheet_reports_the_missing_values(trained: Trained) -> None:
    counts = markers_mask(trained.frame).sum()
    assert "Missing values per column" in trained.card
    assert f'"sex": {int(counts["sex"])}' in trained.card
    assert "Read as missing (declared)" in trained.card and "'?'" in trained.card


def test_production_batches_are_read_with_the_declared_markers(tmp_path: Path) -> None:
    from lifecycle_pipeline.assets.monitoring import read_batch

    declaration = declare(tmp_path / "gappy", GAPPY)
    frame = people(60).drop(columns=["outcome"])
    current = read_batch(declaration, to_csv_bytes(frame), source="batch.csv")
    expected = markers_mask(frame)
    for column in frame.columns:
        assert current[column].isna().tolist() == expected[column].tolist(), column


def test_drift_of_a_calm_batch_with_gaps_sees_no_new_category(trained: Trained) -> None:
    """The batch's gaps read as the training data's did: the categorical's missing share is
    the same population's, not a new '' category."""
    assert "sex" not in trained.drift["drift/drifted_columns"], trained.drift
    scored = {record.data["column"] for record in trained.drift["drift/columns"].records}
    assert {"age", "income", "sex", "smoker"} <= scored


def test_the_package_schema_carries_the_rule(trained: Trained) -> None:
    schema = json.loads((trained.package / "input_schema.json").read_text())
    assert schema["missing_values"] == ["", *MARKERS]
    columns = {c["name"]: c for c in schema["columns"]}
    assert columns["sex"]["nullable"] is True
    assert columns["sex"]["train_categories"] == ["female", "male"]
    assert columns["sex"]["train_missing"] is True


@pytest.mark.parametrize("unseen", ["ignore", "error"])
def test_a_gap_training_never_saw_is_an_unseen_category(unseen: str) -> None:
    """The encoder learns a gap as a category only when training had one: otherwise a gap
    is flagged like any unseen category, or refused by name when the model refuses them
    (instead of the encoder's bare ValueError)."""
    column = {"name": "sex", "type": "categorical", "nullable": True,
              "categories": ["female", "male"], "train_categories": ["female", "male"]}  # fmt: skip
    schema = {"columns": [column], "out_of_range": "flag", "unseen_categories": unseen}
    frame = pd.DataFrame({"sex": ["female", None, "male"]})
    assert runtime.validate_input(frame, schema).flags.tolist() == [0, 0, 0]  # older schema
    strict = {**schema, "columns": [{**column, "train_missing": False}]}
    expected = "row 1, column 'sex': a missing value was never seen in training"
    if unseen == "error":
        with pytest.raises(runtime.InputError, match=expected + " and this model refuses"):
            runtime.validate_input(frame, strict)
    else:
        checked = runtime.validate_input(frame, strict)
        assert checked.flags.tolist() == [0, 1, 0]
        assert checked.notes[0].startswith(expected)


def test_rows_with_missing_values_score_in_predict_py_as_in_evaluation(
    trained: Trained, tmp_path: Path
) -> None:
    """The held-out rows, gaps written as the data writes them ('NA'), scored by the package's
    predict.py in an interpreter that cannot import lifecycle_pipeline: bit for bit what
    evaluation recorded."""
    rows = trained.test_rows
    assert rows.isna().any(axis=1).sum() > 5
    source, target = tmp_path / "rows.csv", tmp_path / "out.parquet"
    rows.to_csv(source, index=False, na_rep="NA")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    blocker = (
        "import runpy, sys; sys.modules['lifecycle_pipeline'] = None; "
        f"sys.argv = ['predict.py', {str(source)!r}, {str(target)!r}]; "
        "runpy.run_path('predict.py', run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", blocker],
        cwd=trained.package,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    produced = pd.read_parquet(target)
    columns = [c for c in trained.predictions.columns if c != "row_id"]
    assert differing_columns(trained.predictions[columns], produced[columns]) == []


def test_lifecycle_predict_scores_rows_with_missing_values_as_evaluation(
    trained: Trained, tmp_path: Path
) -> None:
    """`lifecycle predict` reads the rows with the package's own reader: the same scores."""
    from lifecycle_pipeline.resources.signing import PackageSigner

    source, target = tmp_path / "rows.csv", tmp_path / "out.parquet"
    trained.test_rows.to_csv(source, index=False, na_rep="?")
    public = PackageSigner().key_pair()[1]
    args = [str(trained.package), str(source), "--output", str(target), "--public-key", str(public)]
    assert lifecycle_cli("predict", *args) == 0
    produced = pd.read_parquet(target)
    columns = [c for c in trained.predictions.columns if c != "row_id"]
    assert differing_columns(trained.predictions[columns], produced[columns]) == []
