"""A governance change across its three stores, exercised directly (`make mutate`): the audit
log held against the Dagster instance's copy of its changes (``audit_anchor``), and the
changes a crash left unfinished, named and settled (``governance_commit``).

A real keyed log and real signed checkpoints in a temporary folder, and a real ephemeral
Dagster instance into which the ``production_model`` events are reported as a promotion
reports them; no lifecycle is run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lifecycle_pipeline.audit_anchor import (
    PRODUCTION_ASSET,
    anchor_problems,
    refusal,
    require_anchored,
    resolution,
    verify_anchored,
)
from lifecycle_pipeline.audit_checkpoint import found_checkpoints, write_checkpoint
from lifecycle_pipeline.governance_commit import (
    INCOMPLETE,
    Pending,
    _witnessed_up_to,
    commit_record,
    incomplete_problems,
    pending_changes,
    recover_command,
    reported_events,
    settle,
    settle_locked,
    withdraw,
)
from lifecycle_pipeline.lineage.audit import AuditError, AuditLog, Record, VerifyReport
from tests.conftest import SAMPLE_MODEL, own_audit_keys

FIX = "`lifecycle --model m audit recover`"


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AuditLog:
    """An empty log of model ``m``, its own audit key, development signing keys of its own."""
    own_audit_keys(tmp_path, monkeypatch)
    return AuditLog(tmp_path / "audit" / "m.jsonl", "m")


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as found:
        yield found


def report_event(
    instance: dg.DagsterInstance,
    log: AuditLog | Path,
    seq: Any,
    digest: str | None,
    model: str = "m",
    **extra: Any,
) -> None:
    """The run-less production_model event a promotion reports for its intent record."""
    path = log.path if isinstance(log, AuditLog) else log
    metadata = {"audit/log": str(path.resolve()), "action": "promotion", "version": "v1"}
    if seq is not None:
        metadata["audit/seq"] = seq
    if digest is not None:
        metadata["audit/hash"] = digest
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=dg.AssetKey([model, PRODUCTION_ASSET]), metadata={**metadata, **extra}
        )
    )


def intent(log: AuditLog, version: str = "v1", action: str = "promotion") -> Record:
    return log.append(
        "intent",
        {"action": action, "model": "m", "approver": "ana", "reason": "passes its gates"},
        version=version,
    )


def reported(instance: dg.DagsterInstance, log: AuditLog, record: Record) -> Record:
    report_event(instance, log, record.seq, record.hash, version=record.version)
    return record


# ----------------------------------------------------------------------------- names


def test_the_recover_command_names_the_model_given_by_name_or_declaration() -> None:
    assert recover_command("m") == FIX
    assert recover_command(SAMPLE_MODEL) == f"`lifecycle --model {SAMPLE_MODEL.name} audit recover`"


# ----------------------------------------------------------------- the instance's copies


def test_the_events_of_this_log_are_read_by_sequence_number(
    instance: dg.DagsterInstance, log: AuditLog, tmp_path: Path
) -> None:
    report_event(instance, log, 3, "h3")
    report_event(instance, log, "5", "h5")  # as text: metadata may come back as text
    report_event(instance, log, 7, None)
    report_event(instance, log, None, "h9")  # no sequence number: not a governance change
    report_event(instance, tmp_path / "other.jsonl", 4, "h4")  # another log's
    report_event(instance, log, 6, "h6", model="other")  # another model's asset
    assert reported_events(instance, "m", log) == {3: "h3", 5: "h5", 7: "None"}
    assert reported_events(instance, SAMPLE_MODEL, log) == {}


@pytest.fixture(scope="module")
def crowded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dg.DagsterInstance, AuditLog, Record]]:
    """A log's change whose production_model event (with another hash) is followed by a full
    page (1000) of another log's events of model ``m``: the instance lists the newest first,
    so the change's own event is found only by reading the next page."""
    folder = tmp_path_factory.mktemp("crowded")
    with pytest.MonkeyPatch.context() as env, dg.DagsterInstance.ephemeral() as found:
        (folder / "audit.key").write_text("1" * 64)
        env.setenv("LIFECYCLE_AUDIT_KEY", str(folder / "audit.key"))
        log = AuditLog(folder / "audit" / "m.jsonl", "m")
        begun = intent(log)
        report_event(found, log, begun.seq, "0" * 64)
        for seq in range(1000):
            report_event(found, folder / "elsewhere.jsonl", seq, f"{seq:064x}")
        yield found, log, begun


