"""What a team onboarding its own model is told must be true (issue 28, point 8): optional
card fields are not required gaps, a missing registry or data path is named by its key, an
id-like or constant column is not proposed as a feature, and `lifecycle check` checks the
registry and a production batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lifecycle_pipeline.declaration import DeclarationError, load_declaration
from lifecycle_pipeline.documentation.document import human
from lifecycle_pipeline.documentation.render import markdown
from lifecycle_pipeline.documentation.spec import REQUIRED_FIELDS, load_spec
from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.resources.registry import DataRegistry, RegistryError
from tests.conftest import PROJECT_ROOT, Registry


def _declaration(tmp_path: Path, edit: dict[str, object], name: str = "loans") -> Path:
    """The breast_cancer declaration under another name, with ``data`` keys replaced (a value
    of None removes the key)."""
    document = yaml.safe_load((PROJECT_ROOT / "models" / "breast_cancer" / "defs.yaml").read_text())
    attributes = document["attributes"]
    attributes["name"] = name
    data = dict(attributes["data"])
    for key, value in edit.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    attributes["data"] = data
    folder = tmp_path / "models" / name
    folder.mkdir(parents=True)
    (folder / "defs.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    (folder / "model_card.yaml").write_text("{}\n")
    return folder / "defs.yaml"


# -- data.registry ------------------------------------------------------------------------


def test_an_omitted_registry_outside_the_demo_is_an_error_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIFECYCLE_REGISTRY_URL", raising=False)
    model = load_declaration(_declaration(tmp_path, {"registry": None}))
    with pytest.raises(DeclarationError) as caught:
        DataRegistry.for_model(model)
    message = str(caught.value)
    assert "data.registry" in message and "LIFECYCLE_REGISTRY_URL" in message, message


def test_the_demo_registry_is_chosen_explicitly_and_the_environment_still_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIFECYCLE_REGISTRY_URL", raising=False)
    demo = load_declaration(_declaration(tmp_path / "a", {"registry": "demo"}))
    assert DataRegistry.for_model(demo).resolved_url().endswith("registry")
    monkeypatch.setenv("LIFECYCLE_REGISTRY_URL", str(tmp_path / "team-registry"))
    omitted = load_declaration(_declaration(tmp_path / "b", {"registry": None}))
    assert DataRegistry.for_model(omitted).resolved_url() == str(tmp_path / "team-registry")
    given = DataRegistry(url=str(tmp_path / "given"))
    monkeypatch.delenv("LIFECYCLE_REGISTRY_URL")
    assert DataRegistry.for_model(omitted, given).resolved_url() == str(tmp_path / "given")


def test_the_demo_models_name_the_demo_registry() -> None:
    for name in ("breast_cancer", "diabetes"):
        model = load_declaration(PROJECT_ROOT / "models" / name)
        assert model.model.data.registry == "demo", name


def test_a_path_missing_at_a_tag_names_data_path_and_the_files_the_tag_has(
    demo_registry: Registry,
) -> None:
    registry = DataRegistry(url=str(demo_registry.repo), dataset_path="data/loans.csv")
    with pytest.raises(RegistryError) as caught:
        registry.resolve("data-v1")
    message = str(caught.value)
    assert "data.path" in message and "data/loans.csv" in message, message
    assert "data/breast_cancer.csv" in message, message
    assert "does not point at a data version" not in message


# -- the model card -----------------------------------------------------------------------


def test_optional_card_fields_are_reported_as_optional_not_as_required_gaps(
    tmp_path: Path,
) -> None:
    from lifecycle_pipeline.documentation.spec import OPTIONAL_FIELDS

    assert {"model.citation", "factors.evaluation", "governance.approval_process"} <= set(
        OPTIONAL_FIELDS
    )
    assert not set(OPTIONAL_FIELDS) & set(REQUIRED_FIELDS)
    spec = tmp_path / "model_card.yaml"
    spec.write_text("model:\n  citation:\n")
    loaded = load_spec(spec)
    assert "model.citation" not in loaded.gaps
    row = human("Citation", None, str(spec), "model.citation")
    assert row.gap is None and "optional" in str(row.value), row
    assert "required" in str(human("Owners", None, str(spec), "model.owners").gap)


def test_an_undefined_value_is_na_in_a_card_table_not_python_none() -> None:
    from lifecycle_pipeline.documentation.document import Document, Section, Table

    table = Table(columns=("slice", "precision"), rows=(("all", None),), cite="x")
    text = markdown(Document("Model card", "ref", (Section("S", tables=(table,)),)), "h")
    assert "None" not in text and "| all | n/a |" in text, text


def test_the_card_heading_does_not_repeat_the_model_name() -> None:
    from lifecycle_pipeline.documentation.render import card_heading

    assert card_heading("diabetes", "diabetes-v1", "abc") == "diabetes-v1 / model abc"
    assert card_heading("breast_cancer", "data-v1", "abc") == "breast_cancer data-v1 / model abc"


def test_the_diabetes_declaration_names_the_file_that_exists() -> None:
    text = (PROJECT_ROOT / "models" / "diabetes" / "defs.yaml").read_text()
    assert "model.yaml" not in text


# -- new-model's proposal -----------------------------------------------------------------


def test_new_model_proposes_id_like_and_constant_columns_under_drop_with_a_warning(
    tmp_path: Path,
) -> None:
    from lifecycle_pipeline.cli_model import proposed_declaration, suspicious_columns

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "application_id": [f"A{i:05d}" for i in range(200)],
            "row_number": np.arange(200),
            "branch": ["main"] * 200,
            "income": rng.normal(50, 10, 200),
            "region": rng.choice(["north", "south"], 200),
            "defaulted": rng.integers(0, 2, 200),
        }
    )
    warnings = suspicious_columns(frame, "defaulted")
    assert set(warnings) == {"application_id", "row_number", "branch"}, warnings
    text = proposed_declaration(frame, tmp_path / "loans.csv", "defaulted", "loans")
    contract = yaml.safe_load(text)["attributes"]["contract"]
    assert set(contract["drop"]) == {"application_id", "row_number", "branch"}
    assert set(contract["features"]) == {"income", "region"}
    assert "application_id" in text.split("type:")[0]  # the header comment says why


def test_a_dropped_column_is_allowed_in_the_data_and_never_a_feature(
    tmp_path: Path, sample_dir: Path
) -> None:
    from lifecycle_pipeline.cli_model import check_against_data

    path = _declaration(tmp_path, {"registry": "demo"})
    document = yaml.safe_load(path.read_text())
    document["attributes"]["contract"]["drop"] = ["application_id"]
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    model = load_declaration(path)
    data = pd.read_csv(sample_dir / "versions" / "data-v1" / "breast_cancer.csv")
    data["application_id"] = range(len(data))
    assert "application_id" not in model.model.contract.feature_names
    assert check_against_data(model, data, "x.csv") == []


def test_errors_here_are_refusals() -> None:
    assert issubclass(RegistryError, LifecycleError)
    assert issubclass(DeclarationError, LifecycleError)


# -- lifecycle check: registry, tags, path, production batch -------------------------------


def _check(
    capsys: pytest.CaptureFixture[str], models: Path, monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    from lifecycle_pipeline.cli import main

    monkeypatch.setenv("LIFECYCLE_MODELS_DIR", str(models))
    capsys.readouterr()
    code = main(["--model", "loans", "check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_verifies_the_registry_the_tag_patterns_and_the_path_at_the_newest_tag(
    tmp_path: Path,
    demo_registry: Registry,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _declaration(tmp_path, {"registry": str(demo_registry.repo)})
    code, out, err = _check(capsys, tmp_path / "models", monkeypatch)
    assert code == 0, err
    assert "data.versions 'data-v*' matches data-v1, data-v2" in out, out
    assert "data.batches 'batch-*' matches batch-001, batch-002" in out, out
    assert "data.path 'data/breast_cancer.csv' at data-v2" in out, out


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ({"path": "data/loans.csv"}, "data.path is 'data/loans.csv'"),
        ({"versions": "loans-v*"}, "no tag matches data.versions 'loans-v*'"),
        ({"registry": "NOT_A_REPO"}, "data.registry"),
    ],
    ids=["path", "versions", "registry"],
)
def test_check_names_the_key_a_registry_problem_comes_from(
    edit: dict[str, object],
    named: str,
    tmp_path: Path,
    demo_registry: Registry,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if edit.get("registry") == "NOT_A_REPO":
        (tmp_path / "plain").mkdir()
        edit = {"registry": str(tmp_path / "plain")}
    _declaration(tmp_path, {"registry": str(demo_registry.repo), **edit})
    code, out, err = _check(capsys, tmp_path / "models", monkeypatch)
    assert code == 2, out
    assert named in err, err


def test_check_without_a_registry_names_the_key_and_offline_skips_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIFECYCLE_REGISTRY_URL", raising=False)
    _declaration(tmp_path, {"registry": None})
    code, _, err = _check(capsys, tmp_path / "models", monkeypatch)
    assert code == 2 and "data.registry is not set" in err, err
    code, out, err = _check(capsys, tmp_path / "models", monkeypatch, "--offline")
    assert code == 0 and "registry not checked (--offline)" in out, err


def test_check_batch_checks_a_production_batch_without_the_target(
    tmp_path: Path,
    sample_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _declaration(tmp_path, {"registry": "demo"})
    batch = pd.read_csv(sample_dir / "batches" / "batch-001.csv")
    batch = batch.drop(columns=["diagnosis"], errors="ignore")
    batch["request_id"] = range(len(batch))  # production carries ids the contract never reads
    good = tmp_path / "batch.csv"
    batch.to_csv(good, index=False)
    code, out, err = _check(
        capsys, tmp_path / "models", monkeypatch, "--offline", "--batch", str(good)
    )
    assert code == 0, err
    assert f"{good}: a production batch that satisfies the contract ({len(batch)} rows" in out
    broken = tmp_path / "broken.csv"
    batch.drop(columns=[batch.columns[0]]).to_csv(broken, index=False)
    code, _, err = _check(
        capsys, tmp_path / "models", monkeypatch, "--offline", "--batch", str(broken)
    )
    assert code == 2 and batch.columns[0] in err, err


def test_materialize_refuses_a_tag_the_registry_does_not_have_naming_pattern_and_tags(
    tmp_path: Path,
    demo_registry: Registry,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lifecycle_pipeline.cli import main

    _declaration(tmp_path, {"registry": str(demo_registry.repo)})
    monkeypatch.setenv("LIFECYCLE_MODELS_DIR", str(tmp_path / "models"))
    capsys.readouterr()
    assert main(["materialize", "data-v9", "--model", "loans"]) == 2
    err = capsys.readouterr().err
    assert "data.versions 'data-v*'" in err and "data-v1, data-v2" in err, err


def test_a_failed_gate_is_a_verdict_not_a_refusal_or_a_defect(
    demo_registry: Registry, tmp_path: Path
) -> None:
    """`lifecycle materialize` exits 1 for a version its gates stop (as `verify` does for a
    package that does not verify), 2 for refused input, 3 for a defect."""
    from lifecycle_pipeline.demo import failed_on_gates, failed_on_input
    from tests.conftest import FAST_TRAINING, scratch_pipeline

    with scratch_pipeline(demo_registry, tmp_path) as pipeline:
        strict = {"config": {"gates": {"roc_auc": 0.99999}}}
        config = {"ops": {**FAST_TRAINING["ops"], pipeline.op("evaluation"): strict}}
        result = pipeline.run("data-v1", run_config=config)
    assert not result.success
    assert failed_on_gates(result) and not failed_on_input(result)
