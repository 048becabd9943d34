"""Model declarations: a bad one is refused before any run starts, naming the file, the line,
the field and what is allowed; data that breaks a declared contract is refused with every
broken rule at once; `lifecycle contract infer` proposes a declaration and touches nothing else.

The bad declarations are rows of tests/reliability/cases.py (the "Model declarations" table of
docs/reliability.md); each one edits the same small valid declaration.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lifecycle_pipeline.cli import main
from lifecycle_pipeline.contract import DataValidationError, parse, validate
from lifecycle_pipeline.declaration import (
    COMPONENT_TYPE,
    DECLARATION_FILE,
    DeclarationError,
    LoadedDeclaration,
    load_declaration,
    parse_declaration,
)
from lifecycle_pipeline.errors import ExitCode
from tests.reliability.cases import (
    COMPONENT,
    DECLARATION,
    DECLARATIONS,
    REFUSED_AT_LOAD,
    Fault,
    case,
    declaration,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = PROJECT_ROOT / "models" / "breast_cancer"
LIFECYCLE = Path(sys.executable).parent / "lifecycle"

AT_LOAD = [f for f in DECLARATIONS if f.proof == REFUSED_AT_LOAD]


def _write(folder: Path, text: str) -> Path:
    """``text`` as the ``defs.yaml`` of a model folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DECLARATION_FILE
    path.write_text(text, encoding="utf-8")
    return path