def test_the_instances_copies_are_read_past_the_first_page(
    crowded: tuple[dg.DagsterInstance, AuditLog, Record],
) -> None:
    instance, log, begun = crowded
    key = dg.AssetKey(["m", PRODUCTION_ASSET])
    first = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=1000)
    assert first.has_more  # the change's event is not on the first page
    assert reported_events(instance, "m", log) == {begun.seq: "0" * 64}
    assert anchor_problems(instance, "m", log) == [
        f"record {begun.seq}: the instance recorded hash {'0' * 16} for the promotion of v1 "
        f"(run-less event), the log holds {begun.hash[:16]}: the log was replaced"
    ]


def test_a_log_agreeing_with_the_instance_has_no_anchor_problems(
    instance: dg.DagsterInstance, log: AuditLog, tmp_path: Path
) -> None:
    assert anchor_problems(instance, "m", log) == []  # no log, no events
    first = reported(instance, log, intent(log))
    report_event(instance, tmp_path / "other.jsonl", first.seq, "x" * 64)
    report_event(instance, log, None, "y" * 64)
    report_event(instance, log, first.seq, "z" * 64, model="other")
    assert anchor_problems(instance, "m", log) == []


def test_records_the_instance_holds_but_the_log_lacks_or_holds_otherwise_are_named_sorted(
    instance: dg.DagsterInstance, log: AuditLog
) -> None:
    first = intent(log)
    second = intent(log, "v2")
    report_event(instance, log, 9, "a" * 64, action="rollback", version="v0")
    report_event(instance, log, second.seq, "b" * 64, version="v2")
    report_event(instance, log, first.seq, first.hash)
    report_event(instance, log.path.with_name("n.jsonl"), 0, "c" * 64)  # read first: skipped
    assert anchor_problems(instance, "m", log) == [
        f"record 1: the instance recorded hash {'b' * 16} for the promotion of v2 (run-less "
        f"event), the log holds {second.hash[:16]}: the log was replaced",
        "record 9, the rollback of v0 (run-less event), is recorded in the Dagster instance but "
        "missing from the log: the log was cut short, replaced or restored from an older copy",
    ]


def test_a_deleted_log_lacks_every_record_the_instance_holds(
    instance: dg.DagsterInstance, log: AuditLog
) -> None:
    reported(instance, log, intent(log))
    log.path.unlink()
    (problem,) = anchor_problems(instance, "m", log)
    assert problem.startswith("record 0, the promotion of v1 (run-less event), is recorded")


def test_unreadable_lines_of_the_log_are_left_to_verify(
    instance: dg.DagsterInstance, log: AuditLog
) -> None:
    first = reported(instance, log, intent(log))
    second = reported(instance, log, intent(log, "v2"))
    records = log.path.read_bytes()
    with log.path.open("ab") as handle:
        handle.write(b'not json\n{"seq": "x", "hash": "h"}\n{"hash": "h"}\n[1]\n{"seq": 1}')
    assert anchor_problems(instance, "m", log) == []
    log.path.write_bytes(b"torn\n" + records)  # one before every record
    assert anchor_problems(instance, "m", log) == []
    assert (first.seq, second.seq) == (0, 1)


# ------------------------------------------------------------- verification with evidence


