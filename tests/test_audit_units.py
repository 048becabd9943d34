"""The audit log and the governance history read from it, exercised directly (`make mutate`).

Real logs in a temporary folder, keyed with a key file of the test's own; every assertion is
about what a reader of the log or of `lifecycle status`/`history` relies on.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lifecycle_pipeline.governance_log import (
    Change,
    GovernanceError,
    history,
    parse_time,
    serving_at,
    status_lines,
    to_json,
)
from lifecycle_pipeline.lineage.audit import (
    GENESIS,
    AuditError,
    AuditLog,
    Record,
    VerifyReport,
    audit_dir,
    audit_key,
    audit_path,
)

KEY = "0" * 63 + "1"


@pytest.fixture
def keyed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An audit folder and a key file for it, configured as a deployment would."""
    key = tmp_path / "audit.key"
    key.write_text(KEY + "\n")
    monkeypatch.setenv("LIFECYCLE_AUDIT_KEY", str(key))
    monkeypatch.setenv("LIFECYCLE_AUDIT_DIR", str(tmp_path / "audit"))
    return tmp_path / "audit"


def _change(version: str, when: datetime, **extra: str) -> dict[str, str]:
    return {
        "approver": f"approver-{version}",
        "reason": f"reason {version}",
        "package_sha256": "p" * 64,
        "package_uri": f"file:///packages/{version}",
        "fingerprint": "f" * 64,
        **extra,
    }


T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def _governed(keyed: Path) -> AuditLog:
    log = AuditLog.for_model("m")
    log.append("run", {"run_id": "r1"}, version="v1", when=T0.isoformat())
    log.append("promotion", _change("v1", T0), "v1", (T0 + timedelta(hours=1)).isoformat())
    log.append("replay", {"n": 1}, "v1", (T0 + timedelta(hours=2)).isoformat())
    log.append(
        "promotion", _change("v2", T0, previous="v1"), "v2", (T0 + timedelta(hours=3)).isoformat()
    )
    log.append(
        "rollback", _change("v1", T0, previous="v2"), "v1", (T0 + timedelta(hours=4)).isoformat()
    )
    return log


# ------------------------------------------------------------------------ governance_log


def test_history_holds_promotions_and_rollbacks_in_order_with_every_field(keyed: Path) -> None:
    changes = history(_governed(keyed))
    assert [(c.action, c.version, c.previous, c.seq) for c in changes] == [
        ("promotion", "v1", None, 1),
        ("promotion", "v2", "v1", 3),
        ("rollback", "v1", "v2", 4),
    ]
    first = changes[0]
    assert first == Change(
        action="promotion",
        version="v1",
        time=T0 + timedelta(hours=1),
        approver="approver-v1",
        reason="reason v1",
        previous=None,
        package_sha256="p" * 64,
        package_uri="file:///packages/v1",
        fingerprint="f" * 64,
        seq=1,
    )
    assert first.describe() == (
        "2026-01-01T10:00:00+00:00  promotion  v1  by approver-v1: reason v1  "
        f"(package {'p' * 12}, model {'f' * 16}, replaced -)"
    )
    assert changes[2].describe().startswith("2026-01-01T13:00:00+00:00  rollback   v1  by ")
    assert changes[2].describe().endswith("replaced v2)")


def test_what_served_at_a_time_is_the_last_change_up_to_then(keyed: Path) -> None:
    log = _governed(keyed)
    assert serving_at(log, T0) is None  # before the first promotion
    at_first = serving_at(log, T0 + timedelta(hours=1))  # the very moment of a change
    assert at_first is not None and (at_first.action, at_first.version) == ("promotion", "v1")
    between = serving_at(log, T0 + timedelta(hours=3, minutes=59))
    assert between is not None and between.version == "v2"
    latest = serving_at(log, T0 + timedelta(days=1))
    assert latest is not None and (latest.action, latest.version) == ("rollback", "v1")


