"""Promotions and rollbacks read back from the audit log, without importing Dagster.

``lifecycle status`` and ``lifecycle history`` answer from the audit log, once it verifies
against the instance's copy of its governance changes and its checkpoints (``audit_anchor``);
keeping these readers apart from governance.py (which needs the lineage, artifact and pandas
modules to trace materializations) keeps those commands to the instance and the log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.lineage.audit import AuditLog, Record

CHANGES = ("promotion", "rollback")


class GovernanceError(LifecycleError, RuntimeError):
    """A promotion or rollback is refused; the message lists what is missing."""


@dataclass(frozen=True)
class Change:
    """One promotion or rollback, read back from the audit log."""

    action: str
    version: str
    time: datetime
    approver: str
    reason: str
    previous: str | None
    package_sha256: str
    package_uri: str
    fingerprint: str
    seq: int

    @classmethod
    def from_record(cls, record: Record) -> Change:
        data = record.data
        return cls(
            action=record.kind,
            version=str(record.version),
            time=record.when,
            approver=str(data["approver"]),
            reason=str(data["reason"]),
            previous=data.get("previous"),
            package_sha256=str(data["package_sha256"]),
            package_uri=str(data["package_uri"]),
            fingerprint=str(data["fingerprint"]),
            seq=record.seq,
        )

    def describe(self) -> str:
        return (
            f"{self.time.isoformat(timespec='seconds')}  {self.action:<9}  {self.version}  "
            f"by {self.approver}: {self.reason}  (package {self.package_sha256[:12]}, "
            f"model {self.fingerprint[:16]}, replaced {self.previous or '-'})"
        )


def history(log: AuditLog) -> list[Change]:
    return [Change.from_record(r) for r in log.records() if r.kind in CHANGES]


def serving_at(log: AuditLog, when: datetime) -> Change | None:
    """The change in force at ``when`` (None before the first promotion)."""
    current = None
    for change in history(log):
        if change.time <= when:
            current = change
    return current


def status_lines(log: AuditLog) -> list[str]:
    current = serving_at(log, datetime.now(tz=UTC))
    if current is None:
        return ["no model has been promoted to production yet"]
    return [
        f"serving   {current.version} since {current.time.isoformat(timespec='seconds')}",
        f"by        {current.approver} ({current.action}): {current.reason}",
        f"package   sha256 {current.package_sha256}",
        f"model     fingerprint {current.fingerprint}",
    ]


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; without a zone it means UTC."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise GovernanceError(
            f"--at {text!r} is not an ISO 8601 time, e.g. 2026-11-26T09:30:00Z"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def to_json(changes: list[Change], models: list[str] | None = None) -> str:
    """The changes as JSON; with ``models`` (one name per change) each names its model."""
    named: list[str | None] = list(models) if models else [None] * len(changes)
    return json.dumps(
        [
            {**c.__dict__, "time": c.time.isoformat(), **({"model": m} if m else {})}
            for c, m in zip(changes, named, strict=True)
        ],
        indent=2,
        sort_keys=True,
    )