def test_anchored_verification_adds_the_instance_checkpoints_and_unfinished_changes(
    instance: dg.DagsterInstance, log: AuditLog
) -> None:
    begun = intent(log)
    report = verify_anchored(instance, "m", log)
    assert report.records == 1
    assert report.problems == [
        f"record {begun.seq}: {INCOMPLETE}: the promotion of v1 was begun (intent record) but "
        "never reached the Dagster instance nor a commit record; it is not in force; "
        f"{FIX} withdraws it"
    ]
    report_event(instance, log, 4, "c" * 64)
    report = verify_anchored(instance, "m", log)
    assert [p[:9] for p in report.problems] == ["record 4,"]  # unfinished: named on a good log


def test_anchored_verification_passes_given_checkpoints_and_key_to_the_checkpoint_check(
    instance: dg.DagsterInstance, log: AuditLog, tmp_path: Path
) -> None:
    log.append("run", {"n": 0})
    log.append("run", {"n": 1})
    witness = write_checkpoint(log, folder=tmp_path / "bucket")  # not beside the log
    assert found_checkpoints(log) == []
    assert verify_anchored(instance, "m", log, [witness]).ok
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(lines[0])  # cut short: only the witness elsewhere can tell
    assert verify_anchored(instance, "m", log).ok
    (problem,) = verify_anchored(instance, "m", log, [witness]).problems
    assert problem.endswith("the log was cut short or restored from an older copy")
    assert str(witness) in problem
    key = ec.generate_private_key(ec.SECP256R1())
    other = tmp_path / "other.pub"
    other.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (problem,) = verify_anchored(instance, "m", log, [witness], other).problems
    assert f"signature does not verify with {other}" in problem


def test_a_log_that_does_not_verify_does_not_name_unfinished_changes(
    instance: dg.DagsterInstance, log: AuditLog
) -> None:
    intent(log)
    intent(log, "v2")
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(lines[1])  # record 0 deleted
    problems = verify_anchored(instance, "m", log).problems
    assert problems and not any(INCOMPLETE in p for p in problems)


@pytest.mark.parametrize(
    ("problem", "fix"),
    [
        ("record 3: torn (no line end): a write was interrupted", FIX),
        (f"record 2: {INCOMPLETE}: the promotion of v1 ...", FIX),
        (
            "record 1: belongs to model 'n', not to m: another model's records are in this log",
            "put each model's log back at its own path (/a/<model>.jsonl) from a backup; "
            "`lifecycle --model m audit verify` shows the details",
        ),
        (
            "record 1: hash differs",
            "restore /a/m.jsonl from a backup (never edit it by hand); "
            "`lifecycle --model m audit verify` shows the details",
        ),
    ],
)
def test_each_problem_is_said_with_what_resolves_it(problem: str, fix: str) -> None:
    assert resolution("m", Path("/a/m.jsonl"), problem) == fix


def test_a_refusal_names_the_action_the_problems_and_each_fix_once(log: AuditLog) -> None:
    report = VerifyReport(
        path=str(log.path),
        problems=["record 1: x", "record 2: torn (no line end): y", "record 3: z"],
    )
    assert refusal("promotion", SAMPLE_MODEL, log, report) == (
        f"promotion refused: the audit log of {SAMPLE_MODEL.name} does not verify against "
        "itself and its evidence (the instance's copy of its governance changes, its signed "
        "checkpoints); nothing is answered from it or recorded on top of it:\n"
        f"{report.render()}\n"
        f"fix: restore {log.path} from a backup (never edit it by hand); "
        f"`lifecycle --model {SAMPLE_MODEL.name} audit verify` shows the details\n"
        f"fix: `lifecycle --model {SAMPLE_MODEL.name} audit recover`"
    )


def test_commands_answer_only_from_an_anchored_log(
    instance: dg.DagsterInstance, log: AuditLog
) -> None:
    commit_record(log, reported(instance, log, intent(log)))
    write_checkpoint(log)
    report = require_anchored(instance, "m", log, "status")
    assert report.ok and report.records == 2
    report_event(instance, log, 5, "d" * 64)
    with pytest.raises(AuditError) as raised:
        require_anchored(instance, "m", log, "history")
    message = str(raised.value)
    assert message.startswith("history refused: the audit log of m does not verify")
    assert "record 5, the promotion of v1 (run-less event), is recorded" in message
    assert message.endswith(
        f"fix: restore {log.path} from a backup (never edit it by hand); "
        "`lifecycle --model m audit verify` shows the details"
    )