def test_status_names_what_serves_by_whom_and_its_package(keyed: Path) -> None:
    assert status_lines(AuditLog.for_model("m")) == ["no model has been promoted to production yet"]
    assert status_lines(_governed(keyed)) == [
        "serving   v1 since 2026-01-01T13:00:00+00:00",
        "by        approver-v1 (rollback): reason v1",
        f"package   sha256 {'p' * 64}",
        f"model     fingerprint {'f' * 64}",
    ]


def test_times_are_iso_8601_and_utc_without_a_zone() -> None:
    assert parse_time("2026-11-26T09:30:00") == datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    zoned = parse_time("2026-11-26T09:30:00+02:00")
    assert zoned == datetime(2026, 11, 26, 7, 30, tzinfo=UTC)
    assert zoned.utcoffset() == timedelta(hours=2)
    with pytest.raises(GovernanceError) as raised:
        parse_time("yesterday")
    assert str(raised.value) == (
        "--at 'yesterday' is not an ISO 8601 time, e.g. 2026-11-26T09:30:00Z"
    )


def test_history_as_json_names_each_model_when_asked(keyed: Path) -> None:
    changes = history(_governed(keyed))[:2]
    plain = json.loads(to_json(changes))
    assert [c["version"] for c in plain] == ["v1", "v2"]
    assert plain[0]["time"] == "2026-01-01T10:00:00+00:00"
    assert "model" not in plain[0] and plain[1]["previous"] == "v1"
    assert plain[0]["package_uri"] == "file:///packages/v1"
    named = json.loads(to_json(changes, ["a", "b"]))
    assert [c["model"] for c in named] == ["a", "b"]
    text = to_json(changes)
    assert text.startswith("[\n  {\n") and text.index('"action"') < text.index('"approver"')
    assert text.index('"time"') < text.index('"version"')  # keys sorted
    with pytest.raises(ValueError):
        to_json(changes, ["only one"])


# ------------------------------------------------------------------------------- audit log


def test_the_audit_folder_and_each_models_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert audit_dir({"LIFECYCLE_AUDIT_DIR": str(tmp_path / "a")}) == tmp_path / "a"
    assert audit_dir({"LIFECYCLE_HOME": str(tmp_path / "h")}) == tmp_path / "h" / "audit"
    assert audit_path("m", {"LIFECYCLE_AUDIT_DIR": str(tmp_path)}) == tmp_path / "m.jsonl"
    monkeypatch.setenv("LIFECYCLE_AUDIT_DIR", str(tmp_path / "env"))
    assert audit_dir() == tmp_path / "env"
    log = AuditLog.for_model("m")
    assert (log.path, log.model) == (tmp_path / "env" / "m.jsonl", "m")


def test_the_configured_key_is_read_stripped_and_a_missing_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "k"
    key.write_text("  secret \n")
    monkeypatch.setenv("LIFECYCLE_AUDIT_KEY", str(key))
    assert audit_key() == b"secret"
    monkeypatch.setenv("LIFECYCLE_AUDIT_KEY", str(tmp_path / "absent"))
    with pytest.raises(AuditError) as raised:
        audit_key()
    assert str(raised.value) == (
        f"audit key {tmp_path / 'absent'} not found; set LIFECYCLE_AUDIT_KEY to the team's key "
        "file."
    )


def test_a_development_key_is_made_once_private_and_only_when_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIFECYCLE_AUDIT_KEY", raising=False)
    monkeypatch.setenv("LIFECYCLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LIFECYCLE_DEV_KEYS", "1")
    with pytest.raises(AuditError) as raised:
        audit_key(create=False)
    assert "development audit key" in str(raised.value) and "not found" in str(raised.value)
    assert not (tmp_path / "home" / "keys").exists()
    made = audit_key()
    path = tmp_path / "home" / "keys" / "audit.key"
    assert made == path.read_bytes() and len(made) == 64
    assert path.stat().st_mode & 0o777 == 0o600
    assert audit_key() == made and audit_key(create=False) == made
    assert sorted(p.name for p in path.parent.iterdir()) == ["audit.key"]  # no staging left
    monkeypatch.setenv("LIFECYCLE_DEV_KEYS", "0")
    with pytest.raises(AuditError, match="LIFECYCLE_AUDIT_KEY"):
        audit_key()


