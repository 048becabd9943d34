"""Package verification exercised directly (`make mutate`): one small signed package of a
binary random forest, built once from the stage functions (no Dagster run, a fraction of a
second), then copied and altered per test. An alteration that a build could have made (an
edited schema, other golden outputs, other pins) is *resealed*: the manifest's digests
rewritten and the folder signed again, so the check under test is the one that must say it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.package import build, runtime
from lifecycle_pipeline.package.verify import (
    LEGACY_FORMAT,
    VerificationReport,
    _legacy,
    _requirement_hashes,
    opened,
    verify_package,
    verify_stored_package,
)
from lifecycle_pipeline.resources.codecs import LEGACY_TRUSTED_TYPES, dump_model
from lifecycle_pipeline.resources.keys import Keyring
from lifecycle_pipeline.resources.signing import PackageSigner, public_key_id
from tests.test_package import Direct, build_direct, declare, iris_frame, package_inputs

BINARY = """\
name: garden_virginica
description: Whether an iris is a virginica, from its measurements and where it grew.
data: {path: data/iris.csv}
contract:
  target: species
  task: binary
  row: one iris flower
  classes:
    - {value: 0, name: other}
    - {value: 1, name: virginica, positive: true}
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
  params: {n_estimators: 5}
  trusted_types: [sklearn.tree._tree.Tree]
evaluation:
  gates: {roc_auc: {min: 0.5}}
