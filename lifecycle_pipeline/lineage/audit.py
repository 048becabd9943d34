"""The audit trail: an append-only, hash-chained and keyed log of lifecycle events.

Each record holds its position, the previous record's hash, its own hash over all of that, and
an HMAC of the hash under the audit key. The chain makes an edited, deleted, reordered or
inserted record visible at its position; the HMAC makes a record forged by someone who can
write the file but does not hold the key visible too (a plain hash chain can be recomputed
by anyone). Dagster's event log holds the same facts for the UI; this file is the evidence.

Writers serialize on an exclusive ``flock`` and fsync every record, so concurrent processes
on one host (or on a shared POSIX file system with working locks) extend one chain. A crash
mid-write leaves at most a torn last line, which verification reports; it is never skipped.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lifecycle_pipeline.errors import LifecycleError
from lifecycle_pipeline.failpoints import ENV as FAILPOINT_ENV
from lifecycle_pipeline.failpoints import failpoint
from lifecycle_pipeline.lineage.hashing import canonical_json, sha256_bytes
from lifecycle_pipeline.settings import Settings

GENESIS = "0" * 64
KINDS = (
    "run",  # a finished Dagster run: materializations with lineage, check verdicts, reason
    "promotion",
    "rollback",
    "reproduction",
    "replay",
    "recovery",  # a torn last record (a writer killed mid-append) moved aside, with its digest
    "intent",  # a promotion or rollback begun: not in force until its commit record follows
    "withdrawal",  # an intent that never reached the instance, withdrawn (governance_commit)
)


class AuditError(LifecycleError, RuntimeError):
    """The audit log or its key is missing, unreadable or does not verify."""


def audit_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The folder of the audit logs: ``$LIFECYCLE_AUDIT_DIR``, else ``<home>/audit``."""
    env = os.environ if environ is None else environ
    configured = env.get("LIFECYCLE_AUDIT_DIR")
    return Path(configured) if configured else Settings.from_env(env).home / "audit"


def audit_path(model: str, environ: Mapping[str, str] | None = None) -> Path:
    """One model's audit log: each model has its own hash chain, so one model's promotions,
    rollbacks and runs never change another's audit view."""
    return audit_dir(environ) / f"{model}.jsonl"


def dev_audit_key_path() -> Path:
    """Where the development audit key lives (only where ``LIFECYCLE_DEV_KEYS=1``)."""
    return Settings.from_env().home / "keys" / "audit.key"


def audit_key(create: bool = True) -> bytes:
    """The HMAC key: the file ``LIFECYCLE_AUDIT_KEY`` names. Without it, refused, unless the
    deployment allows development keys (``LIFECYCLE_DEV_KEYS=1``: the demo, the tests), where
    a development key is made once (0600) under ``$LIFECYCLE_HOME/keys``: a key created
    silently beside the logs would let whoever can write them forge records too."""
    from lifecycle_pipeline.resources.keys import dev_keys_allowed, how_to_configure

    configured = os.environ.get("LIFECYCLE_AUDIT_KEY")
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise AuditError(
                f"audit key {path} not found; set LIFECYCLE_AUDIT_KEY to the team's key file."
            )
        return path.read_bytes().strip()
    if not dev_keys_allowed():
        raise AuditError(how_to_configure("The audit log's HMAC key (LIFECYCLE_AUDIT_KEY)"))
    path = dev_audit_key_path()
    if path.is_file():
        return path.read_bytes().strip()
    if not create:
        raise AuditError(
            f"development audit key {path} not found; the logs it keyed cannot be verified "
            "without it (set LIFECYCLE_AUDIT_KEY to the key that wrote them)."
        )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=".audit-key-", dir=path.parent))
    candidate = staging / path.name
    descriptor = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(32))
    try:
        os.link(candidate, path)  # fails if another process created the key first
    except FileExistsError:
        pass
    finally:
        shutil.rmtree(staging)
    return path.read_bytes().strip()


def _digest(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k not in ("hash", "mac")}
    return sha256_bytes(canonical_json(body))


