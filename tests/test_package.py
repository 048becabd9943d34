"""The deployment package: verify catches every tampering, parity holds, predict validates.

The first tests package the sample model through a real pipeline run; the later ones build
packages of other tasks (multiclass, regression) straight from the stage functions, so every
task's output and every feature type is proven out of process too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytest
import yaml

from lifecycle_pipeline.cli import main
from lifecycle_pipeline.declaration import (
    COMPONENT_TYPE,
    DECLARATION_FILE,
    LoadedDeclaration,
    load_declaration,
)
from lifecycle_pipeline.lineage.query import check_results, latest, metadata_values
from lifecycle_pipeline.lineage.records import EvaluationReport, FeatureSet, FileTree, TrainedModel
from lifecycle_pipeline.package import build, runtime
from lifecycle_pipeline.package.build import differing_columns
from lifecycle_pipeline.package.verify import verify_package
from lifecycle_pipeline.resources.codecs import decode
from lifecycle_pipeline.resources.signing import PackageSigner, ensure_dev_key, public_key_id
from tests.conftest import PROJECT_ROOT, Registry, restamped, scratch_pipeline
from tests.reliability.cases import PREDICT_INPUTS, Fault, case

# One worker: the module-scoped packages are built once, not once per xdist worker.
pytestmark = pytest.mark.xdist_group("package")

SAMPLE = PROJECT_ROOT / "models" / "breast_cancer" / DECLARATION_FILE
TASK_COLUMNS = ["probability", "label"]  # the sample is a binary task


class Packaged(NamedTuple):
    package: Path
    public_key: Path
    predictions: pd.DataFrame
    test_rows: pd.DataFrame


@pytest.fixture(scope="module")
def packaged(demo_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Packaged:
    """One packaged demo version, with evaluation's predictions and the held-out rows."""
    with scratch_pipeline(demo_registry, tmp_path_factory.mktemp("packaged")) as pipeline:
        instance = pipeline.instance
        result = pipeline.run("data-v1")
        assert result.success
        checks = check_results(instance, result.run_id)
        package_asset = pipeline.model.asset("deployment_package")
        assert checks[f"{package_asset}:prediction_parity"].passed
        assert checks[f"{package_asset}:package_verifies"].passed
        package = Path(metadata_values(latest(instance, package_asset, "data-v1"))["artifact/uri"])
        evaluation = metadata_values(latest(instance, pipeline.key("evaluation"), "data-v1"))
        features = metadata_values(latest(instance, pipeline.key("features"), "data-v1"))
    report = decode(Path(evaluation["artifact/uri"]).read_bytes(), source="evaluation")
    feature_set = decode(Path(features["artifact/uri"]).read_bytes(), source="features")
    test_rows = feature_set.test[list(feature_set.feature_columns)]
    return Packaged(package, PackageSigner().key_pair()[1], report.predictions, test_rows)


def copy_of(package: Path, tmp_path: Path) -> Path:
    target = tmp_path / "package"
    shutil.copytree(package, target)
    return target


