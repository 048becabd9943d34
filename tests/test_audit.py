"""The audit log: every kind of tampering is detected and named by position."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lifecycle_pipeline.cli import main
from lifecycle_pipeline.lineage.audit import AuditError, AuditLog
from tests.conftest import SAMPLE_MODEL
from tests.reliability.cases import AUDIT_TAMPERING, Fault, case


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AuditLog:
    """The sample model's log, in a folder of its own (each declared model has one there)."""
    monkeypatch.setenv("LIFECYCLE_AUDIT_DIR", str(tmp_path / "audit"))
    monkeypatch.setenv("LIFECYCLE_AUDIT_KEY", str(_key(tmp_path)))
    monkeypatch.delenv("LIFECYCLE_MODEL", raising=False)  # `audit verify` covers every model
    audit = AuditLog.for_model(SAMPLE_MODEL.name)
    for n in range(5):
        audit.append("promotion", {"approver": f"person-{n}", "reason": "ok"}, version=f"v{n}")
    return audit


def _key(tmp_path: Path) -> Path:
    key = tmp_path / "audit.key"
    key.write_text("0" * 63 + "1")
    key.chmod(0o600)
    return key


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_clean_log_verifies(
    log: AuditLog, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    report = log.verify()
    assert report.ok and report.records == 5
    assert log.path == log.path.parent / "breast_cancer.jsonl"
    assert [r.version for r in log.records()] == ["v0", "v1", "v2", "v3", "v4"]
    assert all(r.data["model"] == "breast_cancer" for r in log.records())  # named out of context
    assert main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert f"breast_cancer: {log.path}: 5 record(s) verify" in out
    # Every declared model's log is verified; each model's chain is its own.
    assert f"diabetes: {log.path.parent / 'diabetes.jsonl'}: 0 record(s) verify" in out
    # --model verifies that model's log alone (the env var: --model sets it for the process).
    monkeypatch.setenv("LIFECYCLE_MODEL", "breast_cancer")
    assert main(["--model", "breast_cancer", "audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert "breast_cancer: " in out and "diabetes" not in out


@pytest.mark.parametrize("fault", AUDIT_TAMPERING, ids=[f.name for f in AUDIT_TAMPERING])
def test_tampering_is_detected_and_named(
    log: AuditLog, capsys: pytest.CaptureFixture[str], fault: Fault
) -> None:
    expected = fault.expected
    log.path.write_bytes(b"".join(fault.value(_lines(log.path))))
    report = log.verify()
    assert not report.ok, fault.name
    assert any(expected in problem for problem in report.problems), report.problems
    # Each cause named once, not a cascade of wrong positions and broken links after it.
    assert len(report.problems) == (2 if fault.name == "audit log: swapped records" else 1), (
        report.problems
    )
    assert main(["audit", "verify"]) == 1
    out, err = capsys.readouterr()
    assert expected in err
    assert "breast_cancer: " in err and "diabetes: " in out  # the broken log is named by model
    before = log.path.read_bytes()
    with pytest.raises(AuditError, match="refusing to append"):
        log.append("promotion", {"approver": "a", "reason": "r"}, version="v9")
    assert log.path.read_bytes() == before  # nothing is added on top of a broken log


def test_another_key_does_not_verify(
    log: AuditLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other.key"
    other.write_text("f" * 64)
    monkeypatch.setenv("LIFECYCLE_AUDIT_KEY", str(other))
    report = log.verify()
    assert len(report.problems) == 5
    assert "record 0 (line 1): not written with the audit key" in report.problems[0]


def test_missing_key_is_a_clear_error(
    log: AuditLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFECYCLE_AUDIT_KEY", str(tmp_path / "absent.key"))
    with pytest.raises(AuditError, match="set LIFECYCLE_AUDIT_KEY"):
        log.verify()


def test_concurrent_writers_extend_one_chain(
    log: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    fault = case("concurrency", "audit writers")
    script = (
        "import sys\n"
        "from lifecycle_pipeline.lineage.audit import AuditLog\n"
        "for n in range(20):\n"
        "    AuditLog.for_model('breast_cancer').append(\n"
        "        'replay', {'writer': sys.argv[1], 'n': n}, version='v'\n"
        "    )\n"
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(w)], env=dict(os.environ))
        for w in range(4)
    ]
    assert all(w.wait(timeout=120) == 0 for w in writers)
    capsys.readouterr()
    assert main(["audit", "verify"]) == 0
    out, err = capsys.readouterr()
    assert fault.shown_in(out), out + err  # 5 + 4 x 20 records in one chain
    seen = [(r.data["writer"], r.data["n"]) for r in log.records() if r.kind == "replay"]
    assert sorted(seen) == sorted((str(w), n) for w in range(4) for n in range(20))


def test_dev_key_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIFECYCLE_AUDIT_KEY", raising=False)
    monkeypatch.setenv("LIFECYCLE_HOME", str(tmp_path / "home"))
    AuditLog(tmp_path / "log.jsonl").append("replay", {"n": 1})
    key = tmp_path / "home" / "keys" / "audit.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert len(key.read_text().strip()) == 64


def test_a_run_is_recorded_once_even_when_synced_twice(log: AuditLog) -> None:
    first = log.append_run_once("run", {"run_id": "r-1", "status": "SUCCESS"}, "v1")
    again = log.append_run_once("run", {"run_id": "r-1", "status": "SUCCESS"}, "v1")
    assert first is not None and again is None
    assert [r.data["run_id"] for r in log.records() if r.kind == "run"] == ["r-1"]
    assert log.verify().ok


def test_a_record_of_another_model_is_named_in_its_log(
    log: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two models' logs swapped: each chain verifies on its own and every record carries the
    key, so only the model each record names shows whose it is, before and after one more
    record is written on top of the swapped log."""
    fault = case("coverage", "another model's records in a log")
    other = AuditLog.for_model("diabetes")
    for n in range(2):
        other.append("run", {"run_id": f"d-{n}", "status": "SUCCESS"}, version="diabetes-v1")
    shutil.copy(other.path, log.path)  # before the sample's first promotion: a swap
    report = log.verify()
    assert fault.shown_in("\n".join(report.problems)), report.problems
    assert len(report.problems) == 2  # each foreign record, once
    with pytest.raises(AuditError, match="refusing to append"):
        log.append("promotion", {"approver": "a", "reason": "r"}, version="v9")
    # A writer that did not check (the code before this check) added the model's own record.
    AuditLog(log.path).append("promotion", {"model": SAMPLE_MODEL.name, "approver": "a",
                                            "reason": "r"}, version="v9")  # fmt: skip
    report = log.verify()
    assert fault.shown_in("\n".join(report.problems)), report.problems
    assert not any("record 2" in problem for problem in report.problems)  # its own: not named
    assert other.verify().ok  # the other model's own log still verifies
    capsys.readouterr()
    assert main(["audit", "verify"]) == 1
    assert fault.shown_in(capsys.readouterr().err)