def _mac(key: bytes, digest: str) -> str:
    return hmac.new(key, digest.encode("ascii"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Record:
    seq: int
    time: str
    kind: str
    version: str | None
    data: dict[str, Any]
    prev: str
    hash: str

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Record:
        return cls(
            seq=int(raw["seq"]),
            time=str(raw["time"]),
            kind=str(raw["kind"]),
            version=raw.get("version"),
            data=dict(raw["data"]),
            prev=str(raw["prev"]),
            hash=str(raw["hash"]),
        )

    @property
    def when(self) -> datetime:
        return datetime.fromisoformat(self.time)


@dataclass
class VerifyReport:
    path: str
    records: int = 0
    problems: list[str] = field(default_factory=list)
    head: str = GENESIS

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self) -> str:
        if self.ok:
            return f"{self.path}: {self.records} record(s) verify; head {self.head[:16]}"
        lines = [f"{self.path}: NOT VERIFIED ({len(self.problems)} problem(s))"]
        return "\n".join(lines + [f"  {p}" for p in self.problems])


def _sequence_problems(records: list[Record]) -> list[str]:
    """Gaps, duplicates and reordering, each named once at its cause.

    Every record carries its position, so one deleted record is one gap ("record 2 is missing"),
    not a "wrong position" at every record after it; records that are merely out of place are
    named as such, and a second copy of a record as an insertion.
    """
    problems: list[str] = []
    present = {record.seq for record in records}
    seen: set[int] = set()
    expected = 0
    for position, record in enumerate(records):
        where = f"record {record.seq} (line {position + 1})"
        if record.seq in seen:
            problems.append(f"{where}: a second copy of record {record.seq}: it was inserted")
        elif record.seq > expected and not present & set(range(expected, record.seq)):
            gone = (
                f"record {expected} is"
                if record.seq == expected + 1
                else f"records {expected}-{record.seq - 1} are"
            )
            problems.append(f"{gone} missing before line {position + 1}: deleted from the log")
        elif record.seq != expected:
            problems.append(f"{where}: out of order: records were reordered")
        seen.add(record.seq)
        expected = max(expected, record.seq + 1)
    return problems


class AuditLog:
    """One audit log file; cheap to construct, every call re-reads the file."""

    def __init__(self, path: Path, model: str | None = None) -> None:
        self.path = path
        self.model = model

    @classmethod
    def for_model(cls, model: str) -> AuditLog:
        """The log of one declared model (``audit_path``); every record it appends names the
        model, so a record read out of context still says whose it is."""
        return cls(audit_path(model), model)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with (self.path.parent / f".{self.path.name}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextmanager
    def governing(self) -> Iterator[None]:
        """Held across a whole promotion or rollback of this log's model, from reading what
        serves to the signed checkpoint: two changes at once would both read the same
        "previous" and record a stale predecessor. A lock file of its own, apart from the
        append lock, so runs and replays keep appending while a change is being decided."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with (self.path.parent / f".{self.path.name}.governance.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _lines(self) -> list[bytes]:
        if not self.path.exists():
            return []
        return self.path.read_bytes().split(b"\n")

    def append(
        self, kind: str, data: dict[str, Any], version: str | None = None, when: str | None = None
    ) -> Record:
        """Append one record, chained to the current head; refuse to extend a broken log."""
        return self._append(kind, [(data, version)], when, once_per_run=False)[0]

    def append_run_once(
        self, kind: str, data: dict[str, Any], version: str | None = None
    ) -> Record | None:
        """Append unless a record of ``kind`` already holds ``data["run_id"]`` (then None).

        Decided under the lock, so a sensor and a command syncing at once record a run once.
        """
        added = self._append(kind, [(data, version)], None, once_per_run=True)
        return added[0] if added else None

    def append_runs_once(
        self, kind: str, entries: list[tuple[dict[str, Any], str | None]]
    ) -> list[Record]:
        """``append_run_once`` for many records in one pass: the log is verified and synced to
        disk once, not once per record (each verification reads and re-hashes the whole log)."""
        return self._append(kind, entries, None, once_per_run=True) if entries else []

    def _append(
        self,
        kind: str,
        entries: list[tuple[dict[str, Any], str | None]],
        when: str | None,
        once_per_run: bool,
    ) -> list[Record]:
        if kind not in KINDS:
            raise AuditError(f"unknown audit record kind {kind!r}; one of {', '.join(KINDS)}")
        key = audit_key()
        with self._locked():
            report = self._verify(key)
            if not report.ok:
                raise AuditError(
                    "refusing to append to an audit log that does not verify:\n" + report.render()
                )
            if once_per_run:
                held = {r.data.get("run_id") for r in self.records(verify=False) if r.kind == kind}
                fresh = []
                for data, version in entries:
                    if data["run_id"] not in held:
                        held.add(data["run_id"])
                        fresh.append((data, version))
                entries = fresh
            added: list[Record] = []
            head, seq = report.head, report.records
            lines: list[bytes] = []
            for data, version in entries:
                raw: dict[str, Any] = {
                    "seq": seq,
                    "time": when or datetime.now(tz=UTC).isoformat(timespec="microseconds"),
                    "kind": kind,
                    "version": version,
                    "data": {"model": self.model, **data} if self.model else data,
                    "prev": head,
                }
                raw["hash"] = _digest(raw)
                raw["mac"] = _mac(key, raw["hash"])
                lines.append(canonical_json(raw) + b"\n")
                added.append(Record.from_dict(raw))
                head, seq = raw["hash"], seq + 1
            if not lines:
                return added
            with self.path.open("ab") as handle:
                for line in lines:
                    if os.environ.get(FAILPOINT_ENV):
                        handle.write(line[: len(line) // 2])
                        handle.flush()
                        failpoint("audit.half_appended")
                        handle.write(line[len(line) // 2 :])
                    else:
                        handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            return added

    def recover_torn(self) -> Record:
        """Move a torn last record aside and append a record saying so; refuse anything else.

        A writer killed mid-append leaves bytes without a line end after the last complete
        record. Those bytes are kept in a side file (never deleted: they are evidence), the log
        is cut back to its last complete record, and a ``recovery`` record naming the bytes'
        length and sha256 continues the chain. Every other problem (an edit, a gap, a forgery)
        is tampering, not a crash, and is refused here.
        """
        key = audit_key(create=False)
        with self._locked():
            report = self._verify(key)
            raw = self.path.read_bytes() if self.path.exists() else b""
            cut = raw.rfind(b"\n") + 1
            torn = raw[cut:]
            if not torn:
                raise AuditError(f"{self.path}: no torn record to recover; nothing was changed")
            others = [p for p in report.problems if ": torn (no line end)" not in p]
            if others:
                raise AuditError(
                    "refusing to recover: the log has problems a crash does not cause:\n"
                    + report.render()
                )
            digest = sha256_bytes(torn)
            aside = self.path.with_name(f"{self.path.name}.torn-{report.records}-{digest[:16]}")
            with aside.open("xb") as handle:
                handle.write(torn)
                handle.flush()
                os.fsync(handle.fileno())
            with self.path.open("r+b") as handle:
                handle.truncate(cut)
                handle.flush()
                os.fsync(handle.fileno())
        return self.append(
            "recovery",
            {
                "torn_bytes": len(torn),
                "torn_sha256": digest,
                "kept_at": str(aside),
                "reason": "a writer stopped in the middle of a record (killed or crashed)",
            },
        )

    def verify(self) -> VerifyReport:
        return self._verify(audit_key(create=False) if self.path.exists() else b"")

    def _verify(self, key: bytes) -> VerifyReport:
        report = VerifyReport(path=str(self.path))
        lines = self._lines()
        if lines and lines[-1] == b"":
            lines.pop()
        elif lines:
            report.problems.append(
                f"record {len(lines) - 1}: torn (no line end): a write was interrupted; "
                "`lifecycle audit recover` moves the torn bytes aside and records that it did"
            )
            lines.pop()
        parsed: list[tuple[Record, str, dict[str, Any]]] = []
        for position, line in enumerate(lines):
            try:
                raw = json.loads(line)
                parsed.append((Record.from_dict(raw), str(raw["mac"]), raw))
            except (ValueError, KeyError, TypeError) as exc:
                where = f"record {position} (line {position + 1})"
                report.problems.append(f"{where}: unreadable ({exc})")
                return report
        report.problems += _sequence_problems([record for record, _, _ in parsed])
        flawed: set[int] = set()  # records whose own content is wrong: the next one's broken
        by_seq: dict[int, Record] = {}  # link follows from them and is not named again
        for position, (record, mac, raw) in enumerate(parsed):
            where = f"record {record.seq} (line {position + 1})"
            by_seq.setdefault(record.seq, record)
            if _digest(raw) != record.hash:
                report.problems.append(f"{where}: content was edited (hash does not match)")
                flawed.add(record.seq)
            elif not hmac.compare_digest(_mac(key, record.hash), mac):
                report.problems.append(
                    f"{where}: not written with the audit key (forged or re-hashed)"
                )
                flawed.add(record.seq)
            elif self.model is not None and record.data.get("model") != self.model:
                # Every record carries the key and chains, so a log swapped with (or copied
                # from) another model's verifies as a chain: only the model it names tells.
                named = record.data.get("model")
                whose = f"belongs to model {named}" if named else "names no model"
                report.problems.append(
                    f"{where}: {whose}, not to {self.model}: another model's records are in "
                    "this log"
                )
            report.head = record.hash
            report.records = position + 1
        for position, (record, _, _) in enumerate(parsed):
            # Chained to its predecessor by sequence number, wherever that one stands, so a
            # reordering or a gap (named above) is not reported again as broken links.
            before = by_seq.get(record.seq - 1) if record.seq else None
            expected = before.hash if before else GENESIS if record.seq == 0 else None
            if expected is None or record.seq - 1 in flawed or record.prev == expected:
                continue
            report.problems.append(
                f"record {record.seq} (line {position + 1}): does not chain to the record before "
                f"it (prev {record.prev[:16]} != {expected[:16]}): a record was replaced"
            )
        return report

    def require_intact(self, action: str) -> None:
        """Refuse ``action`` up front when the log does not verify.

        A governance change ends in an append, which a broken log refuses anyway; checking
        first names the log as the reason instead of whatever else the action meets on the way.
        """
        report = self.verify()
        if not report.ok:
            raise AuditError(
                f"{action} refused: the audit log does not verify, and nothing is ever recorded "
                f"on top of a broken log:\n{report.render()}"
            )

    def records(self, verify: bool = True) -> list[Record]:
        """Every record, oldest first; by default only from a log that verifies."""
        if verify:
            report = self.verify()
            if not report.ok:
                raise AuditError(report.render())
        lines = [line for line in self._lines() if line]
        return [Record.from_dict(json.loads(line)) for line in lines]