def test_records_chain_from_genesis_and_name_their_model(keyed: Path) -> None:
    log = AuditLog.for_model("m")
    first = log.append("run", {"run_id": "a"}, version="v1", when="2026-01-01T00:00:00+00:00")
    second = log.append("replay", {"n": 2})
    assert (first.seq, first.prev, first.version, first.time) == (
        0,
        GENESIS,
        "v1",
        "2026-01-01T00:00:00+00:00",
    )
    assert first.data == {"model": "m", "run_id": "a"}
    assert (second.seq, second.prev, second.version) == (1, first.hash, None)
    assert second.hash != first.hash and len(second.hash) == 64
    assert log.records() == [first, second]
    report = log.verify()
    assert (report.ok, report.records, report.head) == (True, 2, second.hash)
    assert report.render() == f"{log.path}: 2 record(s) verify; head {second.hash[:16]}"
    lines = log.path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3
    assert json.loads(lines[1])["mac"] != json.loads(lines[0])["mac"]
    unnamed = AuditLog(keyed / "plain.jsonl")
    assert unnamed.append("replay", {"n": 1}).data == {"n": 1}
    assert (
        AuditLog(keyed / "never.jsonl")
        .verify()
        .render()
        .endswith("0 record(s) verify; head 0000000000000000")
    )


def test_an_unknown_kind_is_refused_naming_the_kinds(keyed: Path) -> None:
    with pytest.raises(AuditError) as raised:
        AuditLog.for_model("m").append("promotoin", {})
    assert str(raised.value).startswith("unknown audit record kind 'promotoin'; one of run, ")
    assert not (keyed / "m.jsonl").exists()


def test_runs_are_recorded_once_in_one_pass(keyed: Path) -> None:
    log = AuditLog.for_model("m")
    assert log.append_runs_once("run", []) == []
    added = log.append_runs_once("run", [({"run_id": "a"}, "v1"), ({"run_id": "b"}, None)])
    assert [(r.seq, r.data["run_id"], r.version) for r in added] == [(0, "a", "v1"), (1, "b", None)]
    again = log.append_runs_once("run", [({"run_id": "b"}, None), ({"run_id": "c"}, "v2")])
    assert [(r.seq, r.data["run_id"]) for r in again] == [(2, "c")]
    assert log.append_runs_once("run", [({"run_id": "c"}, None), ({"run_id": "c"}, None)]) == []
    assert log.append_run_once("run", {"run_id": "a"}) is None
    once = log.append_run_once("replay", {"run_id": "a"})  # once per kind
    assert once is not None and once.seq == 3
    assert log.append_run_once("run", {"run_id": "d"}, "v3") == log.records()[-1]
    assert log.records()[-1].version == "v3"


def _five(keyed: Path) -> AuditLog:
    log = AuditLog.for_model("m")
    for n in range(5):
        log.append("promotion", {"n": n}, version=f"v{n}")
    return log


def _rewrite(log: AuditLog, lines: list[bytes]) -> None:
    log.path.write_bytes(b"".join(lines))


def _problems(log: AuditLog) -> list[str]:
    return log.verify().problems


def test_a_deleted_record_is_one_gap_named_once(keyed: Path) -> None:
    log = _five(keyed)
    lines = log.path.read_bytes().splitlines(keepends=True)
    _rewrite(log, lines[:2] + lines[3:])
    assert _problems(log) == ["record 2 is missing before line 3: deleted from the log"]
    _rewrite(log, lines[:1] + lines[4:])
    assert _problems(log) == ["records 1-3 are missing before line 2: deleted from the log"]
    _rewrite(log, lines[1:])
    assert _problems(log) == ["record 0 is missing before line 1: deleted from the log"]


def test_reordered_and_inserted_records_are_named_at_their_place(keyed: Path) -> None:
    log = _five(keyed)
    lines = log.path.read_bytes().splitlines(keepends=True)
    _rewrite(log, [lines[0], lines[2], lines[1], *lines[3:]])
    assert _problems(log) == [
        "record 2 (line 2): out of order: records were reordered",
        "record 1 (line 3): out of order: records were reordered",
    ]
    _rewrite(log, [*lines[:3], lines[1], *lines[3:]])
    assert _problems(log) == ["record 1 (line 4): a second copy of record 1: it was inserted"]


