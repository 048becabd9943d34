"""Signed checkpoints of an audit log, exercised directly (`make mutate`): where they are kept,
what they hold, and each way one is refused. Real keys (the development signing key, and an
elliptic-curve key made here as "another key"), real logs in a temporary folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from lifecycle_pipeline.audit_checkpoint import (
    ALGORITHM,
    checkpoint_dir,
    checkpoint_problems,
    found_checkpoints,
    model_of,
    read_checkpoint,
    write_checkpoint,
)
from lifecycle_pipeline.lineage.audit import AuditError, AuditLog
from lifecycle_pipeline.resources.signing import PackageSigner, public_key_id
from tests.conftest import own_audit_keys


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AuditLog:
    """Three records of model ``m``; development signing keys under a home of the test's own."""
    own_audit_keys(tmp_path, monkeypatch)
    audit = AuditLog(tmp_path / "audit" / "m.jsonl", "m")
    for n in range(3):
        audit.append("promotion", {"n": n}, version=f"v{n}")
    return audit


def test_checkpoints_live_beside_the_log_or_where_configured(
    log: AuditLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert model_of(log) == "m"
    assert model_of(AuditLog(tmp_path / "x" / "plain.jsonl")) == "plain"
    assert checkpoint_dir(log) == tmp_path / "audit" / "checkpoints" / "m"
    monkeypatch.setenv("LIFECYCLE_AUDIT_CHECKPOINTS", str(tmp_path / "bucket"))
    assert checkpoint_dir(log) == tmp_path / "bucket" / "m"
    assert found_checkpoints(log) == []


def test_a_checkpoint_signs_the_head_once_in_a_file_named_by_it(log: AuditLog) -> None:
    path = write_checkpoint(log)
    report = log.verify()
    assert path.parent == checkpoint_dir(log)
    assert path.name.startswith(f"00000002-{report.head[:16]}-") and path.suffix == ".json"
    document = json.loads(path.read_text())
    assert document["algorithm"] == ALGORITHM == "ecdsa-p256-sha256"
    body = document["checkpoint"]
    assert {k: body[k] for k in ("format", "model", "log", "records", "seq", "head")} == {
        "format": 1,
        "model": "m",
        "log": str(log.path),
        "records": 3,
        "seq": 2,
        "head": report.head,
    }
    assert body["public_key_id"] == public_key_id(PackageSigner().signing_pair()[1])
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no partial file left
    checkpoint = read_checkpoint(path)
    assert (checkpoint.seq, checkpoint.head) == (2, report.head)
    assert checkpoint.describe() == f"checkpoint {path} (record 2, signed {body['time']})"
    assert checkpoint_problems(log) == []
    second = write_checkpoint(log)
    assert second != path and found_checkpoints(log) == [path, second]


def test_an_empty_log_has_nothing_to_checkpoint(log: AuditLog, tmp_path: Path) -> None:
    empty = AuditLog(tmp_path / "audit" / "e.jsonl", "e")
    with pytest.raises(AuditError) as raised:
        write_checkpoint(empty)
    assert str(raised.value) == f"{empty.path}: the log holds no record yet; nothing to checkpoint."


def test_a_log_without_checkpoints_has_no_checkpoint_problems(log: AuditLog) -> None:
    assert checkpoint_problems(log) == []


def test_an_unreadable_checkpoint_is_named_not_skipped(log: AuditLog, tmp_path: Path) -> None:
    path = write_checkpoint(log)
    document = json.loads(path.read_text())
    cases = {
        "garbled.json": "{",
        "no-seq.json": json.dumps({**document, "checkpoint": {"head": "h", "model": "m"}}),
        "rsa.json": json.dumps({**document, "algorithm": "rsa"}),
        "no-signature.json": json.dumps(
            {"checkpoint": document["checkpoint"], "algorithm": ALGORITHM}
        ),
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(AuditError) as raised:
            read_checkpoint(tmp_path / name)
        assert str(raised.value).startswith(f"checkpoint {tmp_path / name}: unreadable (")
    with pytest.raises(AuditError, match="algorithm 'rsa', expected ecdsa-p256-sha256"):
        read_checkpoint(tmp_path / "rsa.json")
    problems = checkpoint_problems(log, [tmp_path / "garbled.json", path])
    assert len(problems) == 1 and problems[0].startswith(f"checkpoint {tmp_path / 'garbled.json'}")


def _other_key(tmp_path: Path) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = tmp_path / "other.pub"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, public


def test_a_checkpoint_signed_with_another_key_does_not_verify(
    log: AuditLog, tmp_path: Path
) -> None:
    other, other_public = _other_key(tmp_path)
    forged = write_checkpoint(log, key=other)  # records the configured key's id
    (problem,) = checkpoint_problems(log)
    trusted = PackageSigner().signing_pair()[1]
    assert problem == (
        f"{read_checkpoint(forged).describe()}: signature does not verify with {trusted}: the "
        "checkpoint was forged or edited, or signed with another key"
    )
    assert checkpoint_problems(log, public_key=other_public) == []  # the key that signed it


def test_an_edited_checkpoint_does_not_verify(log: AuditLog) -> None:
    path = write_checkpoint(log)
    document = json.loads(path.read_text())
    document["checkpoint"]["records"] = 2
    path.write_text(json.dumps(document))
    (problem,) = checkpoint_problems(log)
    assert "signature does not verify with" in problem


def test_a_checkpoint_of_another_models_log_is_named(log: AuditLog, tmp_path: Path) -> None:
    other = AuditLog(tmp_path / "audit" / "o.jsonl", "o")
    other.append("promotion", {"n": 0})
    elsewhere = write_checkpoint(other)
    (problem,) = checkpoint_problems(log, [elsewhere])
    assert problem == (
        f"{read_checkpoint(elsewhere).describe()}: witnesses model 'o', not 'm': it belongs to "
        "another log"
    )


def test_a_checkpoint_of_a_deleted_or_cut_or_replaced_log(log: AuditLog) -> None:
    path = write_checkpoint(log)
    described = read_checkpoint(path).describe()
    head = log.verify().head
    whole = log.path.read_bytes()
    lines = whole.splitlines(keepends=True)
    log.path.write_bytes(b"".join(lines[:2]))
    assert checkpoint_problems(log) == [
        f"{described}: witnessed record 2 (head {head[:16]}), which the log no longer holds "
        "(2 record(s)): the log was cut short or restored from an older copy"
    ]
    log.path.write_bytes(b"".join(lines[:2]) + b"not json\n")  # unreadable lines are skipped
    assert "which the log no longer holds (2 record(s))" in checkpoint_problems(log)[0]
    log.path.unlink()
    assert checkpoint_problems(log) == [
        f"{described}: witnessed 3 record(s), but the log {log.path} does not exist: it was deleted"
    ]
    for n in range(3):
        log.append("promotion", {"n": n + 10})
    replaced = log.verify().head
    assert checkpoint_problems(log) == [
        f"{described}: witnessed hash {head[:16]} for record 2, the log holds {replaced[:16]}: "
        "the log was replaced"
    ]


def test_without_a_trusted_key_a_checkpoint_cannot_vouch(
    log: AuditLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_checkpoint(log)
    described = read_checkpoint(path).describe()
    # The development key gone (another machine): named, and no new key is made to vouch.
    keys = tmp_path / "home" / "keys"
    for name in ("signing-key.pem", "signing-key.pub"):
        (keys / name).unlink()
    assert checkpoint_problems(log) == [
        f"{described}: no public key to verify it with; set LIFECYCLE_SIGNING_PUBLIC_KEY or "
        "pass --public-key"
    ]
    assert not (keys / "signing-key.pub").exists()
    # Development keys not allowed and none configured: the configuration error is the problem.
    monkeypatch.setenv("LIFECYCLE_DEV_KEYS", "0")
    (problem,) = checkpoint_problems(log)
    assert problem.startswith(f"{described}: ") and "LIFECYCLE_SIGNING_PUBLIC_KEY" in problem


def test_a_public_key_that_is_not_elliptic_curve_is_refused(log: AuditLog, tmp_path: Path) -> None:
    write_checkpoint(log)
    rsa_public = tmp_path / "rsa.pub"
    rsa_public.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=1024)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(AuditError) as raised:
        checkpoint_problems(log, public_key=rsa_public)
    assert str(raised.value) == f"{rsa_public}: not an elliptic-curve public key"


def test_a_checkpoint_by_a_revoked_or_unknown_key_is_refused_by_the_keyring(
    log: AuditLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lifecycle_pipeline.resources.keys import Keyring, revoke, trust

    path = write_checkpoint(log)
    signer = PackageSigner().signing_pair()[1]
    ring = tmp_path / "ring"
    ident = trust(ring, signer)
    assert checkpoint_problems(log, public_key=Keyring.load(ring)) == []
    revoke(ring, ident)
    (problem,) = checkpoint_problems(log, public_key=Keyring.load(ring))
    assert f"{read_checkpoint(path).describe()} was signed with key {ident}, which is revoked" in (
        problem
    )
    document = json.loads(path.read_text())
    del document["checkpoint"]["public_key_id"]
    path.write_text(json.dumps(document))
    _, other_public = _other_key(tmp_path)
    fresh = tmp_path / "fresh"
    trust(fresh, other_public)
    (unnamed,) = checkpoint_problems(log, public_key=Keyring.load(fresh))
    assert "records no signing key id" in unnamed


def test_a_checkpoint_file_is_named_by_record_head_and_utc_time(log: AuditLog) -> None:
    import re

    path = write_checkpoint(log)
    head = log.verify().head[:16]
    assert re.fullmatch(rf"00000002-{head}-\d{{8}}T\d{{12}}Z\.json", path.name), path.name
    assert read_checkpoint(path).body["time"].endswith("+00:00")


def test_a_checkpoint_missing_its_head_or_model_is_unreadable(
    log: AuditLog, tmp_path: Path
) -> None:
    document = json.loads(write_checkpoint(log).read_text())
    for field in ("head", "model", "seq"):
        body = {k: v for k, v in document["checkpoint"].items() if k != field}
        path = tmp_path / f"no-{field}.json"
        path.write_text(json.dumps({**document, "checkpoint": body}))
        with pytest.raises(AuditError, match="unreadable"):
            read_checkpoint(path)


def test_a_log_that_does_not_verify_gets_no_checkpoint(log: AuditLog) -> None:
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(lines[0] + lines[2])
    with pytest.raises(AuditError) as raised:
        write_checkpoint(log)
    assert str(raised.value).startswith(
        f"no checkpoint of a log that does not verify:\n{log.path}: NOT VERIFIED"
    )


def test_every_checkpoint_is_held_against_the_log_not_only_the_first_bad_one(
    log: AuditLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lifecycle_pipeline.resources.keys import Keyring, revoke, trust

    other_key, _ = _other_key(tmp_path)
    other = AuditLog(tmp_path / "audit" / "o.jsonl", "o")
    other.append("promotion", {"n": 0})
    garbled = [tmp_path / "g1.json", tmp_path / "g2.json"]
    for path in garbled:
        path.write_text("{")
    assert len(checkpoint_problems(log, garbled)) == 2
    elsewhere = [write_checkpoint(other), write_checkpoint(other)]
    assert len(checkpoint_problems(log, elsewhere)) == 2
    forged = [write_checkpoint(log, key=other_key), write_checkpoint(log, key=other_key)]
    assert len(checkpoint_problems(log, forged)) == 2
    ring = tmp_path / "ring"
    revoke(ring, trust(ring, PackageSigner().signing_pair()[1]))
    assert len(checkpoint_problems(log, public_key=Keyring.load(ring))) == 2
    for name in ("signing-key.pem", "signing-key.pub"):
        (tmp_path / "home" / "keys" / name).unlink()
    assert len(checkpoint_problems(log)) == 2


def test_a_configured_public_key_is_used_when_the_development_key_is_gone(
    log: AuditLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lifecycle_pipeline.resources.keys import trust

    signer = PackageSigner().signing_pair()[1]
    kept = tmp_path / "kept.pub"
    kept.write_bytes(signer.read_bytes())
    write_checkpoint(log)
    for name in ("signing-key.pem", "signing-key.pub"):
        (tmp_path / "home" / "keys" / name).unlink()
    monkeypatch.setenv("LIFECYCLE_SIGNING_PUBLIC_KEY", str(kept))
    assert checkpoint_problems(log) == []
    monkeypatch.delenv("LIFECYCLE_SIGNING_PUBLIC_KEY")
    ring = tmp_path / "ring"
    trust(ring, kept)
    monkeypatch.setenv("LIFECYCLE_TRUSTED_KEYS", str(ring))
    assert checkpoint_problems(log) == []
    monkeypatch.delenv("LIFECYCLE_TRUSTED_KEYS")
    monkeypatch.setenv("LIFECYCLE_DEV_KEYS", "0")
    (problem,) = checkpoint_problems(log)
    assert "no public key to verify it with" not in problem  # the configuration error instead


def test_records_with_spaces_and_a_garbled_line_are_still_held(log: AuditLog) -> None:
    log.append("promotion", {"reason": "gates passed, approved by the team"}, version="v3")
    write_checkpoint(log)
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(b"".join([lines[0], b"garbled line\n", *lines[1:]]))
    assert checkpoint_problems(log) == []  # the log's own problems are verify's to report