# -------------------------------------------------------------------- unfinished changes


def test_a_checkpoint_reach_is_its_highest_witnessed_record(log: AuditLog, tmp_path: Path) -> None:
    assert _witnessed_up_to(log) == -1
    log.append("run", {"n": 0})
    write_checkpoint(log)
    log.append("run", {"n": 1})
    log.append("run", {"n": 2})
    newest = write_checkpoint(log)
    assert _witnessed_up_to(log) == 2
    # Unreadable files sorted before and after the real ones are skipped, not the end.
    (newest.parent / "00-unreadable.json").write_text("{")
    (newest.parent / "00-no-seq.json").write_text('{"checkpoint": {}}')
    (newest.parent / "zz-list.json").write_text("[]")
    (newest.parent / "zz-text.json").write_text('{"checkpoint": {"seq": "x"}}')
    assert sorted(newest.parent.iterdir())[0].name == "00-no-seq.json"
    assert _witnessed_up_to(log) == 2


def _record(seq: int, kind: str, data: dict[str, Any], version: str = "v3") -> Record:
    return Record(seq, "t", kind, version, data, "p" * 64, "h" * 64)


def test_each_kind_of_unfinished_change_is_named_with_its_fix() -> None:
    begun = _record(4, "intent", {"action": "rollback"})
    assert Pending(begun, None, True).what == "the rollback of v3"
    assert Pending(begun, None, True).problem("m") == (
        f"record 4: {INCOMPLETE}: the rollback of v3 is in the Dagster instance "
        "(production_model event) but has no commit record in the log, so the log does not "
        f"show it serving; {FIX} completes it"
    )
    assert Pending(begun, None, False).problem("m") == (
        f"record 4: {INCOMPLETE}: the rollback of v3 was begun (intent record) but never "
        f"reached the Dagster instance nor a commit record; it is not in force; {FIX} "
        "withdraws it"
    )
    committed = _record(5, "promotion", {"intent_seq": 4})
    assert Pending(None, committed, True).what == "the promotion of v3"
    assert Pending(None, committed, True).problem("m") == (
        f"record 5: {INCOMPLETE}: the promotion of v3 is committed in the log and the instance "
        f"but no signed checkpoint witnesses it; {FIX} writes the checkpoint"
    )
    withdrawn = _record(6, "withdrawal", {"action": "promotion", "intent_seq": 4})
    assert Pending(None, withdrawn, True).problem(SAMPLE_MODEL) == (
        f"record 6: {INCOMPLETE}: the promotion of v3 is withdrawn in the log but no signed "
        f"checkpoint witnesses it; {recover_command(SAMPLE_MODEL)} writes the checkpoint"
    )


def test_an_intent_is_pending_and_in_the_instance_only_with_its_own_hash(
    instance: dg.DagsterInstance, log: AuditLog
) -> None:
    held = reported(instance, log, intent(log))
    lost = intent(log, "v2")
    report_event(instance, log, lost.seq, "e" * 64)  # another hash: not this intent's event
    assert pending_changes(instance, "m", log) == (
        [Pending(held, None, True), Pending(lost, None, False)],
        [],
    )
    assert incomplete_problems(instance, "m", log) == [
        Pending(held, None, True).problem("m"),
        Pending(lost, None, False).problem("m"),
    ]


def test_a_closed_change_is_pending_only_until_a_checkpoint_witnesses_it(
    instance: dg.DagsterInstance, log: AuditLog
) -> None:
    begun = reported(instance, log, intent(log))
    log.append("run", {"intent_seq": begun.seq})  # not a change: closes nothing
    assert pending_changes(instance, "m", log) == ([Pending(begun, None, True)], [])
    done = commit_record(log, begun)
    log.append("run", {"n": 1})
    assert pending_changes(instance, "m", log) == ([Pending(None, done, True)], [])
    write_checkpoint(log)
    assert pending_changes(instance, "m", log) == ([], [])
    assert incomplete_problems(instance, "m", log) == []


