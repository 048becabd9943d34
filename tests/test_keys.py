"""Keys chosen on purpose: refused unconfigured, reported when development keys stand in, and
rotated through a keyring (the drill: rotate, promote, verify old and new, revoke, refused)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lifecycle_pipeline.audit_checkpoint import checkpoint_problems, found_checkpoints
from lifecycle_pipeline.lineage.audit import AuditError, AuditLog
from lifecycle_pipeline.lineage.query import latest, metadata_values
from lifecycle_pipeline.package.verify import verify_package
from lifecycle_pipeline.resources.keys import KeyConfigError, create_key_set, revoke, trust
from lifecycle_pipeline.resources.signing import PackageSigner, SignatureError, trusted_keys
from tests.conftest import (
    PROJECT_ROOT,
    SAMPLE,
    SAMPLE_MODEL,
    Registry,
    home_pipeline,
    lifecycle_cli,
)
from tests.reliability.cases import case

MODEL = SAMPLE_MODEL.name
KEY_SETTINGS = (
    "LIFECYCLE_SIGNING_KEY",
    "LIFECYCLE_SIGNING_PUBLIC_KEY",
    "LIFECYCLE_AUDIT_KEY",
    "LIFECYCLE_TRUSTED_KEYS",
)


def _unconfigured(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("LIFECYCLE_HOME", str(home))
    monkeypatch.setenv("LIFECYCLE_AUDIT_DIR", str(home / "audit"))
    for name in (*KEY_SETTINGS, "LIFECYCLE_DEV_KEYS", "LIFECYCLE_MODEL"):
        monkeypatch.delenv(name, raising=False)


def test_signing_and_the_audit_log_refuse_to_start_without_configured_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No key configured and no LIFECYCLE_DEV_KEYS=1: nothing is signed, no record appended,
    and no development key is created anywhere; the message says how to configure keys."""
    fault = case("keys and caches", "no keys configured")
    _unconfigured(monkeypatch, tmp_path / "home")
    with pytest.raises(KeyConfigError) as signing:
        PackageSigner().key_pair()
    with pytest.raises(AuditError) as appending:
        AuditLog.for_model(MODEL).append("promotion", {"approver": "ana", "reason": "r"}, "v1")
    with pytest.raises(KeyConfigError):
        trusted_keys()
    for refusal in (signing.value, appending.value):
        assert fault.shown_in(str(refusal)), str(refusal)
        assert "LIFECYCLE_DEV_KEYS=1" in str(refusal)
    assert not (tmp_path / "home" / "keys").exists()  # no key nobody chose
    assert not (tmp_path / "home" / "audit" / f"{MODEL}.jsonl").exists()

    paths = create_key_set(tmp_path / "keys")  # what the message tells the user to do
    for name, path in paths.items():
        monkeypatch.setenv(name, str(path))
    AuditLog.for_model(MODEL).append("promotion", {"approver": "ana", "reason": "r"}, "v1")
    assert PackageSigner().key_pair() == (
        paths["LIFECYCLE_SIGNING_KEY"],
        paths["LIFECYCLE_SIGNING_PUBLIC_KEY"],
    )
    assert {oct(p.stat().st_mode & 0o777) for p in paths.values() if p.suffix != ".pub"} == {
        "0o600"
    }


def _command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lifecycle_pipeline.cli", *args], cwd=PROJECT_ROOT, env=env,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_status_and_doctor_say_when_development_keys_are_in_use(tmp_path: Path) -> None:
    fault = case("keys and caches", "development keys in use")
    (tmp_path / "dagster_home").mkdir()
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in (*KEY_SETTINGS, "LIFECYCLE_DEV_KEYS", "LIFECYCLE_MODEL")
    }
    base |= {
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "LIFECYCLE_HOME": str(tmp_path / "home"),
        "LIFECYCLE_AUDIT_DIR": str(tmp_path / "audit"),
    }
    development = {**base, "LIFECYCLE_DEV_KEYS": "1"}
    for args in (["status"], ["--model", MODEL, "status"], ["doctor"]):
        done = _command(development, *args)
        assert done.returncode == 0, done.stdout + done.stderr
        said = done.stdout if args == ["doctor"] else done.stderr  # status: its table unchanged
        assert fault.shown_in(said), (args, done.stdout, done.stderr)
        assert str(tmp_path / "home" / "keys" / "audit.key") in said
    doctor = json.loads(_command(development, "doctor", "--json").stdout)
    assert any(fault.shown_in(notice) for notice in doctor["notices"])

    configured = {**base, **{k: str(v) for k, v in create_key_set(tmp_path / "keys").items()}}
    for args in (["status"], ["doctor"]):
        done = _command(configured, *args)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "DEVELOPMENT KEYS" not in done.stdout + done.stderr


def _package(instance: object, version: str) -> Path:
    record = latest(instance, SAMPLE["deployment_package"], version)  # type: ignore[arg-type]
    return Path(str(metadata_values(record)["artifact/uri"]))


def _manifest_key(package: Path) -> str:
    return str(json.loads((package / "manifest.json").read_text())["signing"]["public_key_id"])