def _tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _lifecycle(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`lifecycle ARGS` in this process: exit status, stdout, stderr."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _real_lifecycle(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed `lifecycle` console script, as a user or CI step runs it."""
    env = {
        **os.environ,
        "LIFECYCLE_HOME": str(home / "lifecycle_home"),
        "DAGSTER_HOME": str(home / "dagster_home"),
    }
    env.pop("LIFECYCLE_MODEL", None)
    return subprocess.run(
        [str(LIFECYCLE), *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip


def _toy_frame(rows: int = 12) -> pd.DataFrame:
    """Data satisfying :data:`tests.reliability.cases.DECLARATION`."""
    index = np.arange(rows)
    return pd.DataFrame(
        {
            "row_id": index + 1000,
            "size": 0.5 + index * 0.25,
            "count": index % 6,
            "colour": np.where(index % 3 == 0, "red", "green"),
            "label": index % 2,
        }
    )


# --- the sample and the base declaration are valid -------------------------------------------


def test_sample_declaration_loads() -> None:
    loaded = load_declaration(SAMPLE)
    model = loaded.model
    assert DECLARATION_FILE == "defs.yaml"
    assert loaded.path == (SAMPLE / "defs.yaml").resolve()
    assert loaded.sha256 == hashlib.sha256((SAMPLE / "defs.yaml").read_bytes()).hexdigest()
    assert not (SAMPLE / "model.yaml").exists()  # one declaration per folder, no stale copy
    # A Dagster component file: the component type, then the declaration as its attributes.
    document = yaml.safe_load((SAMPLE / "defs.yaml").read_text(encoding="utf-8"))
    assert set(document) == {"type", "attributes"}
    assert document["type"] == COMPONENT_TYPE == "lifecycle_pipeline.LifecycleModel"
    assert document["attributes"]["name"] == loaded.name
    assert loaded.name == "breast_cancer"
    assert model.contract.task == "binary"
    assert model.contract.positive.value == 1
    assert len(model.contract.features) == 30
    assert set(model.contract.of_type("numeric")) == set(model.contract.features)
    assert set(model.evaluation.gates) == {"roc_auc", "f1", "recall", "brier"}
    assert model.schedule == "0 3 * * 1"
    assert loaded.spec_path().is_file()


def test_lifecycle_check_of_the_sample_exits_0(tmp_path: Path) -> None:
    done = _real_lifecycle(PROJECT_ROOT, tmp_path, "check", "models/breast_cancer", "--offline")
    assert done.returncode == ExitCode.OK, done.stderr
    assert "declaration valid (breast_cancer, binary, sha256 " in done.stdout


def test_base_declaration_of_the_bad_cases_is_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each bad case edits this text: it must fail because of its edit, not of the base."""
    path = _write(tmp_path, declaration())
    assert declaration() == COMPONENT + "".join(
        f"  {line}" for line in DECLARATION.splitlines(True)
    )
    loaded = load_declaration(path)
    assert loaded.model.contract.feature_names == ("size", "count", "colour")
    assert loaded.model.contract.drop == ("row_id",)
    code, out, err = _lifecycle(capsys, "check", str(path), "--offline")
    assert (code, err) == (ExitCode.OK, "")
    assert "declaration valid (toy, binary" in out


# --- bad declarations --------------------------------------------------------------------------


@pytest.mark.parametrize("fault", AT_LOAD, ids=[f.name for f in AT_LOAD])
def test_bad_declaration_is_refused_naming_file_line_and_field(
    fault: Fault, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "toy", declaration(fault))
    before = _tree(tmp_path)
    with pytest.raises(DeclarationError) as raised:
        load_declaration(path)
    message = str(raised.value)
    assert fault.shown_in(message), message
    # The file is named with its full path, each problem on its own line as path:line: field.
    assert re.search(rf"^{re.escape(str(path))}:\d+: \S+: ", message, re.MULTILINE), message

    code, out, err = _lifecycle(capsys, "check", str(path))
    assert code == ExitCode.REFUSED, err
    assert out == ""
    assert err.startswith("lifecycle check: DeclarationError: ")
    assert fault.shown_in(err), err
    assert _tree(tmp_path) == before


def test_lifecycle_check_of_a_bad_declaration_exits_2_with_the_message_on_stderr(
    tmp_path: Path,
) -> None:
    fault = case("declaration", "invalid cron schedule")
    path = _write(tmp_path / "toy", declaration(fault))
    done = _real_lifecycle(tmp_path, tmp_path, "check", str(path))
    assert done.returncode == ExitCode.REFUSED, done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert fault.shown_in(done.stderr), done.stderr


def test_feature_declared_twice_is_not_silently_the_last_one() -> None:
    """PyYAML keeps the last of two equal keys; the declaration must not be read that way."""
    text = declaration(case("declaration", "feature declared twice"))
    with pytest.raises(DeclarationError, match="size"):
        parse_declaration(text, Path("defs.yaml"))


def test_nested_unknown_key_names_its_line_and_the_keys_allowed_there() -> None:
    text = declaration().replace("range: [0, null]", "rnage: [0, null]")
    with pytest.raises(DeclarationError) as raised:
        parse_declaration(text, Path("models/toy/defs.yaml"))
    # Line 16 of defs.yaml (14 of the declaration, below `type:` and `attributes:`); the field
    # is named as in the declaration, without the component's `attributes.` prefix.
    assert "models/toy/defs.yaml:16: contract.features.size.rnage: unknown key" in str(raised.value)
    assert "attributes." not in str(raised.value)
    assert "type, nullable, range, categories, unit, description" in str(raised.value)


# A defs.yaml is a Dagster component file: `type` must name the lifecycle component, and
# `type` and `attributes` are its only keys. (name, edit of the valid file, expected message)
COMPONENT_FAULTS = [
    ("another component type",
     ("type: lifecycle_pipeline.LifecycleModel\n", "type: dagster.DefinitionsComponent\n"),
     "defs.yaml:1: type is 'dagster.DefinitionsComponent'; a model's defs.yaml is a Dagster "
     "component file: `type: lifecycle_pipeline.LifecycleModel`"),
    ("misspelt type",
     ("lifecycle_pipeline.LifecycleModel\n", "lifecycle_pipeline.LifecycleModle\n"),
     "defs.yaml:1: type is 'lifecycle_pipeline.LifecycleModle'"),
    ("no type", ("type: lifecycle_pipeline.LifecycleModel\n", ""), "defs.yaml:1: type is None"),
    ("key beside type and attributes",
     ("attributes:\n", "requirements: {env: prod}\nattributes:\n"),
     "defs.yaml:2: unknown key 'requirements'; a model's defs.yaml is a Dagster component file"),
    ("declaration key at the top level",
     ("attributes:\n", "schedule: '0 4 * * *'\nattributes:\n"),
     "defs.yaml:2: unknown key 'schedule'"),
    ("key after the attributes", ("  schedule: \"0 3 * * 1\"\n", "schedule: \"0 3 * * 1\"\n"),
     "defs.yaml:28: unknown key 'schedule'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "expected"),
    [(edit, expected) for _, edit, expected in COMPONENT_FAULTS],
    ids=[name for name, _, _ in COMPONENT_FAULTS],
)
def test_a_defs_yaml_that_is_not_a_lifecycle_component_is_refused_naming_the_line(
    edit: tuple[str, str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = declaration()
    assert text.count(edit[0]) == 1, edit
    path = _write(tmp_path / "toy", text.replace(edit[0], edit[1]))
    before = _tree(tmp_path)
    with pytest.raises(DeclarationError) as raised:
        load_declaration(path)
    message = str(raised.value)
    assert message.startswith(f"{path.parent}/{expected}"), message
    assert "then the declaration under `attributes:` (name:, data:, contract:, ...)" in message

    code, out, err = _lifecycle(capsys, "check", str(path))
    assert (code, out) == (ExitCode.REFUSED, "")
    assert f"{path.parent}/{expected}" in err, err
    assert _tree(tmp_path) == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (COMPONENT + "  - name\n", "defs.yaml:2: attributes: a model's defs.yaml is a Dagster"),
        ("type: lifecycle_pipeline.LifecycleModel\n", "defs.yaml:1: attributes: "),
        ("- type\n- attributes\n", "defs.yaml: a model's defs.yaml is a Dagster component file"),
        # A model.yaml of before, moved as it was: its keys are not the component's.
        (DECLARATION, "defs.yaml:1: unknown key 'name'"),  # the first, in file order
    ],
    ids=["attributes a list", "attributes missing", "a list", "declaration without component"],
)
def test_a_defs_yaml_without_attributes_to_read_is_refused_naming_where(
    text: str, expected: str, tmp_path: Path
) -> None:
    path = _write(tmp_path / "toy", text)
    with pytest.raises(DeclarationError) as raised:
        load_declaration(path)
    assert str(raised.value).startswith(f"{path.parent}/{expected}"), str(raised.value)


# --- a declaration that its data contradicts -----------------------------------------------


def _refusals(
    fault: Fault, frame: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[LoadedDeclaration, str, str]:
    """What `contract.validate` and `lifecycle check --data` say about ``frame``."""
    path = _write(tmp_path / "toy", declaration(fault))
    data = tmp_path / "toy.csv"
    frame.to_csv(data, index=False)
    loaded = load_declaration(path)
    raw = data.read_bytes()
    with pytest.raises(DataValidationError) as raised:
        validate(
            parse(raw, source=str(data), fmt="csv"),
            loaded.model.contract,
            source=str(data),
            declaration=str(loaded.path),
        )
    code, out, err = _lifecycle(capsys, "check", str(path), "--data", str(data))
    assert code == ExitCode.REFUSED, err
    assert "declaration valid (toy" in out  # the declaration alone is fine
    assert data.read_bytes() == raw
    return loaded, str(raised.value), err


def test_categorical_type_on_a_float_column_is_named_with_the_declaration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fault = case("declaration", "categorical type on a float column")
    loaded, message, err = _refusals(fault, _toy_frame(), tmp_path, capsys)
    for seen in (message, err):
        assert fault.shown_in(seen), seen
        assert str(loaded.path) in seen
        assert "first at row 0: 0.5)" in seen  # the value as written, not a numpy repr


def test_target_absent_from_the_data_is_named_with_the_declaration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fault = case("declaration", "target absent from the data")
    frame = _toy_frame().drop(columns=["label"])
    loaded, message, err = _refusals(fault, frame, tmp_path, capsys)
    for seen in (message, err):
        assert fault.shown_in(seen), seen
        assert str(loaded.path) in seen


# --- data breaking the declared contract: every problem in one message ----------------------

# (column, what the message says about it, "…" standing for any text); rows count from 0, as
# the data rows of the file do.
BROKEN_RULES = [
    ("size", "1 value(s) violate the declared range: >= 0, first at row 1: -2.0"),
    ("size", "1 missing value(s) but not declared nullable, first at row 3"),
    ("colour", "1 value(s) violate the declared categories ['red', 'green'], first at row 2: "
               "'blue'"),
    ("count", "declared integer but holds non-numbers (first at row 4: 'two')"),
    ("extra", "not part of the dataset contract; remove it from the file, or declare it under "
              "contract.features or contract.drop"),
]  # fmt: skip


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One `validate` call on data breaking five declared rules: its message and declaration."""
    folder = tmp_path_factory.mktemp("broken")
    path = _write(folder, declaration())
    frame = _toy_frame().astype({"count": object}).assign(extra=1)
    frame.loc[1, "size"] = -2.0
    frame.loc[3, "size"] = np.nan
    frame.loc[2, "colour"] = "blue"
    frame.loc[4, "count"] = "two"
    raw = frame.to_csv(index=False).encode()
    loaded = load_declaration(path)
    with pytest.raises(DataValidationError) as raised:
        validate(
            parse(raw, source="broken.csv", fmt="csv"),
            loaded.model.contract,
            source="broken.csv",
            declaration=str(loaded.path),
        )
    return str(raised.value), loaded.path


def test_one_validate_call_lists_every_broken_rule(broken: tuple[str, Path]) -> None:
    message, path = broken
    assert message.startswith(
        f"broken.csv: {len(BROKEN_RULES)} problem(s) against the contract in {path}: "
    ), message


@pytest.mark.parametrize("column, problem", BROKEN_RULES, ids=[p for _, p in BROKEN_RULES])
def test_each_broken_rule_names_column_rule_and_first_row(
    broken: tuple[str, Path], column: str, problem: str
) -> None:
    message, _ = broken
    pattern = ".*?".join(re.escape(part) for part in problem.split("…"))
    assert re.search(rf"column '{column}': {pattern}", message), message


def test_declared_drop_column_passes_and_is_removed(tmp_path: Path) -> None:
    loaded = load_declaration(_write(tmp_path, declaration()))
    raw = _toy_frame().to_csv(index=False).encode()
    result = validate(
        parse(raw, source="toy.csv", fmt="csv"),
        loaded.model.contract,
        source="toy.csv",
        declaration=str(loaded.path),
    )
    assert list(result.columns) == ["size", "count", "colour", "label"]
    assert [str(t) for t in result.dtypes] == ["float64", "int64", "object", "int64"]
    assert len(result) == 12


# --- `lifecycle contract infer` ------------------------------------------------------------


def _animals(folder: Path) -> Path:
    """A generated training file: numeric, integer and categorical features, a string target
    with three classes."""
    rng = np.random.default_rng(7)
    rows = 90
    frame = pd.DataFrame(
        {
            "width": rng.normal(5.0, 1.0, rows).round(3),
            "legs": rng.integers(0, 9, rows),
            "habitat": rng.choice(["forest", "desert", "sea"], rows),
            "species": rng.choice(["ant", "bee", "cat"], rows),
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "animals.csv"
    frame.to_csv(path, index=False)
    return path


def test_contract_infer_writes_a_proposal_that_loads_and_touches_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    data = _animals(work)
    before = _tree(tmp_path)
    done = _real_lifecycle(work, tmp_path, "contract", "infer", "--data", "animals.csv",
                           "--target", "species", "--name", "animals")  # fmt: skip
    assert done.returncode == ExitCode.OK, done.stderr
    assert "wrote defs.yaml: a proposal from 90 rows" in done.stdout
    after = _tree(tmp_path)
    assert {k: v for k, v in after.items() if k != "work/defs.yaml"} == before
    everything = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert everything == ["work", "work/animals.csv", "work/defs.yaml"]  # no home, no temp

    loaded = load_declaration(work / "defs.yaml")
    document = yaml.safe_load(loaded.text())  # a component file, ready for a model folder
    assert list(document) == ["type", "attributes"] and document["type"] == COMPONENT_TYPE
    model = loaded.model
    assert model.name == "animals"
    assert (model.data.path, model.data.format) == ("data/animals.csv", "csv")
    # Its own tags, so that models sharing a registry never read each other's versions.
    assert (model.data.versions, model.data.batches) == ("animals-v*", "animals-batch-*")
    assert model.contract.target == "species"
    assert model.contract.task == "multiclass"
    assert [(c.value, c.name) for c in model.contract.classes or ()] == [
        ("ant", "ant"), ("bee", "bee"), ("cat", "cat"),
    ]  # fmt: skip
    assert {n: f.type for n, f in model.contract.features.items()} == {
        "width": "numeric", "legs": "integer", "habitat": "categorical",
    }  # fmt: skip
    assert model.contract.features["habitat"].categories == ("desert", "forest", "sea")
    assert all(f.range is None for f in model.contract.features.values())  # none guessed
    # Only a floor is proposed: beating chance (1/3 for three classes), for people to raise.
    assert {m: (g.comparison, g.threshold) for m, g in model.evaluation.gates.items()} == {
        "balanced_accuracy": (">=", 0.3333)
    }
    assert model.estimator.class_ == "sklearn.ensemble.RandomForestClassifier"
    assert "REVIEW BEFORE USE" in loaded.text()

    code, out, err = _lifecycle(capsys, "check", str(loaded.path), "--data", str(data), "--offline")
    assert (code, err) == (ExitCode.OK, ""), err
    assert "satisfies the contract (90 rows)" in out


def test_contract_infer_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _animals(tmp_path)
    output = tmp_path / "proposal.yaml"
    output.write_text("# reviewed by hand\n", encoding="utf-8")
    args = ("contract", "infer", "--data", str(data), "--output", str(output))

    code, out, err = _lifecycle(capsys, *args)
    assert code == ExitCode.REFUSED
    assert out == ""
    assert f"{output} exists; review it, or pass --force to replace it." in err
    assert output.read_text(encoding="utf-8") == "# reviewed by hand\n"

    code, out, err = _lifecycle(capsys, *args, "--force")
    assert (code, err) == (ExitCode.OK, "")
    assert load_declaration(output).model.contract.task == "multiclass"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["animals.csv", "proposal.yaml"]


DECLARING_PAGE = PROJECT_ROOT / "docs" / "declaring-a-model.md"


def _documented_example() -> str:
    """docs/declaring-a-model.md's example declaration: a whole model folder's defs.yaml, as
    written."""
    page = DECLARING_PAGE.read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in page.split("```yaml\n")[1:]]
    (example,) = [b for b in blocks if re.search(r"^ *name: loans", b, re.MULTILINE)]
    assert example.startswith(COMPONENT), "the documented example is not a whole defs.yaml"
    return example


def test_the_documented_example_declaration_loads_trains_and_fingerprints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The documented example is a declaration that works, not an illustration: it validates,
    and on data drawn from its own contract (with gaps where it declares them) the pipeline
    it builds trains, contains only its reviewed types, and fingerprints stably."""
    import numpy as np

    from lifecycle_pipeline.assets.features import FeaturesConfig, split
    from lifecycle_pipeline.assets.training import (
        TrainingConfig,
        check_trusted_types,
        fit,
        golden_inputs,
    )
    from lifecycle_pipeline.declaration import LoadedDeclaration
    from lifecycle_pipeline.lineage.fingerprint import fingerprint
    from lifecycle_pipeline.lineage.records import DataSnapshot, ResolvedVersion
    from lifecycle_pipeline.resources.codecs import dump_model
    from lifecycle_pipeline.tasks import task_for

    monkeypatch.setenv("LOANS_REGISTRY_URL", "/nowhere")
    path = DECLARING_PAGE
    declared = parse_declaration(_documented_example(), path)
    contract = declared.contract
    rng = np.random.default_rng(1)
    rows = 400
    data: dict[str, object] = {}
    for name, feature in contract.features.items():
        if feature.type == "categorical":
            data[name] = rng.choice(list(feature.categories or ("a", "b")), rows).astype(object)
        elif feature.type == "boolean":
            data[name] = rng.random(rows) < 0.3
        else:
            low, high = feature.range or (None, None)
            low, high = low or 0.0, high or 100_000.0
            values = rng.uniform(low, high, rows)
            data[name] = values.round() if feature.type == "integer" else values
        if feature.nullable:
            column = np.asarray(data[name], dtype="float64")
            column[rng.random(rows) < 0.1] = np.nan
            data[name] = column
    frame = pd.DataFrame(data)
    frame[contract.target] = (rng.random(rows) < 0.3).astype("int64")
    clean = validate(frame, contract, source="example", declaration=str(path))
    model = LoadedDeclaration(declared, path, "0" * 64)
    snapshot = DataSnapshot(clean, ResolvedVersion("data-v1", "r", "p", "c", "m", 0))
    features = split(snapshot, FeaturesConfig(), contract)
    pipeline, _ = fit(features, TrainingConfig(), declared)
    assert check_trusted_types(dump_model(pipeline), model) == list(
        declared.estimator.trusted_types
    )
    golden = golden_inputs(features, 16)
    outputs = task_for(contract.task).raw_outputs
    assert fingerprint(pipeline, golden, outputs) == fingerprint(pipeline, golden, outputs)


# --- the validation verdicts `lifecycle status` reuses --------------------------------------


def _sample_models(base: Path) -> Path:
    """A models folder holding copies of the two sample declarations."""
    models = base / "models"
    for name in ("breast_cancer", "diabetes"):
        shutil.copytree(PROJECT_ROOT / "models" / name, models / name)
    return models


def _count_validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The folder names every later validation is done for, in order."""
    from lifecycle_pipeline import declaration as module

    validated: list[str] = []
    real = module.load_model_folder

    def counted(folder: Path) -> module.LoadedDeclaration:
        validated.append(folder.name)
        return real(folder)

    monkeypatch.setattr(module, "load_model_folder", counted)
    return validated


def test_status_revalidates_only_what_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lifecycle_pipeline import declaration as module

    models = _sample_models(tmp_path)
    cache = tmp_path / "verdicts.json"
    validated = _count_validations(monkeypatch)
    assert module.valid_model_names(models, cache) == (["breast_cancer", "diabetes"], {})
    assert validated == ["breast_cancer", "diabetes"]
    validated.clear()
    assert module.valid_model_names(models, cache) == (["breast_cancer", "diabetes"], {})
    assert validated == []  # unchanged bytes, code and environment: the verdicts stand

    path = models / "diabetes" / "defs.yaml"
    path.write_text(path.read_text().replace("  out_of_range: flag", "  out_of_rnge: flag"))
    valid, broken = module.valid_model_names(models, cache)
    assert valid == ["breast_cancer"] and validated == ["diabetes"]
    assert "out_of_rnge: unknown key" in str(broken["diabetes"])
    validated.clear()
    module.valid_model_names(models, cache)
    assert validated == ["diabetes"]  # a broken declaration is checked every time

    validated.clear()
    monkeypatch.setattr(module, "_environment_digest", lambda: "another lock or package code")
    module.valid_model_names(models, cache)
    assert validated == ["breast_cancer", "diabetes"]  # a new environment judges again


def test_the_code_locations_verdicts_spare_status_its_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading a model folder as a component records its verdict; `status --model` and
    `history --model` then validate only a declaration nobody validated as it is."""
    from lifecycle_pipeline import declaration as module

    monkeypatch.setenv("LIFECYCLE_HOME", str(tmp_path / "home"))
    models = _sample_models(tmp_path)
    module.remember_valid(module.load_model_folder(models / "diabetes"))  # as LifecycleModel.load
    validated = _count_validations(monkeypatch)
    assert module.valid_model_names(models, only="diabetes") == (["diabetes"], {})
    assert validated == []
    assert module.valid_model_names(models, only="breast_cancer") == (["breast_cancer"], {})
    assert validated == ["breast_cancer"]
    path = models / "diabetes" / "defs.yaml"
    path.write_text(path.read_text().replace("  out_of_range: flag", "  out_of_rnge: flag"))
    valid, broken = module.valid_model_names(models, only="diabetes")
    assert valid == [] and "out_of_rnge: unknown key" in str(broken["diabetes"])


TEAM_MODULE = '''"""A team's estimator, imported by its declaration."""

from sklearn.ensemble import RandomForestClassifier


class TeamForest(RandomForestClassifier):
    pass
'''


def test_a_team_estimator_module_edited_in_place_is_validated_again(tmp_path: Path) -> None:
    """The verdicts cache is keyed on the module files the declaration resolved, not only on
    the declaration's bytes and the installed distributions: a team's own estimator module
    edited in place (no reinstall) makes `lifecycle status` validate again and say broken."""
    fault = case("keys and caches", "team estimator module edited in place")
    models = _sample_models(tmp_path)
    shutil.rmtree(models / "diabetes")
    team = tmp_path / "team"
    (team / "team_estimators").mkdir(parents=True)
    (team / "team_estimators" / "__init__.py").write_text("")
    module = team / "team_estimators" / "forest.py"
    module.write_text(TEAM_MODULE)
    declaration = models / "breast_cancer" / "defs.yaml"
    text = declaration.read_text()
    assert "class: sklearn.ensemble.RandomForestClassifier" in text
    declaration.write_text(
        text.replace(
            "class: sklearn.ensemble.RandomForestClassifier",
            "class: team_estimators.forest.TeamForest",
        )
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if k != "LIFECYCLE_MODEL"},
        "DAGSTER_HOME": str(home),
        "LIFECYCLE_HOME": str(tmp_path / "lifecycle_home"),
        "LIFECYCLE_AUDIT_DIR": str(tmp_path / "audit"),
        "LIFECYCLE_MODELS_DIR": str(models),
        "PYTHONPATH": str(team),
    }

    def status() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lifecycle_pipeline.cli", "status"], cwd=PROJECT_ROOT,
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    first = status()
    assert first.returncode == 0, first.stderr
    assert "BROKEN" not in first.stdout
    module.write_text(TEAM_MODULE.replace("class TeamForest", "class TeamForst"))  # in place
    second = status()
    assert second.returncode == 1, second.stdout + second.stderr
    assert "breast_cancer  BROKEN DECLARATION" in second.stdout
    assert fault.shown_in(second.stderr), second.stderr