def test_only_the_newest_closed_change_waits_for_its_checkpoint_and_only_alone(
    instance: dg.DagsterInstance, log: AuditLog
) -> None:
    first = commit_record(log, reported(instance, log, intent(log)))
    write_checkpoint(log)
    withdrawn = withdraw(log, intent(log, "v2"), "stopped")
    assert withdrawn.seq > first.seq
    assert pending_changes(instance, "m", log) == ([], [])  # withdraw signs the head
    commit_record(log, reported(instance, log, intent(log, "v3")))  # not witnessed yet
    third = intent(log, "v4")
    # While an intent is pending, settling it writes the checkpoint: it alone is named.
    assert pending_changes(instance, "m", log) == ([Pending(third, None, False)], [])


def test_a_withdrawal_no_checkpoint_witnesses_is_pending(
    instance: dg.DagsterInstance, log: AuditLog
) -> None:
    begun = intent(log)
    withdrawn = log.append("withdrawal", {"action": "promotion", "intent_seq": begun.seq})
    assert pending_changes(instance, "m", log) == ([Pending(None, withdrawn, True)], [])


def test_unfinished_changes_are_read_from_a_log_that_does_not_verify(
    instance: dg.DagsterInstance, log: AuditLog
) -> None:
    """``doctor`` and ``audit verify`` still say what a crash left, beside the damage."""
    begun = intent(log)
    text = log.path.read_bytes()
    log.path.write_bytes(text.replace(b"its gates", b"its tests"))  # edited: no longer holds
    assert not log.verify().ok
    (pending,), _ = pending_changes(instance, "m", log)
    assert pending.intent is not None and pending.intent.seq == begun.seq


def test_contradictions_no_crash_causes_are_named_never_pending(
    instance: dg.DagsterInstance, log: AuditLog
) -> None:
    lost = intent(log)
    committed = commit_record(log, lost)  # committed, but the instance holds no event
    shown = reported(instance, log, intent(log, "v2", "rollback"))
    withdrawn = withdraw(log, shown, "refused")  # withdrawn, but the instance holds it
    pending, contradictions = pending_changes(instance, "m", log)
    assert pending == []
    assert contradictions == [
        f"record {committed.seq}: commits the promotion of v1 (intent record {lost.seq}), but "
        "the Dagster instance holds no production_model event for it: the instance lost it; "
        "`lifecycle instance rebuild` restores it from the log",
        f"record {withdrawn.seq}: withdraws the rollback of v2 (intent record {shown.seq}), "
        "but the Dagster instance holds its production_model event, so the UI shows it "
        "serving while the log does not",
    ]
    assert incomplete_problems(instance, "m", log) == contradictions


def test_no_log_no_unfinished_change(instance: dg.DagsterInstance, log: AuditLog) -> None:
    report_event(instance, log, 0, "f" * 64)
    assert incomplete_problems(instance, "m", log) == []
    assert not log.path.exists()


def test_a_withdrawal_names_the_intent_and_signs_the_head(log: AuditLog) -> None:
    begun = intent(log, "v2", "rollback")
    record = withdraw(log, begun, "the instance refused")
    assert (record.kind, record.version, record.seq) == ("withdrawal", "v2", begun.seq + 1)
    assert record.data == {
        "model": "m",
        "action": "rollback",
        "intent_seq": begun.seq,
        "intent_hash": begun.hash,
        "reason": "the instance refused",
    }
    assert log.records()[-1] == record
    assert _witnessed_up_to(log) == record.seq