def test_an_edit_a_forgery_and_a_replaced_record_are_each_named(keyed: Path) -> None:
    log = _five(keyed)
    lines = log.path.read_bytes().splitlines(keepends=True)
    edited = json.loads(lines[1])
    edited["data"]["n"] = 99
    _rewrite(log, [lines[0], json.dumps(edited).encode() + b"\n", *lines[2:]])
    assert _problems(log) == ["record 1 (line 2): content was edited (hash does not match)"]
    # Re-hashed without the key: the chain to the next record breaks at the forged hash too,
    # but a flawed record's successor is not named again.
    from lifecycle_pipeline.lineage.audit import _digest

    edited["hash"] = _digest(edited)
    _rewrite(log, [lines[0], json.dumps(edited).encode() + b"\n", *lines[2:]])
    assert _problems(log) == [
        "record 1 (line 2): not written with the audit key (forged or re-hashed)"
    ]
    # A whole record replaced by a correctly keyed one of another chain: only the link says so.
    other = AuditLog(keyed / "other" / "m.jsonl", "m")
    for n in range(3):
        other.append("promotion", {"n": n + 10}, version="x")
    foreign = other.path.read_bytes().splitlines(keepends=True)[2]
    _rewrite(log, [*lines[:2], foreign, *lines[3:]])
    problems = _problems(log)
    assert len(problems) == 2
    assert problems[0].startswith(
        "record 2 (line 3): does not chain to the record before it (prev "
    )
    assert problems[0].endswith(": a record was replaced")
    assert problems[1].startswith("record 3 (line 4): does not chain to the record before it")
    report = log.verify()
    assert not report.ok and report.render().startswith(f"{log.path}: NOT VERIFIED (2 problem(s))")
    assert report.render().splitlines()[1] == f"  {problems[0]}"


def test_an_unreadable_record_stops_verification_there(keyed: Path) -> None:
    log = _five(keyed)
    lines = log.path.read_bytes().splitlines(keepends=True)
    _rewrite(log, [*lines[:2], b"{not json\n", *lines[3:]])
    report = log.verify()
    assert len(report.problems) == 1
    assert report.problems[0].startswith("record 2 (line 3): unreadable (")
    assert report.records == 0  # nothing after an unreadable line is vouched for
    _rewrite(log, [*lines[:2], b'{"seq": 2}\n', *lines[3:]])
    assert log.verify().problems[0].startswith("record 2 (line 3): unreadable (")


def test_another_models_record_is_named_in_a_models_log(keyed: Path) -> None:
    log = _five(keyed)
    other = AuditLog(keyed / "o" / "m.jsonl", "other")
    plain = AuditLog(keyed / "p" / "m.jsonl")
    for source in (other, plain):
        for n in range(5):
            source.append("promotion", {"n": n}, version=f"v{n}")
    log.path.write_bytes(other.path.read_bytes())
    problems = _problems(log)
    assert len(problems) == 5
    assert problems[0] == (
        "record 0 (line 1): belongs to model other, not to m: another model's records are in "
        "this log"
    )
    log.path.write_bytes(plain.path.read_bytes())
    assert _problems(log)[4].startswith("record 4 (line 5): names no model, not to m: ")
    assert plain.verify().ok  # a log of no model accepts any record


def test_a_broken_log_is_never_extended(keyed: Path) -> None:
    log = _five(keyed)
    lines = log.path.read_bytes().splitlines(keepends=True)
    _rewrite(log, lines[:2] + lines[3:])
    before = log.path.read_bytes()
    with pytest.raises(AuditError) as raised:
        log.append("replay", {})
    assert str(raised.value).startswith(
        "refusing to append to an audit log that does not verify:\n"
    )
    with pytest.raises(AuditError) as intact:
        log.require_intact("promotion of v9")
    assert str(intact.value).startswith(
        "promotion of v9 refused: the audit log does not verify, and nothing is ever recorded "
        f"on top of a broken log:\n{log.path}: NOT VERIFIED"
    )
    with pytest.raises(AuditError, match="NOT VERIFIED"):
        log.records()
    assert [r.seq for r in log.records(verify=False)] == [0, 1, 3, 4]
    assert log.path.read_bytes() == before
    _rewrite(log, lines)
    log.require_intact("promotion of v9")


