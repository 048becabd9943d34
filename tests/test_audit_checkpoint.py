"""Signed checkpoints of the audit log's head: the log held against evidence outside itself.

Every case here leaves a log whose own chain verifies; only the checkpoint shows it was cut
back, restored from an older copy, replaced or deleted.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lifecycle_pipeline.audit_checkpoint import (
    checkpoint_dir,
    checkpoint_problems,
    found_checkpoints,
    write_checkpoint,
)
from lifecycle_pipeline.cli import main
from lifecycle_pipeline.lineage.audit import AuditError, AuditLog
from tests.conftest import SAMPLE_MODEL
from tests.reliability.cases import AUDIT_WITNESS, Fault

MODEL = SAMPLE_MODEL.name


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AuditLog:
    """Five records and a checkpoint of their head, in a folder of this test's own."""
    monkeypatch.setenv("LIFECYCLE_AUDIT_DIR", str(tmp_path / "audit"))
    key = tmp_path / "audit.key"
    key.write_text("0" * 63 + "1")
    monkeypatch.setenv("LIFECYCLE_AUDIT_KEY", str(key))
    monkeypatch.delenv("LIFECYCLE_AUDIT_CHECKPOINTS", raising=False)
    monkeypatch.delenv("LIFECYCLE_MODEL", raising=False)
    audit = AuditLog.for_model(MODEL)
    for n in range(5):
        audit.append("promotion", {"approver": f"person-{n}", "reason": "ok"}, version=f"v{n}")
    write_checkpoint(audit)
    return audit


def _cut(log: AuditLog, records: int) -> None:
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(b"".join(lines[:records]))


def _apply(fault: Fault, log: AuditLog) -> None:
    if fault.value == "last record cut off":
        _cut(log, 4)
    elif fault.value == "three records cut off":
        _cut(log, 2)
    elif fault.value == "older copy restored":
        copy = log.path.read_bytes()
        for n in (5, 6):
            log.append("replay", {"n": n}, version="v4")
        write_checkpoint(log)
        log.path.write_bytes(copy)
    elif fault.value == "replaced by another chain":
        log.path.unlink()
        for _ in range(5):
            log.append("promotion", {"note": "rewritten"}, version="v0")
    elif fault.value == "deleted":
        log.path.unlink()
    elif fault.value == "checkpoint forged":
        _cut(log, 3)
        (path,) = found_checkpoints(log)
        document = json.loads(path.read_text())
        document["checkpoint"] |= {"seq": 2, "records": 3, "head": log.verify().head}
        path.write_text(json.dumps(document))
    else:
        raise AssertionError(fault.value)


@pytest.mark.parametrize("fault", AUDIT_WITNESS, ids=[f.name for f in AUDIT_WITNESS])
def test_a_log_cut_back_replaced_or_deleted_is_caught_by_its_signed_checkpoint(
    log: AuditLog, fault: Fault, capsys: pytest.CaptureFixture[str]
) -> None:
    assert checkpoint_problems(log) == []
    _apply(fault, log)
    if log.path.exists():
        assert log.verify().ok  # on its own the log is flawless: only the witness can tell
    problems = checkpoint_problems(log)
    assert any(fault.shown_in(p) for p in problems), problems
    assert main(["--model", MODEL, "audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert fault.shown_in(err), err
    assert main(["--model", MODEL, "status"]) == 2  # would name the wrong version as serving
    assert fault.shown_in(capsys.readouterr().err)


def test_a_recovered_torn_record_still_verifies_against_its_checkpoint(
    log: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """A writer killed mid-append is a crash, not tampering: after `audit recover` the log
    still holds every witnessed record and verifies."""
    with log.path.open("ab") as handle:
        handle.write(b'{"seq": 5, "kind": "promo')
    assert main(["--model", MODEL, "audit", "verify"]) == 1
    assert "torn (no line end)" in capsys.readouterr().err
    assert main(["--model", MODEL, "audit", "recover"]) == 0
    capsys.readouterr()
    assert main(["--model", MODEL, "audit", "verify"]) == 0
    assert "6 record(s) verify" in capsys.readouterr().out


def test_a_checkpoint_kept_elsewhere_is_the_external_witness(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whoever can rewrite the log can also delete the checkpoints beside it; a copy shipped to
    a store they cannot reach still tells, when `audit verify --checkpoint` is given it."""
    assert main(["--model", MODEL, "audit", "checkpoint", "--output", str(tmp_path / "ours")]) == 0
    shipped = Path(capsys.readouterr().out.strip())
    assert shipped.parent == tmp_path / "ours" and shipped.is_file()
    shutil.rmtree(checkpoint_dir(log))  # the local witnesses are gone with the records
    _cut(log, 3)
    assert main(["--model", MODEL, "audit", "verify"]) == 0  # nothing left here to tell
    capsys.readouterr()
    assert main(["--model", MODEL, "audit", "verify", "--checkpoint", str(shipped)]) == 1
    assert "which the log no longer holds (3 record(s))" in capsys.readouterr().err
    # A missing witness file is refused up front, not a silent pass.
    assert main(["--model", MODEL, "audit", "verify", "--checkpoint", str(tmp_path / "no")]) == 2
    assert "--checkpoint '" in capsys.readouterr().err
    # Checkpoints are written once and name the head they vouch for.
    body = json.loads(shipped.read_text())["checkpoint"]
    assert (body["model"], body["seq"], body["records"]) == (MODEL, 4, 5)


def test_no_checkpoint_of_a_log_that_does_not_verify(log: AuditLog) -> None:
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(b"".join([lines[0], *lines[2:]]))
    with pytest.raises(AuditError, match="no checkpoint of a log that does not verify"):
        write_checkpoint(log)
    assert len(found_checkpoints(log)) == 1