def verify_cli(
    package: Path, public: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """``lifecycle verify PACKAGE --public-key PUBLIC``: exit code, stdout, stderr."""
    capsys.readouterr()
    code = main(["verify", str(package), "--public-key", str(public)])
    out, err = capsys.readouterr()
    return code, out, err


def test_fresh_package_verifies_as_folder_and_archive(packaged: Packaged) -> None:
    package, public, _, _ = packaged
    assert verify_package(package, public).ok
    assert verify_package(Path(f"{package}.zip"), public).ok
    assert sorted(p.name for p in package.iterdir()) == sorted(
        [
            "documentation.html",
            "golden_inputs.parquet",
            "golden_outputs.parquet",
            "input_schema.json",
            "manifest.json",
            "model.sig",
            "model.skops",
            "model_card.md",
            "output_schema.json",
            "predict.py",
            "README.md",
            "requirements.txt",
            "uv.lock",
        ]
    )
    sample = load_declaration(SAMPLE)
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["declaration"] == {"name": sample.name, "sha256": sample.sha256}
    assert manifest["task"] == sample.model.contract.task
    assert manifest["model"]["trusted_types"] == list(sample.model.estimator.trusted_types)


def test_flipped_model_byte_fails_naming_the_file(
    packaged: Packaged, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fault = case("tampering", "package: model byte flipped")
    package, public, _, _ = packaged
    copy = copy_of(package, tmp_path)
    model = copy / "model.skops"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    code, _, err = verify_cli(copy, public, capsys)
    assert code == 1, err
    assert fault.shown_in(err), err
    assert f"{model}: sha256 {hashlib.sha256(data).hexdigest()} differs" in err
    assert "the signed digest differs for model.skops" in err  # the signature names it too


def test_edited_predict_py_fails_naming_the_file(packaged: Packaged, tmp_path: Path) -> None:
    """The package's own entry point is a listed file like any other: an edit to it is caught
    by its digest, not only by the signature (a mutation run once let predict.py out)."""
    package, public, _, _ = packaged
    copy = copy_of(package, tmp_path)
    entry = copy / "predict.py"
    edited = entry.read_bytes() + b"\nimport os  # an added line\n"
    entry.write_bytes(edited)
    report = verify_package(copy, public)
    assert not report.ok
    assert f"{entry}: sha256 {hashlib.sha256(edited).hexdigest()} differs" in "\n".join(
        report.problems
    ), report.problems


def test_edited_manifest_fails_naming_the_file(
    packaged: Packaged, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fault = case("tampering", "package: manifest edited")
    package, public, _, _ = packaged
    copy = copy_of(package, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["evaluation"]["metrics"]["recall"] = 1.0
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = verify_cli(copy, public, capsys)
    assert code == 1, err
    assert fault.shown_in(err), err


def test_removed_signature_fails_naming_the_file(
    packaged: Packaged, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fault = case("tampering", "package: signature removed")
    package, public, _, _ = packaged
    copy = copy_of(package, tmp_path)
    (copy / "model.sig").unlink()
    code, _, err = verify_cli(copy, public, capsys)
    assert code == 1, err
    assert fault.shown_in(err), err
    assert f"{copy / 'model.sig'}: signature file is missing" in err


def test_foreign_key_does_not_verify(
    packaged: Packaged,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fault = case("tampering", "package: signed by another key")
    package, _, _, _ = packaged
    monkeypatch.setenv("LIFECYCLE_HOME", str(tmp_path / "other"))
    _, other_public = ensure_dev_key()
    code, _, err = verify_cli(package, other_public, capsys)
    assert code == 1, err
    assert fault.shown_in(err), err
    assert f"does not verify with {other_public}" in err


def run_predict(
    package: Path, source: Path, target: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """The package's own predict.py in a fresh, isolated interpreter in which importing
    lifecycle_pipeline is impossible: only the package's files, as production runs it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    blocker = (
        "import runpy, sys; sys.modules['lifecycle_pipeline'] = None; "
        f"sys.argv = ['predict.py', {str(source)!r}, {str(target)!r}, *{list(args)!r}]; "
        "runpy.run_path('predict.py', run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-I", "-c", blocker],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_parity_in_a_separate_process_is_bit_for_bit(packaged: Packaged, tmp_path: Path) -> None:
    """Only the package's files, a fresh interpreter, and no lifecycle_pipeline importable."""
    package, _, predictions, test_rows = packaged
    alone = copy_of(package, tmp_path)
    source, target = tmp_path / "rows.parquet", tmp_path / "out.parquet"
    test_rows.to_parquet(source, index=False)
    done = run_predict(alone, source, target)  # the declared policy: flag
    assert done.returncode == 0, done.stderr
    produced = pd.read_parquet(target)
    assert list(produced.columns) == [*TASK_COLUMNS, runtime.FLAG_COLUMN]
    assert differing_columns(predictions[TASK_COLUMNS], produced[TASK_COLUMNS]) == []


def test_every_golden_row_passes_predict_py_with_the_default_policy(
    packaged: Packaged, tmp_path: Path
) -> None:
    """Golden rows are held-out rows and training extremes: inside the declared domain, so
    none is refused; those beyond the training range are scored and flagged, and the output
    equals golden_outputs.parquet bit for bit."""
    package = packaged.package
    source, target = tmp_path / "golden.parquet", tmp_path / "out.parquet"
    golden = pd.read_parquet(package / "golden_inputs.parquet")
    golden.to_parquet(source)
    done = run_predict(package, source, target)
    assert done.returncode == 0, done.stderr
    produced = pd.read_parquet(target)
    assert len(produced) == len(golden)
    expected = pd.read_parquet(package / "golden_outputs.parquet")
    assert list(expected.columns) == TASK_COLUMNS
    assert differing_columns(expected, produced[TASK_COLUMNS]) == []
    assert produced[runtime.FLAG_COLUMN].dtype == "int64"
    assert (produced[runtime.FLAG_COLUMN] >= 0).all()


def _edited(test_rows: pd.DataFrame, tmp_path: Path, column: str, row: int, value: float) -> Path:
    frame = test_rows.head(6).reset_index(drop=True).copy()
    frame.loc[row, column] = value
    path = tmp_path / "input.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("fault", PREDICT_INPUTS, ids=[f.name for f in PREDICT_INPUTS])
def test_predict_rejects_bad_rows_naming_row_and_column(
    packaged: Packaged, tmp_path: Path, capsys: pytest.CaptureFixture[str], fault: Fault
) -> None:
    package, _, _, test_rows = packaged
    source = tmp_path / "input.csv"
    source.write_bytes(fault.value(test_rows.head(6).reset_index(drop=True).copy()))
    assert main(["predict", str(package), str(source), "--output", str(tmp_path / "p.csv")]) == 2
    assert fault.expected in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.csv"]  # nothing written


def test_a_declared_domain_bound_refuses_naming_row_column_value_and_bound(
    packaged: Packaged, tmp_path: Path
) -> None:
    """The sample declares measurements >= 0: a negative one is refused under any policy."""
    package, _, _, test_rows = packaged
    source = _edited(test_rows, tmp_path, "worst_radius", 2, -5.0)
    for policy in ([], ["--out-of-range", "reject"]):
        done = run_predict(package, source, tmp_path / "out.csv", *policy)
        assert done.returncode == 2, done.stderr
        assert (
            "InputError: row 2, column 'worst_radius': -5 outside the declared domain [0, +inf)"
            in done.stderr
        ), done.stderr
        assert not (tmp_path / "out.csv").exists()


def test_a_value_beyond_the_training_range_is_flagged_or_refused_under_reject(
    packaged: Packaged, tmp_path: Path
) -> None:
    package, _, predictions, test_rows = packaged
    source = _edited(test_rows, tmp_path, "worst_radius", 2, 500.0)
    out = tmp_path / "out.csv"
    done = run_predict(package, source, out)  # the declared policy: flag
    assert done.returncode == 0, done.stderr
    assert "row 2, column 'worst_radius': 500 outside the training range [" in done.stderr
    scored = pd.read_csv(out, float_precision="round_trip", index_col="row")
    assert len(scored) == 6
    assert scored[runtime.FLAG_COLUMN][2] >= 1
    # Untouched rows score exactly as in evaluation.
    assert scored["probability"][0] == predictions["probability"][0]
    out.unlink()
    refused = run_predict(package, source, out, "--out-of-range", "reject")
    assert refused.returncode == 2
    assert (
        "InputError: row 2, column 'worst_radius': 500 outside the training range ["
        in refused.stderr
    ), refused.stderr
    assert "the out-of-range policy is 'reject'" in refused.stderr
    assert not out.exists()


def test_untrusted_type_in_model_is_refused(packaged: Packaged, tmp_path: Path) -> None:
    import skops.io as sio

    fault = case("tampering", "package: untrusted skops type")
    package, _, _, _ = packaged
    copy = copy_of(package, tmp_path)
    (copy / "model.skops").write_bytes(sio.dumps({"payload": pd.Timestamp("2026-01-01")}))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["model.skops"] = hashlib.sha256(
        (copy / "model.skops").read_bytes()
    ).hexdigest()
    with pytest.raises(runtime.PackageError) as error:
        runtime.load_model(copy, manifest)
    assert fault.shown_in(str(error.value)), error.value


def test_a_model_type_missing_from_the_manifest_list_is_refused_by_name(
    packaged: Packaged, tmp_path: Path
) -> None:
    """predict.py trusts exactly the types the manifest records, nothing by default."""
    package, _, _, test_rows = packaged
    copy = copy_of(package, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["model"]["trusted_types"] = []  # the forest's tree type is no longer listed
    (copy / "manifest.json").write_text(json.dumps(manifest))
    source = tmp_path / "rows.parquet"
    test_rows.head(3).to_parquet(source)
    done = run_predict(copy, source, tmp_path / "out.parquet")
    assert done.returncode == 2
    assert "model.skops: untrusted type(s) ['sklearn.tree._tree.Tree']; refusing to load" in (
        done.stderr
    ), done.stderr
    assert not (tmp_path / "out.parquet").exists()


def test_dev_signing_key_is_private_and_ignored_by_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.hazmat.primitives import serialization

    monkeypatch.setenv("LIFECYCLE_HOME", str(tmp_path))
    private, public = ensure_dev_key()
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    # The public file is the public half of this private key, as verification needs.
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    assert public.read_bytes() == key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".lifecycle/keys/signing-key.pem"],
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    assert ignored.returncode == 0


def held_out(rows: pd.DataFrame) -> FeatureSet:
    """A feature set whose held-out split is ``rows`` (what the parity check scores)."""
    return FeatureSet(
        train=rows,
        test=rows,
        feature_columns=tuple(rows.columns),
        target=load_declaration(SAMPLE).model.contract.target,
        seed=0,
        test_size=0.25,
        data_md5="",
    )


def report(predictions: pd.DataFrame) -> EvaluationReport:
    """An evaluation that recorded ``predictions`` (what parity compares against)."""
    return EvaluationReport(
        metrics={},
        slices={},
        gates=(),
        predictions=predictions,
        model_fingerprint="",
        decision_threshold=0.5,
    )


def test_parity_check_fails_on_a_one_ulp_difference(packaged: Packaged, tmp_path: Path) -> None:
    from lifecycle_pipeline.assets.packaging import parity

    package, _, predictions, test_rows = packaged
    feature_set = held_out(test_rows)

    assert parity(package, feature_set, report(predictions), tmp_path).passed
    nudged = predictions.copy()
    probability = nudged["probability"].to_numpy(copy=True)
    probability[3] = np.nextafter(probability[3], 2.0)
    nudged["probability"] = probability
    result = parity(package, feature_set, report(nudged), tmp_path)
    assert not result.passed
    assert result.metadata["differing_rows"].value == 1
    relabelled = predictions.copy()
    relabelled["label"] = np.where(
        relabelled.index == 5, 1 - relabelled["label"], relabelled["label"]
    )
    result = parity(package, feature_set, report(relabelled), tmp_path)
    assert not result.passed
    assert result.metadata["differing_rows"].value == 1


def test_dev_key_created_by_racing_processes_is_one_matching_pair(
    packaged: Packaged, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Concurrent first runs on a fresh machine must not sign with mismatched halves.

    Six processes start with no key; each creates one (or finds the winner's) and signs its own
    copy of a package. Every copy must then verify against the one pair left on disk.
    """
    fault = case("concurrency", "dev key race")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from lifecycle_pipeline.resources.signing import PackageSigner\n"
        "print(PackageSigner().sign(Path(sys.argv[1])))\n"
    )
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFECYCLE_SIGNING_")}
    env["LIFECYCLE_HOME"] = str(home)
    copies = [copy_of(packaged.package, tmp_path / f"racer-{n}") for n in range(6)]
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(copy)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for copy in copies
    ]
    outputs = [racer.communicate(timeout=300) for racer in racers]
    assert [racer.returncode for racer in racers] == [0] * 6, [e[-2000:] for _, e in outputs]
    keys = home / "keys"
    assert sorted(p.name for p in keys.iterdir()) == ["signing-key.pem", "signing-key.pub"]
    assert not [p for p in home.iterdir() if p.name.startswith(".keys-")]
    public = keys / "signing-key.pub"
    assert {out.strip() for out, _ in outputs} == {public_key_id(public)}
    for copy in copies:
        code, out, err = verify_cli(copy, public, capsys)
        assert code == 0, err
        assert fault.shown_in(out), out


# --- packages of other tasks, built straight from the stage functions ----------------------

MULTICLASS = """\
name: garden_iris
description: Which iris species a flower is, from its measurements and where it grew.
data: {path: data/iris.csv}
contract:
  target: species
  task: multiclass
  row: one iris flower
  classes:
    - {value: 0, name: setosa}
    - {value: 1, name: versicolor}
    - {value: 2, name: virginica}
  features:
    sepal_length: {type: numeric, range: [0, 100], unit: cm}
    sepal_width: {type: numeric, range: [0, null], nullable: true, unit: cm}
    petal_length: {type: numeric, range: [0, null], unit: cm}
    petal_width: {type: numeric, range: [0, null], unit: cm}
    garden: {type: categorical, categories: ["01", "02", "03"]}
    beds: {type: integer, range: [1, null]}
    wild: {type: boolean}
estimator:
  class: sklearn.ensemble.RandomForestClassifier
  params: {n_estimators: 20}
  trusted_types: [sklearn.tree._tree.Tree]
evaluation:
  gates: {macro_f1: {min: 0.5}}
"""

# Data as it really arrives: a pandas-written Parquet file (nullable Int64 and boolean
# columns), category codes with leading zeros, gaps in every nullable column, and a binary
# label stored as floats; the estimator needs imputation and scaling.
EDGE = """\
name: edge_cases
description: Whether a case is positive, from coded and partly missing inputs.
data: {path: data/edge.parquet, format: parquet}
contract:
  target: outcome
  task: binary
  row: one case
  classes:
    - {value: 0, name: negative}
    - {value: 1, name: positive, positive: true}
  features:
    code: {type: categorical, nullable: true, categories: ["007", "012", "120"]}
    visits: {type: integer, nullable: true, range: [0, null]}
    urgent: {type: boolean, nullable: true}
    level: {type: numeric, nullable: true}
estimator:
  class: sklearn.linear_model.LogisticRegression
  params: {max_iter: 1000}
  scale: true
  impute: median
  trusted_types: [numpy.dtype]   # the imputer records its input dtype
evaluation:
  gates: {roc_auc: {min: 0.6}}
"""


def declare(folder: Path, text: str) -> LoadedDeclaration:
    """A model folder whose defs.yaml holds ``text`` (a declaration) as the attributes of the
    lifecycle component, loaded."""
    folder.mkdir(parents=True, exist_ok=True)
    component = {"type": COMPONENT_TYPE, "attributes": yaml.safe_load(text)}
    path = folder / DECLARATION_FILE
    path.write_text(yaml.safe_dump(component, sort_keys=False), encoding="utf-8")
    return load_declaration(path)


def edge_frame() -> pd.DataFrame:
    """Parsed the way data_snapshot parses it, from the bytes pandas writes."""
    from lifecycle_pipeline.contract import parse

    rng = np.random.default_rng(3)
    rows = 500
    code = rng.choice(["007", "012", "120"], rows).astype(object)
    visits = pd.array(rng.integers(0, 9, rows), dtype="Int64")
    urgent = pd.array(rng.random(rows) < 0.4, dtype="boolean")
    level = rng.normal(size=rows)
    score = level + (code == "007") * 1.2 + np.asarray(visits, dtype="float64") / 4
    outcome = (score + rng.normal(scale=0.5, size=rows) > 1.0).astype("float64")
    gaps = rng.random(rows) < 0.08
    code[gaps] = None
    visits[rng.random(rows) < 0.08] = pd.NA
    urgent[rng.random(rows) < 0.08] = pd.NA
    level[rng.random(rows) < 0.08] = np.nan
    frame = pd.DataFrame(
        {"code": code, "visits": visits, "urgent": urgent, "level": level, "outcome": outcome}
    )
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return parse(buffer.getvalue(), source="edge.parquet", fmt="parquet")


class Direct(NamedTuple):
    package: Path
    declaration: LoadedDeclaration
    features: FeatureSet
    model: TrainedModel
    report: EvaluationReport


def build_direct(declaration: LoadedDeclaration, frame: pd.DataFrame, folder: Path) -> Direct:
    """A signed package of ``declaration`` trained on ``frame``: the asset's steps, no Dagster."""
    from lifecycle_pipeline.assets.evaluation import evaluate
    from lifecycle_pipeline.assets.features import FeaturesConfig, split
    from lifecycle_pipeline.assets.training import (
        TrainingConfig,
        check_trusted_types,
        fit,
        golden_inputs,
    )
    from lifecycle_pipeline.contract import validate
    from lifecycle_pipeline.gates import gates_for
    from lifecycle_pipeline.lineage.fingerprint import fingerprint
    from lifecycle_pipeline.lineage.records import DataSnapshot, ResolvedVersion
    from lifecycle_pipeline.resources.codecs import dump_model
    from lifecycle_pipeline.tasks import task_for

    declared = declaration.model
    task = task_for(declared.contract.task)
    clean = validate(frame, declared.contract, source="test", declaration=str(declaration.path))
    version = ResolvedVersion("v1", "memory", "data", "0" * 40, "0" * 32, 0)
    features = split(DataSnapshot(clean, version), FeaturesConfig(), declared.contract)
    config = TrainingConfig()
    pipeline, _ = fit(features, config, declared)
    skops = dump_model(pipeline)
    golden = golden_inputs(features, config.golden_rows)
    prints = fingerprint(pipeline, golden, task.raw_outputs)
    lineage = {
        "data_md5": features.data_md5,
        "code": {"commit": "test"},
        "config_hash": "test",
        "declaration": {"name": declaration.name, "sha256": declaration.sha256},
        "estimator": {
            "class": declared.estimator.class_,
            "trusted_types": check_trusted_types(skops, declaration),
        },
        "fingerprint": prints.to_dict(),
    }
    model = TrainedModel(pipeline, golden, prints, lineage, skops=skops)
    report = evaluate(model, features, declared, gates_for(declared.evaluation, {}, "test"), task)
    signer = PackageSigner()
    direct = Direct(folder, declaration, features, model, report)
    build.write_folder(build.build_files(package_inputs(direct, signer)), folder)
    signer.sign(folder)
    return direct


def package_inputs(direct: Direct, signer: PackageSigner) -> build.PackageInputs:
    documents = {"model_card.md": b"# card", "documentation.html": b"<html></html>"}
    return build.PackageInputs(
        partition="v1",
        declaration=direct.declaration,
        model=direct.model,
        features=direct.features,
        evaluation=direct.report,
        documentation=FileTree(kind="documentation", files=documents),
        lock=(PROJECT_ROOT / "uv.lock").read_bytes(),
        public_key_id=public_key_id(signer.key_pair()[1]),
    )


def iris_frame() -> pd.DataFrame:
    """Iris with a categorical coded as text ('01', '02'; '03' declared but never seen), whole
    numbers, booleans and some missing values in the nullable column."""
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    frame.columns = [
        "sepal_length", "sepal_width", "petal_length", "petal_width", "species",
    ]  # fmt: skip
    rows = np.arange(len(frame))
    frame.insert(4, "garden", np.where(rows % 2 == 0, "01", "02"))
    frame.insert(5, "beds", (rows % 7 + 1).astype("int64"))
    frame.insert(6, "wild", rows % 3 == 0)
    frame.loc[rows % 15 == 4, "sepal_width"] = np.nan
    return frame


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory: pytest.TempPathFactory) -> Direct:
    base = tmp_path_factory.mktemp("multiclass")
    return build_direct(declare(base / "garden_iris", MULTICLASS), iris_frame(), base / "package")


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Direct:
    base = tmp_path_factory.mktemp("edge")
    return build_direct(declare(base / "edge_cases", EDGE), edge_frame(), base / "package")


def test_the_package_carries_the_model_bytes_training_stored(multiclass: Direct) -> None:
    """Not a re-dump: the package's model.skops is the trained artifact's, byte for byte
    (restamped here, so a fresh dump, which skops dates now, could not match)."""
    model = dataclasses.replace(multiclass.model, skops=restamped(multiclass.model.skops_bytes()))
    files = build.build_files(package_inputs(multiclass._replace(model=model), PackageSigner()))
    assert files["model.skops"] == model.skops
    manifest = json.loads(files["manifest.json"])
    assert manifest["files"]["model.skops"] == hashlib.sha256(model.skops).hexdigest()


def test_edge_data_is_typed_as_declared_before_training(edge: Direct) -> None:
    """Nullable ints are floats with NaN, gaps in codes are None (never NaN or pd.NA, which an
    encoder would learn as two categories), codes keep their zeros, labels are the ints."""
    train = edge.features.train
    assert train["visits"].dtype == "float64" and train["visits"].isna().any()
    assert train["urgent"].dtype == "float64" and train["urgent"].isna().any()
    assert set(train["code"].dropna()) == {"007", "012", "120"}
    assert train["code"].isna().any() and all(
        v is None for v in train["code"] if v != v or v is None
    )
    assert train["outcome"].dtype == "int64" and set(train["outcome"]) == {0, 1}
    assert list(edge.model.pipeline.named_steps) == ["preprocess", "classifier"]


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> Direct:
    from lifecycle_pipeline.sample_data import diabetes_frame

    base = tmp_path_factory.mktemp("regression")
    declaration = load_declaration(PROJECT_ROOT / "models" / "diabetes" / DECLARATION_FILE)
    return build_direct(declaration, diabetes_frame(), base / "package")


def _task_columns(direct: Direct) -> list[str]:
    return [c for c in direct.report.predictions.columns if c != "row_id"]


@pytest.mark.parametrize("fixture", ["multiclass", "regression", "edge"])
def test_each_task_scores_out_of_process_exactly_as_evaluation(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """CSV in (categories read as text, booleans and whole numbers typed), the task's columns
    out, bit for bit what evaluation recorded; the package verifies, golden digest included."""
    direct: Direct = request.getfixturevalue(fixture)
    rows = direct.features.test[list(direct.features.feature_columns)]
    source, target = tmp_path / "rows.csv", tmp_path / "out.parquet"
    rows.to_csv(source, index=False)
    done = run_predict(direct.package, source, target)
    assert done.returncode == 0, done.stderr
    produced = pd.read_parquet(target)
    columns = _task_columns(direct)
    assert list(produced.columns) == [*columns, runtime.FLAG_COLUMN]
    assert differing_columns(direct.report.predictions[columns], produced[columns]) == []
    report = verify_package(direct.package, PackageSigner().key_pair()[1])
    assert report.ok, report.render()
    recorded, recomputed = runtime.golden_digest(direct.package)
    assert recorded == recomputed == direct.model.fingerprint.predictions
    schema = json.loads((direct.package / "output_schema.json").read_text())
    assert schema["task"] == direct.declaration.model.contract.task
    assert [c["name"] for c in schema["columns"]] == [*columns, runtime.FLAG_COLUMN]


def test_input_schema_carries_the_contract_and_what_training_saw(multiclass: Direct) -> None:
    schema = json.loads((multiclass.package / "input_schema.json").read_text())
    assert schema["out_of_range"] == "flag"
    assert schema["unseen_categories"] == "ignore"
    columns = {c["name"]: c for c in schema["columns"]}
    assert list(columns) == list(multiclass.declaration.model.contract.feature_names)
    train = multiclass.features.train
    length = columns["sepal_length"]
    assert (length["type"], length["dtype"], length["nullable"]) == ("numeric", "float64", False)
    assert (length["domain_min"], length["domain_max"]) == (0, 100)
    assert (length["train_min"], length["train_max"]) == (
        train["sepal_length"].min(),
        train["sepal_length"].max(),
    )
    assert (columns["sepal_width"]["nullable"], columns["sepal_width"]["domain_max"]) == (
        True,
        None,
    )
    assert columns["beds"]["dtype"] == "int64"
    garden = columns["garden"]
    assert garden["categories"] == ["01", "02", "03"]
    assert garden["train_categories"] == ["01", "02"]
    assert "train_min" not in garden
    assert columns["wild"]["dtype"] == "bool"
    assert "range_tolerance" not in json.dumps(schema)


def _iris_rows(multiclass: Direct, tmp_path: Path, **cells: tuple[int, Any]) -> Path:
    frame = multiclass.features.test[list(multiclass.features.feature_columns)].head(6)
    frame = frame.reset_index(drop=True).astype(object)
    for column, (row, value) in cells.items():
        frame.at[row, column] = value
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        ({"garden": (1, "04")}, "row 1, column 'garden': '04' is not a declared category "
         "('01', '02', '03')"),
        ({"beds": (3, 0)}, "row 3, column 'beds': 0 outside the declared domain [1, +inf)"),
        ({"beds": (2, 2.5)}, "row 2, column 'beds': 2.5 is not a whole number"),
        ({"sepal_length": (4, 101)},
         "row 4, column 'sepal_length': 101 outside the declared domain [0, 100]"),
        ({"petal_width": (0, None)}, "row 0, column 'petal_width': missing value"),
        ({"wild": (5, "maybe")}, "row 5, column 'wild': 'maybe' is not a boolean"),
        ({"petal_length": (1, "long")}, "row 1, column 'petal_length': 'long' is not a number"),
    ],
    ids=["undeclared category", "below domain", "fraction in integer", "above domain",
         "null not nullable", "not a boolean", "text in numeric"],
)  # fmt: skip
def test_predict_refuses_values_the_contract_excludes(
    multiclass: Direct, tmp_path: Path, cells: dict[str, tuple[int, Any]], expected: str
) -> None:
    source = _iris_rows(multiclass, tmp_path, **cells)
    # The domain is judged before the policy is: 'flag' (the declared one) refuses too.
    done = run_predict(multiclass.package, source, tmp_path / "out.csv", "--out-of-range", "flag")
    assert done.returncode == 2, done.stderr
    assert f"InputError: {expected}" in done.stderr, done.stderr
    assert not (tmp_path / "out.csv").exists()


def test_unseen_categories_and_nulls_where_nullable_are_scored_and_flagged(
    multiclass: Direct, tmp_path: Path
) -> None:
    """'03' is declared but was never trained on: flagged (the encoder ignores it); a missing
    value in a nullable column is no flag; 'true'/'false' text reads as booleans."""
    source = _iris_rows(
        multiclass, tmp_path, garden=(1, "03"), sepal_width=(2, None), wild=(3, "false")
    )
    out = tmp_path / "out.csv"
    done = run_predict(multiclass.package, source, out)
    assert done.returncode == 0, done.stderr
    assert "row 1, column 'garden': '03' was never seen in training" in done.stderr
    scored = pd.read_csv(out, index_col="row")
    assert scored[runtime.FLAG_COLUMN][1] >= 1
    assert len(scored) == 6
    refused = run_predict(multiclass.package, source, out, "--out-of-range", "reject")
    assert refused.returncode == 2
    assert "row 1, column 'garden': '03' was never seen in training" in refused.stderr


def test_unseen_categories_are_refused_when_the_model_refuses_them(multiclass: Direct) -> None:
    """A model declared with unseen_categories: error would fail in its encoder: refused first,
    by name, under either policy."""
    manifest = runtime.load_manifest(multiclass.package)
    schema = runtime.read_json(multiclass.package, "input_schema.json", manifest)
    strict = {**schema, "unseen_categories": "error"}
    frame = multiclass.features.test[list(multiclass.features.feature_columns)].head(3).copy()
    frame["garden"] = frame["garden"].astype(object)
    frame.loc[frame.index[1], "garden"] = "03"
    for policy in ("flag", "reject"):
        with pytest.raises(
            runtime.InputError,
            match=r"column 'garden': '03' was never seen in "
            r"training and this model refuses unseen categories",
        ):
            runtime.validate_input(frame, strict, policy)
    checked = runtime.validate_input(frame, schema, "flag")
    assert checked.flags.tolist()[1] >= 1


@pytest.mark.parametrize("task", ["binary", "binary_text", "multiclass", "regression"])
def test_the_runtime_mirrors_each_task_bit_for_bit(task: str, tmp_path: Path) -> None:
    """predict.py cannot import tasks/: its columns must equal task.predictions exactly."""
    from lifecycle_pipeline.package.build import output_schema
    from lifecycle_pipeline.tasks import task_for

    choices: dict[str, list[object]] = {
        "binary": [0, 1], "binary_text": ["no", "yes"], "multiclass": [3, 5, 9], "regression": [],
    }  # fmt: skip
    classes = choices[task]
    kind = "binary" if task.startswith("binary") else task
    positive = ", positive: true" if kind == "binary" else ""
    listed = "".join(
        f"\n    - {{value: {c!r}, name: class {c}{positive if i == 1 else ''}}}"
        for i, c in enumerate(classes)
    )
    text = MULTICLASS.replace("task: multiclass", f"task: {kind}").replace(
        "  classes:\n    - {value: 0, name: setosa}\n    - {value: 1, name: versicolor}\n"
        "    - {value: 2, name: virginica}",
        f"  classes:{listed}" if classes else "",
    )
    gate = {"binary": "roc_auc: {min: 0.5}", "multiclass": "macro_f1: {min: 0.5}",
            "regression": "r2: {min: 0.0}"}[kind]  # fmt: skip
    text = text.replace("  gates: {macro_f1: {min: 0.5}}", f"  gates: {{{gate}}}")
    if kind == "regression":
        text = text.replace("RandomForestClassifier", "RandomForestRegressor")
    else:
        text = text.replace("evaluation:\n", "evaluation:\n  decision_threshold: 0.3\n")
    declaration = declare(tmp_path / "garden_iris", text)
    declared = declaration.model
    rng = np.random.default_rng(7)
    if kind == "regression":
        raw = rng.normal(size=50) * 1e3
    else:
        raw = rng.dirichlet(np.ones(len(classes)), size=50)
        raw[0] = 1.0 / len(classes)  # ties: argmax picks the first class in both
    expected = task_for(kind).predictions(raw, classes, declared.contract, declared.evaluation)
    schema = json.loads(json.dumps(output_schema(classes, declaration)))
    mirrored = runtime.prediction_frame(raw, schema)
    assert differing_columns(expected, mirrored) == []
    assert [str(d) for d in mirrored.dtypes] == [str(d) for d in expected.dtypes]


def test_a_model_trained_under_another_declaration_is_not_packaged(
    multiclass: Direct, tmp_path: Path
) -> None:
    """The package's schemas come from the declaration: the model must have been trained under
    exactly that one, or the two would disagree."""
    from dataclasses import replace

    from lifecycle_pipeline.lineage.records import FileTree
    from lifecycle_pipeline.package.build import PackageBuildError, PackageInputs, build_files

    lineage = {**multiclass.model.lineage, "declaration": {"name": "garden_iris", "sha256": "0"}}
    inputs = PackageInputs(
        partition="v1",
        declaration=multiclass.declaration,
        model=replace(multiclass.model, lineage=lineage),
        features=multiclass.features,
        evaluation=multiclass.report,
        documentation=FileTree(
            kind="documentation", files={"model_card.md": b"", "documentation.html": b""}
        ),
        lock=b"",
        public_key_id="",
    )
    with pytest.raises(PackageBuildError, match="re-run training and evaluation with this decl"):
        build_files(inputs)


TEAM_ESTIMATOR = '''"""A team's own estimator in its own package: scikit-learn's contract only."""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted, validate_data


class CentroidClassifier(ClassifierMixin, BaseEstimator):
    def __init__(self, temperature=1.0):
        self.temperature = temperature

    def fit(self, X, y):
        X, y = validate_data(self, X, y)
        self.classes_ = np.unique(y)
        self.centroids_ = np.array([X[y == c].mean(axis=0) for c in self.classes_])
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        distance = ((X[:, None, :] - self.centroids_[None]) ** 2).sum(axis=-1)
        weight = np.exp(-(distance - distance.min(axis=1, keepdims=True)) / self.temperature)
        return weight / weight.sum(axis=1, keepdims=True)

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
'''


def test_a_teams_own_estimator_class_trains_ships_and_scores_once_its_type_is_reviewed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`estimator.class` names any scikit-learn-compatible class in the team's own package;
    skops loads it only once the declaration lists it as reviewed, never with trust-all."""
    from lifecycle_pipeline.assets.training import EstimatorError

    team = tmp_path / "team"
    (team / "team_models").mkdir(parents=True)
    (team / "team_models" / "__init__.py").write_text("")
    (team / "team_models" / "centroid.py").write_text(TEAM_ESTIMATOR)
    monkeypatch.syspath_prepend(str(team))
    own = MULTICLASS.replace(
        "  class: sklearn.ensemble.RandomForestClassifier\n  params: {n_estimators: 20}\n"
        "  trusted_types: [sklearn.tree._tree.Tree]",
        "  class: team_models.centroid.CentroidClassifier\n  params: {temperature: 2.0}\n"
        "  scale: true\n  impute: median\n  trusted_types: []",
    )
    assert own != MULTICLASS
    with pytest.raises(EstimatorError, match=r"team_models.centroid.CentroidClassifier"):
        build_direct(declare(tmp_path / "garden_iris", own), iris_frame(), tmp_path / "no")
    reviewed = own.replace(
        "trusted_types: []", "trusted_types: [numpy.dtype, team_models.centroid.CentroidClassifier]"
    )
    direct = build_direct(declare(tmp_path / "garden_iris", reviewed), iris_frame(), tmp_path / "p")
    report = verify_package(direct.package, PackageSigner().key_pair()[1])
    assert report.ok, report.render()
    rows = direct.features.test[list(direct.features.feature_columns)]
    source, target = tmp_path / "rows.csv", tmp_path / "out.parquet"
    rows.to_csv(source, index=False)
    done = subprocess.run(  # production: the package plus the team's installed code
        [sys.executable, "predict.py", str(source), str(target)],
        cwd=direct.package,
        env={**os.environ, "PYTHONPATH": str(team)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    columns = _task_columns(direct)
    produced = pd.read_parquet(target)
    assert differing_columns(direct.report.predictions[columns], produced[columns]) == []


def test_parity_runs_the_package_where_lifecycle_pipeline_cannot_be_imported(
    packaged: Packaged, tmp_path: Path
) -> None:
    """The interpreter is started (and its libraries imported) before the package exists;
    a predict.py that reaches for our code still fails there, by name."""
    from lifecycle_pipeline.assets.packaging import ParityInterpreter, parity

    package, _, predictions, test_rows = packaged
    feature_set = held_out(test_rows)
    scored = report(predictions)
    with ParityInterpreter(tmp_path) as interpreter:
        leaning = copy_of(package, tmp_path)  # made after the interpreter started
        entry = leaning / "predict.py"
        future = "from __future__ import annotations\n"
        entry.write_text(
            entry.read_text(encoding="utf-8").replace(
                future, future + "import lifecycle_pipeline\n", 1
            ),
            encoding="utf-8",
        )
        result = parity(leaning, feature_set, scored, tmp_path, interpreter)
    assert not result.passed
    assert "import of lifecycle_pipeline halted" in (result.description or "")
    with ParityInterpreter(tmp_path) as interpreter:
        assert parity(package, feature_set, scored, tmp_path, interpreter).passed


def _children(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


def test_one_zygote_serves_every_check_until_the_environment_changes(
    packaged: Packaged, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checks reuse one zygote (its imports are paid once per process), a check leaves no child
    behind, a predict.py that prints to stdout does not break the exchange, and a change in
    what predict.py could read (a thread count) starts a new zygote and stops the old one."""
    from lifecycle_pipeline.assets.packaging import ParityInterpreter, parity

    package, _, predictions, test_rows = packaged
    feature_set, scored = held_out(test_rows), report(predictions)
    with pytest.raises(RuntimeError, match="build failed"), ParityInterpreter(tmp_path) as first:
        raise RuntimeError("build failed")
    talkative = copy_of(package, tmp_path)
    entry = talkative / "predict.py"
    entry.write_text(entry.read_text(encoding="utf-8") + "\nprint('scored')\n", encoding="utf-8")
    with ParityInterpreter(tmp_path) as second:
        assert parity(talkative, feature_set, scored, tmp_path, second).passed
    zygote = first.zygote.process
    assert second.zygote.process is zygote and zygote.poll() is None
    assert _children(zygote.pid) == []  # the check's child was reaped
    monkeypatch.setenv("LIFECYCLE_AUDIT_DIR", str(tmp_path / "elsewhere"))  # not predict's
    assert ParityInterpreter(tmp_path).zygote.process is zygote
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    third = ParityInterpreter(tmp_path)
    assert third.zygote.process is not zygote and zygote.poll() == 0  # told to exit, reaped
    assert parity(package, feature_set, scored, tmp_path, third).passed


# -- the package's own environment ---------------------------------------------------------

# Project tools the runtime must never pull in: a package that needs them is not self-contained.
PROJECT_ONLY = {"dagster", "dagster-webserver", "dvc", "evidently", "model-signing", "uv"}

# predict.py scores the golden inputs where only the distributions named in argv[3] (and the
# standard library) can be imported: every other distribution of the project's environment is
# refused as if absent, so optional imports (scikit-learn tries pytest, joblib tries dask) fail as
# they would in a clean environment. Prints the distributions the run loaded.
ONLY_PINNED = """
import json, runpy, sys
from importlib import metadata
allowed = set(json.loads(sys.argv[3]))
providers = metadata.packages_distributions()
norm = lambda name: name.lower().replace("_", "-").replace(".", "-")
blocked = {top for top, dists in providers.items()
           if not allowed & {norm(d) for d in dists} and top not in sys.modules}

class Absent:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"{name} is not in requirements.txt", name=name)
        return None

sys.meta_path.insert(0, Absent)
sys.modules["lifecycle_pipeline"] = None
sys.argv = ["predict.py", sys.argv[1], sys.argv[2]]
try:
    runpy.run_path("predict.py", run_name="__main__")
except SystemExit as done:
    assert not done.code, done.code
tops = {name.split(".")[0] for name, module in list(sys.modules.items()) if module is not None}
print(json.dumps(sorted({norm(d) for top in tops for d in providers.get(top, [])})))
"""


def _locked() -> dict[tuple[str, str], set[str]]:
    """(name, version) -> artifact hashes of every entry of the project's uv.lock."""
    import tomllib

    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text(encoding="utf-8"))
    return {
        (entry["name"], entry["version"]): {
            a["hash"] for a in [*entry.get("wheels", []), entry.get("sdist", {})] if "hash" in a
        }
        for entry in lock["package"]
    }


def test_requirements_pin_what_the_runtime_imports_at_the_locks_versions_and_nothing_else(
    multiclass: Direct, tmp_path: Path
) -> None:
    """Measured, not listed by hand: with every other distribution of this environment made
    unimportable, predict.py scores the golden rows exactly; every pin is a distribution the
    run loaded or a locked dependency of one, at a version and with hashes uv.lock holds; no
    project tool is among them."""
    from lifecycle_pipeline.package import environment

    text = (multiclass.package / runtime.REQUIREMENTS_FILE).read_text(encoding="utf-8")
    pinned = runtime.parse_requirements(text)
    source, target = tmp_path / "golden.parquet", tmp_path / "out.parquet"
    shutil.copy(multiclass.package / "golden_inputs.parquet", source)
    done = subprocess.run(
        [sys.executable, "-I", "-c", ONLY_PINNED, str(source), str(target),
         json.dumps(sorted(pinned))],
        cwd=multiclass.package, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    expected = pd.read_parquet(multiclass.package / "golden_outputs.parquet")
    produced = pd.read_parquet(target)[list(expected.columns)]
    assert differing_columns(expected, produced) == []
    loaded = {environment.normalized(n) for n in json.loads(done.stdout)} - {"setuptools"}
    assert loaded <= set(pinned)
    lock = (PROJECT_ROOT / "uv.lock").read_bytes()
    needed = {pin.name for pin in environment.pins(lock, loaded)}
    assert set(pinned) == needed, set(pinned) ^ needed
    assert not PROJECT_ONLY & set(pinned)
    locked = _locked()
    for block in text.replace("\\\n", " ").splitlines():
        if block.startswith("#"):
            continue
        requirement, *options = block.split()
        name, version = requirement.split("==")
        hashes = {o.removeprefix("--hash=") for o in options}
        assert hashes and hashes <= locked[(name, version)], requirement
    manifest = json.loads((multiclass.package / "manifest.json").read_text())
    assert manifest["environment"]["requirements"] == pinned
    assert (
        manifest["environment"]["python_requires"]
        == f"=={sys.version_info.major}.{sys.version_info.minor}.*"
    )


def test_a_changed_requirement_fails_verification_naming_the_file(
    packaged: Packaged, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """requirements.txt is listed and signed like every file; a pin edited to another locked
    version (the lock's numpy for another Python) is refused by digest, by signature, and,
    with the manifest's digest forged too, as a pin the manifest does not record; a forged
    artifact hash as one the package's uv.lock does not hold."""
    package, public, _, _ = packaged
    copy = copy_of(package, tmp_path)
    requirements = copy / runtime.REQUIREMENTS_FILE
    pinned = runtime.parse_requirements(requirements.read_text(encoding="utf-8"))
    other = next(v for (n, v) in _locked() if n == "numpy" and v != pinned["numpy"])
    edited = requirements.read_text(encoding="utf-8").replace(
        f"numpy=={pinned['numpy']}", f"numpy=={other}"
    )
    requirements.write_text(edited, encoding="utf-8")
    code, _, err = verify_cli(copy, public, capsys)
    assert code == 1, err
    assert f"{requirements}: sha256 " in err
    assert "the signed digest differs for requirements.txt" in err
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["requirements.txt"] = hashlib.sha256(edited.encode()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    report = verify_package(copy, public)
    assert not report.ok
    assert any(
        f"numpy: {other} (manifest.json: {pinned['numpy']})" in p for p in report.problems
    ), report.render()
    # Same versions, one artifact hash swapped for another's: not the lock's artifact.
    original = (package / runtime.REQUIREMENTS_FILE).read_text(encoding="utf-8")
    first = original.index("--hash=sha256:") + len("--hash=sha256:")
    swapped = original[:first] + "0" * 64 + original[first + 64 :]
    requirements.write_text(swapped, encoding="utf-8")
    manifest["files"]["requirements.txt"] = hashlib.sha256(swapped.encode()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    report = verify_package(copy, public)
    assert any(
        "are not pinned with hashes of the package's uv.lock" in p for p in report.problems
    ), report.render()


def test_predict_py_verifies_its_own_package_without_the_project(
    packaged: Packaged, tmp_path: Path
) -> None:
    """`python predict.py --verify`: digests, environment and golden outputs, standalone; an
    edited file or an interpreter the package was not built for is named."""
    alone = copy_of(packaged.package, tmp_path)
    blocker = (
        "import runpy, sys; sys.modules['lifecycle_pipeline'] = None; "
        "sys.argv = ['predict.py', '--verify']; runpy.run_path('predict.py', run_name='__main__')"
    )

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-I", "-c", blocker],
            cwd=alone, capture_output=True, text=True, check=False,
        )  # fmt: skip

    done = verify()
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("verified")
    assert "distributions match requirements.txt" in done.stdout
    assert "golden rows reproduce golden_outputs.parquet bit for bit" in done.stdout
    manifest = json.loads((alone / "manifest.json").read_text())
    manifest["environment"]["python_requires"] = "==3.99.*"
    (alone / "manifest.json").write_text(json.dumps(manifest))
    done = verify()
    assert done.returncode == 1
    assert "create the environment with python3.99" in done.stdout
    (alone / runtime.REQUIREMENTS_FILE).write_text("numpy==1.0\n", encoding="utf-8")
    done = verify()
    assert done.returncode == 1
    assert f"{alone / runtime.REQUIREMENTS_FILE}: sha256 " in done.stdout


def test_a_package_of_format_2_without_requirements_still_verifies(
    packaged: Packaged, tmp_path: Path
) -> None:
    """Older packages (a rollback target) carry uv.lock only: verification holds them to what
    their format promised, not to requirements they predate."""
    old = copy_of(packaged.package, tmp_path)
    for name in (runtime.REQUIREMENTS_FILE, "README.md", "model.sig"):
        (old / name).unlink()
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format"] = "lifecycle-package/2"
    manifest["environment"] = {"lock_sha256": manifest["environment"]["lock_sha256"]}
    del manifest["files"][runtime.REQUIREMENTS_FILE], manifest["files"]["README.md"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    PackageSigner().sign(old)
    report = verify_package(old, packaged.public_key)
    assert report.ok, report.render()
    assert not any("requirements" in p for p in report.passed)


def test_the_readme_names_this_package_and_commands_that_work(packaged: Packaged) -> None:
    package = packaged.package
    manifest = json.loads((package / "manifest.json").read_text())
    readme = (package / "README.md").read_text(encoding="utf-8")
    assert manifest["files"]["README.md"] == hashlib.sha256(readme.encode()).hexdigest()
    for value in (
        manifest["model"]["fingerprint"],
        manifest["golden"]["prediction_digest"],
        manifest["files"]["model.skops"],
        manifest["partition"],
        manifest["environment"]["python"],
    ):
        assert value in readme
    python = f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert f"{python} -m venv " in readme
    assert "/bin/pip install --require-hashes -r requirements.txt" in readme
    assert "/bin/python predict.py --verify" in readme
    assert "/bin/python predict.py input.csv predictions.csv" in readme
    # The signature check it gives for a machine without the project works as written.
    command = next(line for line in readme.splitlines() if line.startswith("model_signing "))
    args = shlex.split(command.replace("KEY.pub", str(packaged.public_key)))
    tool = Path(sys.executable).parent / args[0]
    done = subprocess.run(
        [tool, *args[1:]], cwd=package, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "Verification succeeded" in done.stdout + done.stderr, done


@pytest.mark.slow
def test_a_clean_environment_built_from_the_package_alone_scores_golden_rows_bitwise(
    packaged: Packaged, tmp_path: Path
) -> None:
    """Production's first step, with nothing of the project: a venv of the Python the package
    names, pip in hash-checking mode from PyPI with only requirements.txt, then predict.py.
    The golden rows must come out bit for bit as evaluation recorded them, and --verify must
    pass (it recomputes the raw prediction digest against the manifest)."""
    alone = copy_of(packaged.package, tmp_path)
    manifest = json.loads((alone / "manifest.json").read_text())
    python = shutil.which("python" + manifest["environment"]["python_requires"][2:-2])
    assert python is not None, f"no {manifest['environment']['python_requires']} Python on PATH"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    venv = tmp_path / "env"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, env=env, cwd=tmp_path)
    report = tmp_path / "pip-report.json"
    installed = subprocess.run(
        [venv / "bin" / "pip", "install", "--quiet", "--require-hashes", "--report", report,
         "-r", alone / runtime.REQUIREMENTS_FILE],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    chosen = {  # the artifacts pip chose are the wheels the manifest names
        item["metadata"]["name"].lower(): item["download_info"]["url"].rsplit("/", 1)[-1]
        for item in json.loads(report.read_text())["install"]
    }
    assert chosen == manifest["environment"]["wheels"]
    frozen = subprocess.run(
        [venv / "bin" / "pip", "list", "--format=json", "--exclude", "pip", "--exclude",
         "setuptools"], env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert {p["name"].lower(): p["version"] for p in json.loads(frozen.stdout)} == (
        manifest["environment"]["requirements"]
    )
    source, target = tmp_path / "golden.parquet", tmp_path / "predictions.parquet"
    shutil.copy(alone / "golden_inputs.parquet", source)
    for args in ([source, target], ["--verify"]):
        done = subprocess.run(
            [venv / "bin" / "python", "predict.py", *args],
            env=env, cwd=alone, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("verified"), done.stdout
    produced = pd.read_parquet(target)
    expected = pd.read_parquet(alone / "golden_outputs.parquet")
    assert differing_columns(expected, produced[list(expected.columns)]) == []
    assert verify_package(alone, packaged.public_key).ok  # nothing was written into it