def test_a_torn_last_record_is_moved_aside_and_the_chain_continues(keyed: Path) -> None:
    log = _five(keyed)
    whole = log.path.read_bytes()
    with pytest.raises(AuditError) as nothing:
        log.recover_torn()
    assert str(nothing.value) == f"{log.path}: no torn record to recover; nothing was changed"
    torn = b'{"seq": 5, "ti'
    log.path.write_bytes(whole + torn)
    report = log.verify()
    assert report.problems == [
        "record 5: torn (no line end): a write was interrupted; `lifecycle audit recover` "
        "moves the torn bytes aside and records that it did"
    ]
    assert report.records == 5
    recovery = log.recover_torn()
    from lifecycle_pipeline.lineage.hashing import sha256_bytes

    digest = sha256_bytes(torn)
    aside = log.path.with_name(f"m.jsonl.torn-5-{digest[:16]}")
    assert aside.read_bytes() == torn
    assert (recovery.kind, recovery.seq) == ("recovery", 5)
    assert recovery.data == {
        "model": "m",
        "torn_bytes": len(torn),
        "torn_sha256": digest,
        "kept_at": str(aside),
        "reason": "a writer stopped in the middle of a record (killed or crashed)",
    }
    assert log.path.read_bytes().startswith(whole) and log.verify().ok


def test_recovering_a_log_that_does_not_exist_changes_nothing(keyed: Path) -> None:
    log = AuditLog.for_model("m")
    with pytest.raises(AuditError, match="no torn record to recover; nothing was changed"):
        log.recover_torn()
    assert not log.path.exists()


def test_recovery_never_makes_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIFECYCLE_AUDIT_KEY", raising=False)
    monkeypatch.setenv("LIFECYCLE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LIFECYCLE_DEV_KEYS", "1")
    log = AuditLog(tmp_path / "m.jsonl", "m")
    log.path.write_bytes(b'{"seq": 0')
    with pytest.raises(AuditError, match="development audit key"):
        log.recover_torn()
    assert not (tmp_path / "home" / "keys").exists()


def test_a_torn_record_on_a_tampered_log_is_not_recovered(keyed: Path) -> None:
    log = _five(keyed)
    lines = log.path.read_bytes().splitlines(keepends=True)
    _rewrite(log, [*lines[:2], *lines[3:], b'{"seq"'])
    before = log.path.read_bytes()
    with pytest.raises(AuditError) as raised:
        log.recover_torn()
    assert str(raised.value).startswith(
        "refusing to recover: the log has problems a crash does not cause:\n"
    )
    assert log.path.read_bytes() == before
    assert [p.name for p in log.path.parent.iterdir() if ".torn-" in p.name] == []


def test_a_report_is_ok_only_without_problems() -> None:
    report = VerifyReport(path="x")
    assert report.ok and report.head == GENESIS and report.records == 0
    report.problems.append("p")
    assert not report.ok
    assert report.render() == "x: NOT VERIFIED (1 problem(s))\n  p"


def test_a_record_reads_its_time_with_its_zone() -> None:
    record = Record.from_dict(
        {
            "seq": "3",
            "time": "2026-01-01T10:00:00+00:00",
            "kind": "run",
            "data": {"a": 1},
            "prev": GENESIS,
            "hash": "h",
        }
    )
    assert record.seq == 3 and record.version is None
    assert record.when == datetime(2026, 1, 1, 10, tzinfo=UTC)


def test_the_append_lock_and_the_governance_lock_are_separate_files(keyed: Path) -> None:
    log = AuditLog.for_model("m")
    with log.governing():
        log.append("replay", {})  # appending while a change is being decided does not block
    names = sorted(p.name for p in keyed.iterdir())
    assert names == [".m.jsonl.governance.lock", ".m.jsonl.lock", "m.jsonl"]
    assert (keyed / ".m.jsonl.lock").stat().st_size == 0
