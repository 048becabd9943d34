"""The deployment package: verify catches every tampering, parity holds, predict validates."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest

from lifecycle_pipeline.cli import main
from lifecycle_pipeline.lineage.query import check_results, latest, metadata_values
from lifecycle_pipeline.package.verify import verify_package
from lifecycle_pipeline.resources.codecs import decode
from lifecycle_pipeline.resources.signing import PackageSigner, ensure_dev_key, public_key_id
from tests.conftest import Registry, scratch_pipeline
from tests.reliability.cases import PREDICT_INPUTS, Fault, case


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
        assert checks["deployment_package:prediction_parity"].passed
        assert checks["deployment_package:package_verifies"].passed
        package = Path(
            metadata_values(latest(instance, "deployment_package", "data-v1"))["artifact/uri"]
        )
        evaluation = metadata_values(latest(instance, "evaluation", "data-v1"))
        features = metadata_values(latest(instance, "features", "data-v1"))
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
            "uv.lock",
        ]
    )


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


def test_parity_in_a_separate_process_is_bit_for_bit(packaged: Packaged, tmp_path: Path) -> None:
    """Only the package's files, a fresh interpreter, and no lifecycle_pipeline importable."""
    package, _, predictions, test_rows = packaged
    alone = copy_of(package, tmp_path)
    source, target = tmp_path / "rows.parquet", tmp_path / "out.parquet"
    test_rows.to_parquet(source, index=False)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    blocker = (
        "import runpy, sys; sys.modules['lifecycle_pipeline'] = None; "
        f"sys.argv = ['predict.py', {str(source)!r}, {str(target)!r}, '--out-of-range', 'warn']; "
        "runpy.run_path('predict.py', run_name='__main__')"
    )
    subprocess.run([sys.executable, "-I", "-c", blocker], cwd=alone, env=env, check=True)
    produced = pd.read_parquet(target)
    assert np.ascontiguousarray(produced["probability"], "<f8").tobytes() == (
        np.ascontiguousarray(predictions["probability"], "<f8").tobytes()
    )
    assert produced["label"].tolist() == predictions["label"].tolist()


def _rows(
    test_rows: pd.DataFrame, tmp_path: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]
) -> Path:
    path = tmp_path / "input.csv"
    edit(test_rows.head(6).reset_index(drop=True).copy()).to_csv(path, index=False)
    return path


def _far_out(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[2, "worst_radius"] = 500.0
    return frame


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


def test_out_of_range_policy_warn_scores_and_warns(
    packaged: Packaged,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    package, _, predictions, test_rows = packaged
    source = _rows(test_rows, tmp_path, _far_out)
    out = tmp_path / "p.csv"
    assert (
        main(["predict", str(package), str(source), "--output", str(out), "--out-of-range", "warn"])
        == 0
    )
    assert "row 2, column 'worst_radius'" in capsys.readouterr().err
    scored = pd.read_csv(out, float_precision="round_trip")
    assert len(scored) == 6
    # Untouched rows score exactly as in evaluation.
    assert scored["probability"][0] == predictions["probability"][0]


def test_untrusted_type_in_model_is_refused(packaged: Packaged, tmp_path: Path) -> None:
    import skops.io as sio

    from lifecycle_pipeline.package import runtime

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


def test_parity_check_fails_on_a_one_ulp_difference(packaged: Packaged, tmp_path: Path) -> None:
    from lifecycle_pipeline.assets.packaging import parity
    from lifecycle_pipeline.lineage.records import EvaluationReport, FeatureSet

    package, _, predictions, test_rows = packaged
    feature_set = FeatureSet(
        train=test_rows,
        test=test_rows,
        feature_columns=tuple(test_rows.columns),
        target="malignant",
        seed=0,
        test_size=0.25,
        data_md5="",
    )

    def report(frame: pd.DataFrame) -> EvaluationReport:
        return EvaluationReport(
            metrics={},
            slices={},
            gates=(),
            predictions=frame,
            model_fingerprint="",
            decision_threshold=0.5,
        )

    assert parity(package, feature_set, report(predictions), tmp_path).passed
    nudged = predictions.copy()
    probability = nudged["probability"].to_numpy(copy=True)
    probability[3] = np.nextafter(probability[3], 2.0)
    nudged["probability"] = probability
    result = parity(package, feature_set, report(nudged), tmp_path)
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