"""
TREE = ["sklearn.tree._tree.Tree"]
FEATURES = 7


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Direct:
    base = tmp_path_factory.mktemp("binary")
    frame = iris_frame()
    frame["species"] = (frame["species"] == 2).astype("int64")
    return build_direct(declare(base / "garden_virginica", BINARY), frame, base / "package")


@pytest.fixture(scope="module")
def public() -> Path:
    return PackageSigner().key_pair()[1]


def manifest_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def copy_of(direct: Direct, tmp_path: Path) -> Path:
    target = tmp_path / "package"
    shutil.copytree(direct.package, target)
    return target


def resealed(package: Path, tmp_path: Path, edit: Callable[[Path, dict[str, Any]], None]) -> Path:
    """A copy of ``package`` edited by ``edit(folder, manifest)``, its listed files' digests
    rewritten into the manifest and signed again with the package's own key."""
    folder = tmp_path / "package"
    shutil.copytree(package, folder)
    manifest = manifest_of(folder)
    edit(folder, manifest)
    for name in manifest["files"]:
        if (folder / name).is_file():
            manifest["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    (folder / "model.sig").unlink()
    PackageSigner().sign(folder)
    return folder


def expected_passes(folder: Path, public: Path) -> list[str]:
    manifest = manifest_of(folder)
    rows = manifest["golden"]["rows"]
    return [
        f"signature model.sig verifies with {public.name}",
        f"{len(manifest['files'])} file digests match manifest.json",
        f"model.skops loads with exactly the reviewed types {TREE}",
        f"input schema matches the model's {FEATURES} features",
        f"golden inputs reproduce prediction digest {manifest['golden']['prediction_digest'][:16]}",
        f"all {rows} golden rows pass input validation and reproduce golden_outputs.parquet",
        f"requirements.txt: {len(manifest['environment']['requirements'])} pins, each at "
        "uv.lock's version with its artifact hashes",
    ]


def zipped(folder: Path, target: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, path.name)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return target


def other_public_key(tmp_path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "other.pub"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


# ------------------------------------------------------------------------------- the report


def test_a_report_renders_each_check_and_its_verdict() -> None:
    report = VerificationReport("p.zip", passed=["a", "b"])
    assert report.ok
    assert report.render() == "package p.zip\n  ok    a\n  ok    b\nverified"
    report.problems += ["x", "y"]
    assert not report.ok
    assert report.render() == (
        "package p.zip\n  ok    a\n  ok    b\n  FAIL  x\n  FAIL  y\nNOT VERIFIED: 2 problem(s)"
    )
    assert VerificationReport("q").passed == [] and VerificationReport("q").problems == []


# ------------------------------------------------------------------------ a fresh package


def test_a_fresh_package_passes_every_check_in_order(direct: Direct, public: Path) -> None:
    report = verify_package(direct.package, public)
    assert report.problems == []
    assert report.package == str(direct.package)
    assert report.passed == expected_passes(direct.package, public)


def test_a_fresh_archive_verifies_and_leaves_nothing_extracted(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    archive = zipped(direct.package, tmp_path / "p.zip")
    report = verify_package(archive, public)
    assert report.problems == [] and report.package == str(archive)
    assert report.passed == expected_passes(direct.package, public)
    with opened(archive) as folder:
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            p.name for p in direct.package.iterdir()
        )
    assert not folder.exists()


def test_a_folder_is_opened_where_it_is(direct: Direct) -> None:
    with opened(direct.package) as folder:
        assert folder == direct.package


def test_neither_folder_nor_archive_is_refused(tmp_path: Path, public: Path) -> None:
    plain = tmp_path / "package.txt"
    plain.write_text("not a package")
    with pytest.raises(runtime.PackageError) as raised:
        verify_package(plain, public)
    assert str(raised.value) == f"{plain}: neither a package folder nor a package archive."


@pytest.mark.parametrize("member", ["sub/model.skops", ".hidden", "..", "a/"])
def test_an_archive_member_outside_one_flat_folder_is_refused(
    direct: Direct, tmp_path: Path, member: str
) -> None:
    archive = tmp_path / "p.zip"
    with zipfile.ZipFile(archive, "w") as built:
        built.writestr("manifest.json", b"{}")
        built.writestr(member, b"x")
    with pytest.raises(runtime.PackageError) as raised, opened(archive):
        pass
    assert str(raised.value) == f"{archive}: unexpected archive member {member!r}."


# ------------------------------------------------------------------ signature and digests


def test_a_missing_manifest_is_the_one_problem(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    folder = copy_of(direct, tmp_path)
    (folder / "manifest.json").unlink()
    report = verify_package(folder, public)
    assert report.passed == []
    assert report.problems == [
        f"{folder / 'manifest.json'}: missing; {folder} is not a deployment package."
    ]


def test_another_key_is_refused_but_every_other_check_still_runs(
    direct: Direct, tmp_path: Path
) -> None:
    other = other_public_key(tmp_path)
    report = verify_package(direct.package, other)
    (problem,) = report.problems
    assert problem.startswith(f"{direct.package / 'model.sig'}: does not verify with {other}")
    assert report.passed == expected_passes(direct.package, other)[1:]


def test_the_key_the_manifest_names_is_chosen_from_a_keyring(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    other = other_public_key(tmp_path)
    keyring = Keyring({public_key_id(other): other, public_key_id(public): public}, source="k")
    report = verify_package(direct.package, keyring)
    assert report.problems == []
    assert report.passed[0] == f"signature model.sig verifies with {public.name}"
    assert manifest_of(direct.package)["signing"]["public_key_id"] == public_key_id(public)


@pytest.mark.parametrize("signing", [None, {}, "unrecorded"])
def test_a_package_recording_no_key_id_verifies_only_with_a_configured_key(
    direct: Direct, public: Path, tmp_path: Path, signing: Any
) -> None:
    def forget(folder: Path, manifest: dict[str, Any]) -> None:
        manifest.pop("signing")
        if signing is not None:
            manifest["signing"] = signing

    folder = resealed(direct.package, tmp_path, forget)
    legacy = Keyring({public_key_id(public): public}, legacy=public_key_id(public), source="k")
    assert verify_package(folder, legacy).problems == []
    keyring = Keyring({public_key_id(public): public}, source="keyring k")
    (problem,) = verify_package(folder, keyring).problems
    assert problem.startswith(
        f"{folder / 'model.sig'} records no signing key id (signed before key ids were "
        "recorded), and keyring k has no single configured key"
    )


def test_a_revoked_key_is_refused_by_the_keyring(direct: Direct, public: Path) -> None:
    ident = public_key_id(public)
    keyring = Keyring({}, {ident: public}, source="keyring k")
    (problem,) = verify_package(direct.package, keyring).problems
    assert problem.startswith(
        f"{direct.package / 'model.sig'} was signed with key {ident}, which is revoked in keyring k"
    )


def test_an_unsigned_package_says_so(direct: Direct, public: Path, tmp_path: Path) -> None:
    folder = copy_of(direct, tmp_path)
    (folder / "model.sig").unlink()
    report = verify_package(folder, public)
    assert report.problems == [
        f"{folder / 'model.sig'}: signature file is missing; the package is unsigned."
    ]


def test_unlisted_files_are_named_in_order_and_folders_are_ignored(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    folder = copy_of(direct, tmp_path)
    (folder / "zz.txt").write_text("z")
    (folder / "notes.txt").write_text("n")
    (folder / "cache").mkdir()
    report = verify_package(folder, public)
    unlisted = [p for p in report.problems if "is not listed" in p]
    assert unlisted == [
        f"{folder / 'notes.txt'}: file is not listed in manifest.json",
        f"{folder / 'zz.txt'}: file is not listed in manifest.json",
    ]
    assert len(report.problems) == 3  # and the signature, which covers every file
    assert expected_passes(folder, public)[1:] == report.passed


def test_every_missing_or_edited_file_is_named_and_nothing_is_loaded(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    folder = copy_of(direct, tmp_path)
    (folder / "predict.py").unlink()
    (folder / "README.md").write_text("edited")
    (folder / "uv.lock").write_text("edited")
    manifest = manifest_of(folder)
    report = verify_package(folder, public)
    assert report.passed == []
    assert report.problems[1:] == [
        f"{folder / 'README.md'}: sha256 {hashlib.sha256(b'edited').hexdigest()} differs from "
        f"manifest.json ({manifest['files']['README.md']}).",
        f"{folder / 'predict.py'}: file listed in manifest.json is missing.",
        f"{folder / 'uv.lock'}: sha256 {hashlib.sha256(b'edited').hexdigest()} differs from "
        f"manifest.json ({manifest['files']['uv.lock']}).",
    ]
    assert report.problems[0].startswith(f"{folder / 'model.sig'}: does not verify")


def test_one_edited_file_fails_the_digests_even_when_resigned(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    folder = copy_of(direct, tmp_path)
    (folder / "model_card.md").write_text("# another card")
    (folder / "model.sig").unlink()
    PackageSigner().sign(folder)  # a valid signature over a manifest that no longer matches
    report = verify_package(folder, public)
    assert report.passed == [f"signature model.sig verifies with {public.name}"]
    (problem,) = report.problems
    assert problem.startswith(f"{folder / 'model_card.md'}: sha256 ")


# ------------------------------------------------------------------ model, schema, golden


def test_a_model_that_cannot_be_loaded_safely_stops_the_checks(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    def garbage(folder: Path, manifest: dict[str, Any]) -> None:
        (folder / "model.skops").write_bytes(b"not a zip")

    folder = resealed(direct.package, tmp_path, garbage)
    report = verify_package(folder, public)
    assert report.passed == expected_passes(folder, public)[:2]
    (problem,) = report.problems
    assert problem.startswith(f"{folder / 'model.skops'}: cannot be loaded safely: ")


def test_a_model_type_outside_the_reviewed_list_is_refused(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    def unreviewed(folder: Path, manifest: dict[str, Any]) -> None:
        manifest["model"]["trusted_types"] = []

    folder = resealed(direct.package, tmp_path, unreviewed)
    report = verify_package(folder, public)
    (problem,) = report.problems
    assert problem.startswith(f"{folder / 'model.skops'}: cannot be loaded safely: ")
    assert TREE[0] in problem
    assert len(report.passed) == 2


def test_an_input_schema_other_than_the_models_features_is_named(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    def renamed(folder: Path, manifest: dict[str, Any]) -> None:
        schema = json.loads((folder / "input_schema.json").read_text())
        schema["columns"][0]["name"] = "sepal_len"
        (folder / "input_schema.json").write_text(json.dumps(schema))

    folder = resealed(direct.package, tmp_path, renamed)
    report = verify_package(folder, public)
    model_columns = [
        "sepal_length", "sepal_width", "petal_length", "petal_width", "garden", "beds", "wild"
    ]  # fmt: skip
    expected = ["sepal_len", *model_columns[1:]]
    assert report.problems[0] == (
        f"{folder / 'input_schema.json'}: columns {expected} differ from the model's "
        f"{model_columns}"
    )
    assert f"input schema matches the model's {FEATURES} features" not in report.passed


@pytest.mark.filterwarnings("ignore:X has feature names:UserWarning")
def test_a_model_recording_no_feature_names_is_bound_by_the_golden_outputs(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    def nameless(folder: Path, manifest: dict[str, Any]) -> None:
        model = runtime.load_model(direct.package, manifest_of(direct.package))
        del model.steps[0][1].feature_names_in_
        assert getattr(model, "feature_names_in_", None) is None
        (folder / "model.skops").write_bytes(dump_model(model))

    folder = resealed(direct.package, tmp_path, nameless)
    report = verify_package(folder, public)
    assert report.problems == []
    expected = expected_passes(folder, public)
    expected[3] = (
        "the model records no feature names; the input schema is bound by the golden outputs"
    )
    assert report.passed == expected


def test_another_prediction_digest_is_named_with_both_prefixes(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    recorded = manifest_of(direct.package)["golden"]["prediction_digest"]

    def other(folder: Path, manifest: dict[str, Any]) -> None:
        manifest["golden"]["prediction_digest"] = "0123456789abcdef" * 4

    folder = resealed(direct.package, tmp_path, other)
    report = verify_package(folder, public)
    assert report.problems == [
        f"{folder / 'golden_inputs.parquet'}: prediction digest {recorded[:16]} differs from "
        "the recorded 0123456789abcdef"
    ]
    assert not any(p.startswith("golden inputs reproduce") for p in report.passed)


def test_golden_outputs_other_than_the_package_computes_are_named(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    def edited(folder: Path, manifest: dict[str, Any]) -> None:
        outputs = pd.read_parquet(folder / "golden_outputs.parquet")
        outputs["probability"] = outputs["probability"].to_numpy() + 1e-9
        outputs.to_parquet(folder / "golden_outputs.parquet", index=False)

    folder = resealed(direct.package, tmp_path, edited)
    report = verify_package(folder, public)
    (problem,) = report.problems
    assert problem.startswith(f"{folder / 'golden_outputs.parquet'}: [")
    assert "'probability'" in problem
    assert problem.endswith("differ from what the package computes on its golden inputs")
    assert (
        report.passed == expected_passes(folder, public)[:5] + expected_passes(folder, public)[6:]
    )


def test_golden_inputs_outside_the_declared_domain_are_not_scored(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    def outside(folder: Path, manifest: dict[str, Any]) -> None:
        inputs = pd.read_parquet(folder / "golden_inputs.parquet")
        inputs.loc[inputs.index[0], "sepal_length"] = 250.0  # declared range [0, 100]
        inputs.to_parquet(folder / "golden_inputs.parquet")

    folder = resealed(direct.package, tmp_path, outside)
    report = verify_package(folder, public)
    scored = [p for p in report.problems if "not scored" in p]
    assert len(scored) == 1
    assert scored[0].startswith(f"{folder / 'golden_inputs.parquet'}: not scored: ")
    assert "sepal_length" in scored[0]


def test_golden_rows_beyond_the_training_range_are_scored_and_flagged_not_refused(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    """Held-out rows may lie outside what training saw; within the declared domain they must
    verify (the 'flag' policy), and the range warning is not an error of the package."""
    from lifecycle_pipeline.lineage.fingerprint import fingerprint
    from lifecycle_pipeline.tasks import task_for

    golden = direct.model.golden_inputs.copy()
    golden.loc[golden.index[0], "sepal_length"] = 99.0  # declared range [0, 100]
    prints = fingerprint(direct.model.pipeline, golden, task_for("binary").raw_outputs)
    lineage = {**direct.model.lineage, "fingerprint": prints.to_dict()}
    model = dataclasses.replace(
        direct.model, golden_inputs=golden, fingerprint=prints, lineage=lineage
    )
    rebuilt = direct._replace(model=model, package=tmp_path / "beyond")
    report_of = dataclasses.replace(direct.report, model_fingerprint=prints.combined)
    rebuilt = rebuilt._replace(report=report_of)
    signer = PackageSigner()
    build.write_folder(build.build_files(package_inputs(rebuilt, signer)), rebuilt.package)
    signer.sign(rebuilt.package)
    report = verify_package(rebuilt.package, public)
    assert report.problems == []
    assert report.passed == expected_passes(rebuilt.package, public)

    def refusing(folder: Path, manifest: dict[str, Any]) -> None:
        schema = json.loads((folder / "input_schema.json").read_text())
        schema["out_of_range"] = "reject"  # what predict.py applies by default, not verify
        (folder / "input_schema.json").write_text(json.dumps(schema))

    strict = resealed(rebuilt.package, tmp_path, refusing)
    assert verify_package(strict, public).problems == []


def test_an_output_schema_of_another_task_is_named_and_not_scored(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    def regression(folder: Path, manifest: dict[str, Any]) -> None:
        schema = json.loads((folder / "output_schema.json").read_text())
        schema["task"] = "regression"
        (folder / "output_schema.json").write_text(json.dumps(schema))

    folder = resealed(direct.package, tmp_path, regression)
    report = verify_package(folder, public)
    assert report.problems == [
        f"{folder / 'output_schema.json'}: task 'regression' differs from manifest.json's 'binary'"
    ]
    assert report.passed == [p for p in expected_passes(folder, public) if not p.startswith("all ")]


# ---------------------------------------------------------------------------- format 1


def test_a_format_1_manifest_is_completed_as_that_format_implied() -> None:
    old = {"format": LEGACY_FORMAT, "files": {}, "model": {"estimator": "Forest"}}
    completed = _legacy(old)
    assert completed == {
        "format": LEGACY_FORMAT,
        "files": {},
        "model": {"estimator": "Forest", "trusted_types": list(LEGACY_TRUSTED_TYPES)},
        "task": "binary",
    }
    assert old == {"format": LEGACY_FORMAT, "files": {}, "model": {"estimator": "Forest"}}
    assert _legacy({"format": LEGACY_FORMAT})["model"] == {
        "trusted_types": list(LEGACY_TRUSTED_TYPES)
    }
    newer = {"format": "lifecycle-package/3", "model": {}}
    assert _legacy(newer) is newer


def test_a_format_1_package_verifies_with_the_types_and_task_that_format_implied(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    def old(folder: Path, manifest: dict[str, Any]) -> None:
        manifest["format"] = LEGACY_FORMAT
        manifest["model"]["trusted_types"] = []
        del manifest["task"]  # format 1 recorded no task: binary was implied
        schema = json.loads((folder / "output_schema.json").read_text())
        schema["task"] = "regression"  # and no per-task outputs to compare
        (folder / "output_schema.json").write_text(json.dumps(schema))

    folder = resealed(direct.package, tmp_path, old)
    report = verify_package(folder, public)
    assert report.problems == []
    assert report.passed == [p for p in expected_passes(folder, public) if not p.startswith("all ")]


# ------------------------------------------------------------------------ requirements


def test_requirement_pins_are_read_with_their_hashes() -> None:
    text = (
        "# a comment\n"
        "\n"
        "NumPy==2.4.6 \\\n"
        "    --hash=sha256:aa \\\n"
        "    --hash=sha256:bb\n"
        "six==1.17.0 --hash=sha256:cc  # see --hash=sha256:dd # and more\n"
        "bare==1.0\n"
        "tight==2.0\\\n--hash=sha256:ff\n"
        "   # indented comment\n"
        "odd --hash=sha256:ee notahash\n"
    )
    assert _requirement_hashes(text) == {
        "numpy": ("2.4.6", {"sha256:aa", "sha256:bb"}),
        "six": ("1.17.0", {"sha256:cc"}),
        "bare": ("1.0", set()),
        "tight": ("2.0", {"sha256:ff"}),
        "odd": ("", {"sha256:ee"}),
    }


def _requirements(folder: Path) -> str:
    return (folder / "requirements.txt").read_text(encoding="utf-8")


def test_a_pin_other_than_the_manifests_is_named_with_both_versions(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    recorded = manifest_of(direct.package)["environment"]["requirements"]

    def other_pins(folder: Path, manifest: dict[str, Any]) -> None:
        text = _requirements(folder).replace(f"six=={recorded['six']}", "six==0.1")
        text = text.replace(f"pytz=={recorded['pytz']}", "pytz-extra==1")
        (folder / "requirements.txt").write_text(text + "zzz==2.0\n")

    folder = resealed(direct.package, tmp_path, other_pins)
    report = verify_package(folder, public)
    differing = [
        "pytz-extra: 1 (manifest.json: absent)",  # sorted as text: '-' before ':'
        f"pytz: absent (manifest.json: {recorded['pytz']})",
        f"six: 0.1 (manifest.json: {recorded['six']})",
        "zzz: 2.0 (manifest.json: absent)",
    ]
    assert report.problems == [
        f"{folder / 'requirements.txt'}: pins differ from manifest.json's "
        f"environment.requirements: {differing}"
    ]
    assert report.passed == expected_passes(folder, public)[:-1]


def test_a_pin_without_the_locks_hashes_is_named(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    recorded = manifest_of(direct.package)["environment"]["requirements"]

    def unhashed(folder: Path, manifest: dict[str, Any]) -> None:
        lines = _requirements(folder).replace("\\\n", " ").splitlines()
        edited = []
        for line in lines:
            if line.startswith("six=="):
                line = f"six=={recorded['six']} --hash=sha256:{'0' * 64}"
            elif line.startswith("pytz=="):
                line = f"pytz=={recorded['pytz']}"
            edited.append(line)
        (folder / "requirements.txt").write_text("\n".join(edited) + "\n")

    folder = resealed(direct.package, tmp_path, unhashed)
    report = verify_package(folder, public)
    wrong = [f"pytz=={recorded['pytz']}", f"six=={recorded['six']}"]
    assert report.problems == [
        f"{folder / 'requirements.txt'}: {wrong} are not pinned with hashes of the package's "
        "uv.lock"
    ]


def test_a_pin_holding_one_of_the_locks_hashes_among_others_is_named(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    def one_foreign(folder: Path, manifest: dict[str, Any]) -> None:
        lines = _requirements(folder).replace("\\\n", " ").splitlines()
        edited = [f"{x} --hash=sha256:{'1' * 64}" if x.startswith("six==") else x for x in lines]
        (folder / "requirements.txt").write_text("\n".join(edited) + "\n")

    folder = resealed(direct.package, tmp_path, one_foreign)
    (problem,) = verify_package(folder, public).problems
    assert "six==" in problem and "are not pinned with hashes" in problem


def test_a_pin_at_a_version_the_lock_does_not_hold_is_named(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    recorded = manifest_of(direct.package)["environment"]["requirements"]

    def unlocked(folder: Path, manifest: dict[str, Any]) -> None:
        text = _requirements(folder).replace(f"six=={recorded['six']}", "six==0.1")
        (folder / "requirements.txt").write_text(text)
        manifest["environment"]["requirements"]["six"] = "0.1"  # agreeing with the pins

    folder = resealed(direct.package, tmp_path, unlocked)
    assert verify_package(folder, public).problems == [
        f"{folder / 'requirements.txt'}: ['six==0.1'] are not pinned with hashes of the "
        "package's uv.lock"
    ]


def test_an_unreadable_lock_is_named(direct: Direct, public: Path, tmp_path: Path) -> None:
    def broken(folder: Path, manifest: dict[str, Any]) -> None:
        (folder / "uv.lock").write_text("[[package]\nnot toml")

    folder = resealed(direct.package, tmp_path, broken)
    (problem,) = verify_package(folder, public).problems
    assert problem.startswith(f"{folder / 'uv.lock'}: ")


@pytest.mark.parametrize("environment", ["absent", "empty", "no requirements"])
def test_a_package_without_recorded_requirements_is_not_held_to_them(
    direct: Direct, public: Path, tmp_path: Path, environment: str
) -> None:
    def older(folder: Path, manifest: dict[str, Any]) -> None:
        if environment == "absent":
            del manifest["environment"]
        elif environment == "empty":
            manifest["environment"] = None
        else:
            del manifest["environment"]["requirements"]
        (folder / "requirements.txt").write_text("anything==1\n")

    folder = resealed(direct.package, tmp_path, older)
    report = verify_package(folder, public)
    assert report.problems == []
    assert report.passed == expected_passes(direct.package, public)[:-1]


# ------------------------------------------------------------------ the stored package


class Store:
    """The artifact store's one method verification uses: the archive bytes, or its error."""

    def __init__(self, archive: bytes | LifecycleError) -> None:
        self.archive = archive
        self.asked: list[Any] = []

    def read_archive(self, record: Any) -> bytes:
        self.asked.append(record)
        if isinstance(self.archive, LifecycleError):
            raise self.archive
        return self.archive


def stored_record(archive: str | None) -> Any:
    metadata = {} if archive is None else {"artifact/archive": SimpleNamespace(value=archive)}
    return SimpleNamespace(run_id="run-1", asset_materialization=SimpleNamespace(metadata=metadata))


def test_a_stored_package_verifies_with_the_folder_check_first(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    store = Store(zipped(direct.package, tmp_path / "p.zip").read_bytes())
    record = stored_record("s3://bucket/p.zip")
    report = verify_stored_package(store, record, public)
    assert store.asked == [record]
    assert report.package == "s3://bucket/p.zip"
    assert report.problems == []
    assert report.passed == [
        "folder files match the recorded digests; the zip holds exactly them",
        *expected_passes(direct.package, public),
    ]


def test_a_stored_packages_problems_name_files_inside_its_archive(
    direct: Direct, public: Path, tmp_path: Path
) -> None:
    folder = copy_of(direct, tmp_path)
    (folder / "README.md").write_text("edited")
    store = Store(zipped(folder, tmp_path / "p.zip").read_bytes())
    report = verify_stored_package(store, stored_record(None), public)
    assert report.package == "run run-1"
    assert report.problems[0].startswith("run run-1!model.sig: does not verify with")
    assert report.problems[1].startswith("run run-1!README.md: sha256 ")
    assert report.passed == ["folder files match the recorded digests; the zip holds exactly them"]


def test_a_stored_package_the_store_cannot_read_is_a_problem_not_an_error(
    public: Path,
) -> None:
    store = Store(LifecycleError("digest of model.skops differs"))
    report = verify_stored_package(store, stored_record("file:///p.zip"), public)
    assert report.package == "file:///p.zip"
    assert report.passed == []
    assert report.problems == ["stored package: digest of model.skops differs"]