def test_key_rotation_drill_old_and_new_verify_and_a_revoked_key_is_refused(
    demo_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rotate, promote, verify old and new packages and checkpoints, revoke, refused.

    Keys are configured as a team would (no development keys): the old key signs data-v1's
    package and its promotion's checkpoint; after the rotation the new key signs data-v2's.
    Each records its key id, so both verify through the keyring; once the old key is revoked,
    everything it signed is refused and it can sign nothing more."""
    fault = case("keys and caches", "revoked signing key")
    _unconfigured(monkeypatch, tmp_path / "home")
    monkeypatch.delenv("LIFECYCLE_AUDIT_CHECKPOINTS", raising=False)
    old, new = create_key_set(tmp_path / "old"), create_key_set(tmp_path / "new")
    keyring = tmp_path / "keyring"

    def sign_with(keys: dict[str, Path]) -> None:
        for name in ("LIFECYCLE_SIGNING_KEY", "LIFECYCLE_SIGNING_PUBLIC_KEY"):
            monkeypatch.setenv(name, str(keys[name]))

    monkeypatch.setenv("LIFECYCLE_AUDIT_KEY", str(old["LIFECYCLE_AUDIT_KEY"]))
    monkeypatch.setenv("LIFECYCLE_TRUSTED_KEYS", str(keyring))
    sign_with(old)
    assert lifecycle_cli("keys", "trust", str(old["LIFECYCLE_SIGNING_PUBLIC_KEY"])) == 0
    old_id = trust(keyring, old["LIFECYCLE_SIGNING_PUBLIC_KEY"])  # again: same id, no change
    log = AuditLog.for_model(MODEL)
    promote = ["--model", MODEL, "promote", "--approver", "ana", "--reason", "drill"]
    with home_pipeline(demo_registry.resource(), tmp_path / "pipeline") as pipeline:
        monkeypatch.setenv("DAGSTER_HOME", pipeline.instance.root_directory)
        monkeypatch.setenv("LIFECYCLE_ARTIFACT_ROOT", str(pipeline.artifacts))
        assert pipeline.run("data-v1").success
        assert lifecycle_cli(*promote[:3], "data-v1", *promote[3:]) == 0

        # Rotation: the new key joins the keyring, then signs.
        assert lifecycle_cli("keys", "trust", str(new["LIFECYCLE_SIGNING_PUBLIC_KEY"])) == 0
        sign_with(new)
        new_id = trust(keyring, new["LIFECYCLE_SIGNING_PUBLIC_KEY"])
        assert pipeline.run("data-v2").success
        assert lifecycle_cli(*promote[:3], "data-v2", *promote[3:]) == 0

        first, second = (
            _package(pipeline.instance, "data-v1"),
            _package(pipeline.instance, "data-v2"),
        )
        assert (_manifest_key(first), _manifest_key(second)) == (old_id, new_id)
        for package in (first, second):
            report = verify_package(package, trusted_keys())
            assert report.ok, report.render()
        checkpoints = [json.loads(p.read_text()) for p in found_checkpoints(log)]
        assert [c["checkpoint"]["public_key_id"] for c in checkpoints] == [old_id, new_id]
        assert checkpoint_problems(log) == []
        assert lifecycle_cli("--model", MODEL, "audit", "verify") == 0
        assert lifecycle_cli("--model", MODEL, "verify", "data-v1") == 0

        # Revocation: the old key's package and checkpoint are refused, the new ones stand.
        assert lifecycle_cli("keys", "revoke", old_id) == 0
        refused = verify_package(first, trusted_keys())
        assert not refused.ok
        assert fault.shown_in("\n".join(refused.problems)), refused.render()
        assert verify_package(second, trusted_keys()).ok
        problems = checkpoint_problems(log)
        assert len(problems) == 1 and fault.shown_in(problems[0]), problems
        assert lifecycle_cli("--model", MODEL, "audit", "verify") == 1
        assert lifecycle_cli("--model", MODEL, "verify", "data-v1") == 1
        sign_with(old)
        with pytest.raises(SignatureError, match=f"refusing to sign: .*{old_id}.*revoked"):
            PackageSigner().sign(tmp_path / "anything")
    with pytest.raises(KeyConfigError, match="not a key id"):
        revoke(keyring, "../../etc")


def test_a_checkpoint_without_a_key_id_verifies_with_the_single_configured_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints (and packages) written before key ids were recorded name no key: they
    verify with the one configured public key, with or without a keyring, never a guess."""
    import base64

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from lifecycle_pipeline.audit_checkpoint import write_checkpoint
    from lifecycle_pipeline.lineage.hashing import canonical_json

    _unconfigured(monkeypatch, tmp_path / "home")
    monkeypatch.delenv("LIFECYCLE_AUDIT_CHECKPOINTS", raising=False)
    keys, other = create_key_set(tmp_path / "keys"), create_key_set(tmp_path / "other")
    for name, path in keys.items():
        monkeypatch.setenv(name, str(path))
    log = AuditLog.for_model(MODEL)
    log.append("promotion", {"approver": "ana", "reason": "r"}, "v1")
    path = write_checkpoint(log)
    document = json.loads(path.read_text())
    del document["checkpoint"]["public_key_id"]  # as written before ids were recorded
    private = serialization.load_pem_private_key(
        keys["LIFECYCLE_SIGNING_KEY"].read_bytes(), password=None
    )
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    signature = private.sign(canonical_json(document["checkpoint"]), ec.ECDSA(hashes.SHA256()))
    document["signature"] = base64.b64encode(signature).decode("ascii")
    path.write_text(json.dumps(document))

    assert checkpoint_problems(log) == []
    keyring = tmp_path / "keyring"
    for pair in (keys, other):
        trust(keyring, pair["LIFECYCLE_SIGNING_PUBLIC_KEY"])
    monkeypatch.setenv("LIFECYCLE_TRUSTED_KEYS", str(keyring))
    assert checkpoint_problems(log) == []
    monkeypatch.setenv("LIFECYCLE_SIGNING_PUBLIC_KEY", str(other["LIFECYCLE_SIGNING_PUBLIC_KEY"]))
    (problem,) = checkpoint_problems(log)
    assert "signature does not verify with" in problem, problem
