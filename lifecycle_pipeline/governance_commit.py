"""A promotion or rollback written to three stores so that a crash leaves it whole or named.

A governance change lives in the model's audit log, in the Dagster instance (a run-less
``production_model`` materialization) and in a signed checkpoint of the log's head. No write
spans the three, so they are ordered, each step with a failpoint after it:

1. an ``intent`` record in the log, holding the whole change (``governance.intent_written``);
2. the ``production_model`` event, naming the intent's sequence number and hash
   (``governance.event_reported``);
3. the commit record (kind ``promotion`` or ``rollback``, with ``intent_seq``): from here on
   the change is in force for every reader of the log (``governance.committed``);
4. a signed checkpoint of the head.

Why this order: readers (status, history, replay) take only commit records, so a change is
never "serving" in the log before the instance holds it (the instance is the step most likely
to fail: a damaged or unreachable storage), and the intent record makes every earlier crash
visible in the one store a crash cannot lose, the fsynced log. The state after a crash is one
of three, each named by ``audit verify``, ``status`` and ``doctor`` with the command that
resolves it, and resolved by ``settle`` (``audit recover``, and the next promotion or
rollback of that model, first thing under the log's governance lock):

- an intent without an event: the change never took effect anywhere a user looks; it is
  **withdrawn** (a ``withdrawal`` record naming the intent), since its evidence may no longer
  hold and nobody saw it serve;
- an intent with its event: the instance (and so the UI) already shows it serving; it is
  **completed** with the commit record the crash cut off, marked ``completed_by`` recovery;
- a commit record no checkpoint witnesses yet: the checkpoint is written.

A change whose event the instance refuses (an exception from the instance) is withdrawn at
once by the command itself, which then fails: the exit status says it did not take effect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import dagster as dg

from lifecycle_pipeline.audit_anchor import PRODUCTION_ASSET
from lifecycle_pipeline.declaration import LoadedDeclaration
from lifecycle_pipeline.lineage.audit import AuditLog, Record
from lifecycle_pipeline.lineage.query import metadata_values

CHANGES = ("promotion", "rollback")
# Every problem this module names carries this phrase, so doctor can point at its fix.
INCOMPLETE = "incomplete governance change"


def _name(model: LoadedDeclaration | str) -> str:
    return model if isinstance(model, str) else model.name


def recover_command(model: LoadedDeclaration | str) -> str:
    return f"`lifecycle --model {_name(model)} audit recover`"


def reported_events(
    instance: dg.DagsterInstance, model: LoadedDeclaration | str, log: AuditLog
) -> dict[int, str]:
    """The audit sequence numbers (and hashes) this log's changes hold in the instance."""
    here = str(log.path.resolve())
    key = dg.AssetKey([_name(model), PRODUCTION_ASSET])
    found: dict[int, str] = {}
    cursor = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key), limit=1000, cursor=cursor
        )
        for event in page.records:
            meta = metadata_values(event)
            if meta.get("audit/log") == here and "audit/seq" in meta:
                found[int(str(meta["audit/seq"]))] = str(meta.get("audit/hash"))
        if not page.has_more:
            return found
        cursor = page.cursor