def test_a_commit_record_carries_the_intents_data_and_names_it(log: AuditLog) -> None:
    shared = AuditLog(log.path.with_name("shared.jsonl"))  # a log that stamps no model
    begun = intent(shared, "v2", "rollback")
    assert begun.data["model"] == "m"
    record = commit_record(shared, begun, {"completed_by": "recovery"})
    assert (record.kind, record.version) == ("rollback", "v2")
    assert record.data == {
        "approver": "ana",
        "reason": "passes its gates",
        "intent_seq": begun.seq,
        "intent_hash": begun.hash,
        "completed_by": "recovery",
    }
    plain = commit_record(shared, intent(shared))
    assert plain.kind == "promotion" and "completed_by" not in plain.data
    assert shared.records()[-1] == plain
    assert _witnessed_up_to(shared) == -1  # the caller signs the head


# ------------------------------------------------------------------------------ settling


def test_settling_completes_withdraws_and_witnesses_each_change(
    instance: dg.DagsterInstance, log: AuditLog
) -> None:
    shown = reported(instance, log, intent(log))
    lost = intent(log, "v2", "rollback")
    done = settle(instance, "m", log)
    records = log.records()
    completed, withdrawn = records[2], records[3]
    assert done == [
        f"completed the promotion of v1: intent record {shown.seq} was in the instance; "
        f"committed as record {completed.seq}",
        f"withdrew the rollback of v2: intent record {lost.seq} never reached the instance; "
        f"withdrawn as record {withdrawn.seq}",
    ]
    assert completed.kind == "promotion" and completed.data["intent_seq"] == shown.seq
    assert completed.data["completed_by"] == (
        "recovery: the command was stopped after the instance recorded the change and before "
        "its commit record"
    )
    assert withdrawn.kind == "withdrawal" and withdrawn.data["intent_seq"] == lost.seq
    assert withdrawn.data["reason"] == (
        "recovery: the command was stopped before the instance recorded the change"
    )
    assert _witnessed_up_to(log) == withdrawn.seq
    assert verify_anchored(instance, "m", log).ok
    assert settle(instance, "m", log) == []


def test_settling_a_completed_change_checkpoints_it_right_away(
    instance: dg.DagsterInstance, log: AuditLog
) -> None:
    reported(instance, log, intent(log))
    with log.governing():
        (line,) = settle_locked(instance, "m", log)
    assert _witnessed_up_to(log) == 1
    assert line.startswith("completed the promotion of v1")


def test_settling_writes_the_checkpoint_a_commit_lacks(
    instance: dg.DagsterInstance, log: AuditLog
) -> None:
    done = commit_record(log, reported(instance, log, intent(log)))
    (line,) = settle(instance, "m", log)
    (checkpoint,) = found_checkpoints(log)
    assert line == (
        f"completed the promotion of v1: record {done.seq} is now witnessed by checkpoint "
        f"{checkpoint}"
    )
    assert _witnessed_up_to(log) == done.seq
    assert len(log.records()) == 2  # nothing appended


def test_nothing_is_settled_on_a_missing_or_damaged_log_or_one_its_evidence_contradicts(
    instance: dg.DagsterInstance, log: AuditLog
) -> None:
    assert settle(instance, "m", log) == []
    assert not log.path.exists()
    begun = intent(log)
    intent(log, "v2")
    original = log.path.read_bytes()
    log.path.write_bytes(original.replace(b'"ana"', b'"bob"', 1))  # edited: does not verify
    assert settle(instance, "m", log) == []
    assert log.path.read_bytes() == original.replace(b'"ana"', b'"bob"', 1)
    log.path.write_bytes(original)
    report_event(instance, log, 7, "a" * 64)  # the instance holds a record the log lacks
    assert settle(instance, "m", log) == []
    assert log.path.read_bytes() == original
    assert begun.seq == 0


def test_nothing_is_settled_on_a_log_a_checkpoint_contradicts(
    instance: dg.DagsterInstance, log: AuditLog
) -> None:
    intent(log)
    intent(log, "v2")
    write_checkpoint(log)
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(lines[0])  # cut short: verifies on its own, not against the witness
    assert log.verify().ok
    assert settle(instance, "m", log) == []
    assert log.path.read_bytes() == lines[0]