def _witnessed_up_to(log: AuditLog) -> int:
    """The highest record a checkpoint beside the log names (-1: none); their signatures and
    hashes are checked by ``checkpoint_problems``, here only their reach counts."""
    from lifecycle_pipeline.audit_checkpoint import found_checkpoints

    seqs = []
    for path in found_checkpoints(log):
        try:
            seqs.append(int(json.loads(path.read_text(encoding="utf-8"))["checkpoint"]["seq"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an unreadable checkpoint is checkpoint_problems' to name
    return max(seqs, default=-1)


@dataclass(frozen=True)
class Pending:
    """One change a crash (or a refused instance write) left unfinished."""

    intent: Record | None  # the unresolved intent; None: a commit lacks only its checkpoint
    commit: Record | None
    in_instance: bool

    @property
    def what(self) -> str:
        record = self.intent or self.commit
        assert record is not None
        action = record.data.get("action", record.kind)
        return f"the {action} of {record.version}"

    def problem(self, model: LoadedDeclaration | str) -> str:
        fix = recover_command(model)
        if self.intent is not None and self.in_instance:
            return (
                f"record {self.intent.seq}: {INCOMPLETE}: {self.what} is in the Dagster instance "
                "(production_model event) but has no commit record in the log, so the log "
                f"does not show it serving; {fix} completes it"
            )
        if self.intent is not None:
            return (
                f"record {self.intent.seq}: {INCOMPLETE}: {self.what} was begun (intent record) "
                "but never reached the Dagster instance nor a commit record; it is not in "
                f"force; {fix} withdraws it"
            )
        assert self.commit is not None
        done = (
            "withdrawn in the log"
            if self.commit.kind == "withdrawal"
            else ("committed in the log and the instance")
        )
        return (
            f"record {self.commit.seq}: {INCOMPLETE}: {self.what} is {done} but no signed "
            f"checkpoint witnesses it; {fix} writes the checkpoint"
        )


def pending_changes(
    instance: dg.DagsterInstance, model: LoadedDeclaration | str, log: AuditLog
) -> tuple[list[Pending], list[str]]:
    """Unfinished changes, and contradictions no crash causes (a committed change the
    instance lacks, a withdrawn one it holds): those are named, never settled."""
    records = log.records(verify=False)
    events = reported_events(instance, model, log)
    resolved: dict[int, Record] = {
        int(r.data["intent_seq"]): r
        for r in records
        if (r.kind in CHANGES or r.kind == "withdrawal") and "intent_seq" in r.data
    }
    pending: list[Pending] = []
    contradictions: list[str] = []
    for record in records:
        if record.kind != "intent":
            continue
        closing = resolved.get(record.seq)
        held = events.get(record.seq) == record.hash
        what = f"the {record.data.get('action')} of {record.version}"
        if closing is None:
            pending.append(Pending(record, None, held))
        elif closing.kind in CHANGES and not held:
            contradictions.append(
                f"record {closing.seq}: commits {what} (intent record {record.seq}), but the "
                "Dagster instance holds no production_model event for it: the instance lost "
                "it; `lifecycle instance rebuild` restores it from the log"
            )
        elif closing.kind == "withdrawal" and held:
            contradictions.append(
                f"record {closing.seq}: withdraws {what} (intent record {record.seq}), but the "
                "Dagster instance holds its production_model event, so the UI shows it serving "
                "while the log does not"
            )
    commits = [r for r in records if r.kind in (*CHANGES, "withdrawal") and "intent_seq" in r.data]
    if commits and not pending and commits[-1].seq > _witnessed_up_to(log):
        pending.append(Pending(None, commits[-1], True))
    return pending, contradictions


def incomplete_problems(
    instance: dg.DagsterInstance, model: LoadedDeclaration | str, log: AuditLog
) -> list[str]:
    """What ``audit verify``, ``status`` and ``doctor`` report about unfinished changes."""
    if not log.path.exists():
        return []
    pending, contradictions = pending_changes(instance, model, log)
    return [p.problem(model) for p in pending] + contradictions


def withdraw(log: AuditLog, intent: Record, why: str) -> Record:
    """Append the withdrawal of ``intent``, then sign the head: the log says it never served."""
    from lifecycle_pipeline.audit_checkpoint import write_checkpoint

    record = log.append(
        "withdrawal",
        {
            "action": intent.data.get("action"),
            "intent_seq": intent.seq,
            "intent_hash": intent.hash,
            "reason": why,
        },
        version=intent.version,
    )
    write_checkpoint(log)
    return record


def commit_record(log: AuditLog, intent: Record, extra: dict[str, Any] | None = None) -> Record:
    """Append the record that puts ``intent`` in force (its own data, the intent it closes)."""
    data = {k: v for k, v in intent.data.items() if k not in ("action", "model")}
    return log.append(
        str(intent.data["action"]),
        {**data, "intent_seq": intent.seq, "intent_hash": intent.hash, **(extra or {})},
        version=intent.version,
    )


def settle_locked(
    instance: dg.DagsterInstance, model: LoadedDeclaration | str, log: AuditLog
) -> list[str]:
    """Complete or withdraw every unfinished change; the caller holds ``log.governing()``.

    Returns one line per change settled, saying which was done and as which record. A log
    that does not verify, or disagrees with the instance's copy or a checkpoint, is left alone:
    a crash between the writes causes neither, so it is tampering or damage, and nothing is
    written on top of it (the caller refuses, naming the problems).
    """
    from lifecycle_pipeline.audit_anchor import anchor_problems
    from lifecycle_pipeline.audit_checkpoint import checkpoint_problems, write_checkpoint

    if not log.path.exists() or not log.verify().ok:
        return []
    if anchor_problems(instance, model, log) or checkpoint_problems(log):
        return []
    pending, _ = pending_changes(instance, model, log)
    done: list[str] = []
    for change in pending:
        if change.intent is not None and change.in_instance:
            record = commit_record(
                log,
                change.intent,
                {"completed_by": "recovery: the command was stopped after the instance "
                 "recorded the change and before its commit record"},
            )  # fmt: skip
            write_checkpoint(log)
            done.append(
                f"completed {change.what}: intent record {change.intent.seq} was in the "
                f"instance; committed as record {record.seq}"
            )
        elif change.intent is not None:
            record = withdraw(
                log,
                change.intent,
                "recovery: the command was stopped before the instance recorded the change",
            )
            done.append(
                f"withdrew {change.what}: intent record {change.intent.seq} never reached the "
                f"instance; withdrawn as record {record.seq}"
            )
        else:
            assert change.commit is not None
            path = write_checkpoint(log)
            done.append(
                f"completed {change.what}: record {change.commit.seq} is now witnessed by "
                f"checkpoint {path}"
            )
    return done


def settle(
    instance: dg.DagsterInstance, model: LoadedDeclaration | str, log: AuditLog
) -> list[str]:
    """``settle_locked`` under the log's governance lock (``audit recover``, the CLI's
    promote and rollback before they decide anything)."""
    with log.governing():
        return settle_locked(instance, model, log)
