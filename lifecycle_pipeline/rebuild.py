"""`lifecycle instance rebuild`: a Dagster instance rebuilt from the evidence that survives.

A SQLite instance keeps every fact twice or more: each run's events in its own shard
(``history/runs/<run_id>.db``), every asset, check and run-status event again in the index
(``history/runs/index.db``), and each finished run, with every materialization, check verdict,
tag and run config, once more in the model's audit log, whose promotion and rollback records
hold what the run-less ``production_model`` events carried. ``dagster instance reindex`` only
rebuilds secondary indexes, so a lost index loses every version. Here each store is taken from
its best surviving source:

- events of a run: its shard when whole, else the index's copies, else its audit record;
- run-less events: the run-less shard, else the index, else the audit log's governance records;
- runs: ``runs.db`` when whole (copied), else the audit records and the run-status events;
- dynamic partitions: the index's own table when whole, else every partition an event names;
- schedule storage: copied when whole, else empty (sensors restart from their declared state).

Everything is written into a staging folder through Dagster's own storage classes, in the
original order of events, and swapped in only when complete; the old folders are moved into a
dated folder beside them, never deleted.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle_pipeline.doctor import (
    StorageLayout,
    damaged_files,
    read_only,
    run_of,
    sqlite_problem,
)
from lifecycle_pipeline.errors import LifecycleError

if TYPE_CHECKING:
    import dagster as dg
    from dagster._core.events.log import EventLogEntry

    from lifecycle_pipeline.declaration import LoadedDeclaration
    from lifecycle_pipeline.lineage.audit import AuditLog, Record

IN_PROGRESS = ("QUEUED", "STARTING", "STARTED", "CANCELING")
HEARTBEAT_FRESH = timedelta(minutes=2)
FOLDERS = ("history", "schedules")
END_EVENTS = {"SUCCESS": "RUN_SUCCESS", "FAILURE": "RUN_FAILURE", "CANCELED": "RUN_CANCELED"}


class RebuildError(LifecycleError, RuntimeError):
    """The instance cannot be rebuilt now (in use, or its sources are unusable)."""


@dataclass
class RebuildOutcome:
    """What was damaged, where each store came from, what could not come back."""

    home: Path
    kept_aside: Path
    damaged: dict[Path, str]
    restored: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"instance {self.home} rebuilt"]
        lines += [f"damaged: {path}: {what}" for path, what in self.damaged.items()]
        if not self.damaged:
            lines.append("damaged: none found; rebuilt anyway from the same sources")
        lines += [f"restored: {line}" for line in self.restored]
        lines += [f"lost: {line}" for line in self.lost]
        lines.append(f"kept aside: {self.kept_aside}")
        lines.append("next: `lifecycle doctor` checks the result")
        return "\n".join(lines)


# ------------------------------------------------------------------ reading what survives


def _entries(rows: Iterable[tuple[Any, ...]]) -> list[EventLogEntry]:
    from dagster._core.events.log import EventLogEntry
    from dagster._serdes import deserialize_value

    return [deserialize_value(row[-1], EventLogEntry) for row in rows]


def _shard_events(path: Path) -> list[EventLogEntry]:
    with read_only(path) as connection:
        return _entries(connection.execute("SELECT event FROM event_logs ORDER BY id"))


def _index_events(path: Path) -> dict[str, list[EventLogEntry]]:
    with read_only(path) as connection:
        rows = connection.execute("SELECT run_id, event FROM event_logs ORDER BY id").fetchall()
    found: dict[str, list[EventLogEntry]] = {}
    for run_id, entry in zip((r[0] for r in rows), _entries(rows), strict=True):
        found.setdefault(run_id or "", []).append(entry)
    return found


def _index_partitions(path: Path) -> dict[str, list[str]]:
    with read_only(path) as connection:
        rows = connection.execute(
            "SELECT partitions_def_name, partition FROM dynamic_partitions ORDER BY id"
        ).fetchall()
    found: dict[str, list[str]] = {}
    for name, key in rows:
        found.setdefault(str(name), []).append(str(key))
    return found


def _run_ids(path: Path) -> list[str]:
    with read_only(path) as connection:
        return [str(r[0]) for r in connection.execute("SELECT run_id FROM runs ORDER BY id")]


@dataclass
class AuditEvidence:
    """Every verified audit log's run records and governance changes."""

    runs: dict[str, Record] = field(default_factory=dict)
    changes: list[tuple[Record, AuditLog]] = field(default_factory=list)

    @classmethod
    def load(cls, lost: list[str]) -> AuditEvidence:
        from lifecycle_pipeline.lineage.audit import AuditLog, audit_dir

        evidence = cls()
        folder = audit_dir()
        for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
            log = AuditLog(path, path.stem)
            report = log.verify()
            if not report.ok:
                lost.append(
                    f"{path} does not verify, so nothing was taken from it "
                    f"(`lifecycle --model {path.stem} audit verify`)"
                )
                continue
            for record in log.records(verify=False):
                if record.kind == "run":
                    evidence.runs[str(record.data["run_id"])] = record
                elif record.kind in ("promotion", "rollback"):
                    evidence.changes.append((record, log))
        return evidence


# ------------------------------------------------------------------ events from the audit log


def _entry(run_id: str, job: str, event: Any, when: float, message: str) -> EventLogEntry:
    from dagster._core.events.log import EventLogEntry

    return EventLogEntry(
        error_info=None,
        level=logging.INFO,
        user_message=message,
        run_id=run_id,
        timestamp=when,
        step_key=None,
        job_name=job,
        dagster_event=event,
    )


def _metadata(values: dict[str, Any]) -> dict[str, Any]:
    import dagster as dg

    return {
        k: dg.MetadataValue.json(v) if isinstance(v, dict | list) else v
        for k, v in values.items()
        if v is not None
    }


def _events_of_run(record: Record) -> list[EventLogEntry]:
    """A run's materializations and check verdicts as its audit record holds them (the log
    keeps metadata as JSON: tables and schemas come back as their text)."""
    import dagster as dg
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData

    data = record.data
    run_id, job = str(data["run_id"]), str(data["job"])
    when = float(data.get("ended") or record.when.timestamp())
    note = "rebuilt from audit record"
    entries = []
    for made in data.get("materializations", []):
        materialization = dg.AssetMaterialization(
            asset_key=dg.AssetKey.from_user_string(made["asset"]),
            partition=made.get("partition"),
            metadata=_metadata(made.get("metadata") or {}),
        )
        event = DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
            job_name=job,
            event_specific_data=StepMaterializationData(materialization),
        )
        entries.append(_entry(run_id, job, event, when, f"{note} {record.seq}"))
    for check in data.get("checks", []):
        asset, name = str(check["check"]).split(":", 1)
        evaluation = dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey.from_user_string(asset),
            check_name=name,
            passed=bool(check["passed"]),
            metadata=_metadata(check.get("metadata") or {}),
            description=check.get("description") or None,
        )
        event = DagsterEvent(
            event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION.value,
            job_name=job,
            event_specific_data=evaluation,
        )
        entries.append(_entry(run_id, job, event, when, f"{note} {record.seq}"))
    return entries


def _governance_event(record: Record, log: AuditLog) -> EventLogEntry:
    """The run-less ``production_model`` materialization `governance._change` reported for
    this promotion or rollback, with the same metadata."""
    import dagster as dg
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

    from lifecycle_pipeline.audit_anchor import PRODUCTION_ASSET

    data, action = record.data, record.kind
    model = str(data.get("model") or log.model)
    materialization = dg.AssetMaterialization(
        asset_key=dg.AssetKey([model, PRODUCTION_ASSET]),
        description=f"{action} of {model} {record.version} by {data['approver']}: {data['reason']}",
        metadata={
            "action": action,
            "model": model,
            "version": str(record.version),
            "approver": data["approver"],
            "reason": data["reason"],
            "previous": data.get("previous") or "",
            "package/uri": dg.MetadataValue.path(data["package_uri"]),
            "package/sha256": data["package_sha256"],
            "model/fingerprint": data["fingerprint"],
            "dvc/md5": data["data_md5"],
            "code/commit": data["code_commit"],
            # A change written in two phases was reported under its intent record.
            "audit/seq": data.get("intent_seq", record.seq),
            "audit/hash": data.get("intent_hash", record.hash),
            "audit/log": str(log.path.resolve()),
            "lineage": dg.MetadataValue.json(data.get("runs") or {}),
        },
    )
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name=RUNLESS_JOB_NAME,
        event_specific_data=StepMaterializationData(materialization),
    )
    message = f"rebuilt from audit record {record.seq}"
    return _entry(RUNLESS_RUN_ID, RUNLESS_JOB_NAME, event, record.when.timestamp(), message)


# ------------------------------------------------------------------ refusing while in use


def _in_use(layout: StorageLayout, runs_whole: bool) -> list[str]:
    """Why rebuilding now would lose writes: runs in progress, a live daemon, open files."""
    reasons: list[str] = []
    if runs_whole:
        with read_only(layout.runs_db) as connection:
            marks = ",".join("?" * len(IN_PROGRESS))
            for run_id, status in connection.execute(
                f"SELECT run_id, status FROM runs WHERE status IN ({marks})", IN_PROGRESS
            ):
                reasons.append(
                    f"run {run_id} is {status}: wait for it to finish, or, if its worker died, "
                    f"`lifecycle runs recover {run_id}`"
                )
            try:
                beats = connection.execute(
                    "SELECT daemon_type, timestamp FROM daemon_heartbeats"
                ).fetchall()
            except sqlite3.DatabaseError:
                beats = []
        now = datetime.now(tz=UTC).replace(tzinfo=None)
        for daemon, stamp in beats:
            age = now - datetime.fromisoformat(str(stamp))
            if age < HEARTBEAT_FRESH:
                reasons.append(
                    f"dagster-daemon ({daemon}) wrote a heartbeat {int(age.total_seconds())} s "
                    "ago: stop the daemon (and the webserver) first"
                )
    folders = tuple(str(layout.base / name) + os.sep for name in FOLDERS)
    proc = Path("/proc")
    for process in proc.iterdir() if proc.is_dir() else []:
        if not process.name.isdigit() or int(process.name) == os.getpid():
            continue
        try:
            for fd in (process / "fd").iterdir():
                target = str(fd.readlink())
                if target.startswith(folders):
                    reasons.append(f"process {process.name} has {target} open: stop it first")
                    break
        except OSError:  # gone, or another user's
            continue
    return reasons


# ------------------------------------------------------------------ the rebuild


def _copy(source: Path, target: Path) -> None:
    """A whole database copied page by page (SQLite's backup API), WAL contents included."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with read_only(source) as reader, closing(sqlite3.connect(target)) as writer:
        reader.backup(writer)


def _partition_sets(models: list[LoadedDeclaration]) -> dict[str, str]:
    """Asset key (user string) -> its dynamic partitions definition, from the definitions."""
    import dagster as dg

    from lifecycle_pipeline.definitions import model_assets

    found: dict[str, str] = {}
    for model in models:
        built = model_assets(model)
        for definition in [*built.lifecycle, built.drift_monitor]:
            partitions = definition.partitions_def
            if isinstance(partitions, dg.DynamicPartitionsDefinition) and partitions.name:
                for key in definition.keys:
                    found[key.to_user_string()] = partitions.name
    return found


def _partitions_named(
    events: list[EventLogEntry], partition_sets: dict[str, str]
) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for entry in events:
        event = entry.dagster_event
        if event is None or event.asset_key is None:
            continue
        partition = event.partition  # None for events of no partition
        name = partition_sets.get(event.asset_key.to_user_string())
        if name and partition and partition not in found.setdefault(name, []):
            found[name].append(partition)
    return found


def _add_runs(
    instance: dg.DagsterInstance,
    events: dict[str, list[EventLogEntry]],
    audit: AuditEvidence,
    outcome: RebuildOutcome,
) -> int:
    """Every run the run storage lacks, from its audit record and its run-status events."""
    import dagster as dg
    from dagster._core.events import (
        EVENT_TYPE_TO_PIPELINE_RUN_STATUS,
        DagsterEvent,
        DagsterEventType,
    )

    present = set(instance.get_run_ids())
    pending = []
    for run_id in set(events) | set(audit.runs):
        if not run_id or run_id in present:
            continue
        own = events.get(run_id, [])
        record = audit.runs.get(run_id)
        created = min([e.timestamp for e in own] or [record.when.timestamp() if record else 0.0])
        pending.append((created, run_id, own, record))
    for created, run_id, own, record in sorted(pending, key=lambda item: item[:2]):
        job = (
            str(record.data["job"]) if record else next((e.job_name for e in own if e.job_name), "")
        )
        if not job:
            outcome.lost.append(f"run {run_id}: neither its job nor its status survives")
            continue
        tags = dict(record.data.get("tags") or {}) if record else {}
        partitions = {e.dagster_event.partition for e in own if e.dagster_event} - {None}
        if len(partitions) == 1 and "dagster/partition" not in tags:
            tags["dagster/partition"] = str(next(iter(partitions)))
        config = dict(record.data.get("run_config") or {}) if record else {}
        if record is None or "run_config" not in record.data:
            outcome.lost.append(
                f"run {run_id}: its run config (not in the audit log); reproducing it uses "
                "the defaults"
            )
        changes = [
            (e.timestamp, e.dagster_event)
            for e in own
            if e.dagster_event is not None
            and e.dagster_event.event_type in EVENT_TYPE_TO_PIPELINE_RUN_STATUS
        ]
        if not any(change.event_type == DagsterEventType.RUN_START for _, change in changes):
            source = (
                "its other run-status events survive"
                if changes
                else "no run-status event survives; it is restored from its audit record with "
                "its status and end time"
                if record is not None
                else "no run-status event survives"
            )
            outcome.lost.append(f"run {run_id}: its start time and RUN_START event ({source})")
        status = dg.DagsterRunStatus.NOT_STARTED
        if not changes and record is not None:
            status = dg.DagsterRunStatus(str(record.data["status"]))
        run = dg.DagsterRun(
            job_name=job, run_id=run_id, run_config=config, tags=tags, status=status
        )
        instance.run_storage.add_historical_run(run, datetime.fromtimestamp(created, tz=UTC))
        for when, change in changes:  # status, start and end times as they happened
            instance.run_storage.handle_run_event(
                run_id, change, datetime.fromtimestamp(when, tz=UTC)
            )
        ended = record.data.get("ended") if record else None
        if not changes and record is not None and ended and str(status.value) in END_EVENTS:
            end = DagsterEvent(
                event_type_value=DagsterEventType[END_EVENTS[str(status.value)]].value,
                job_name=job,
            )
            instance.run_storage.handle_run_event(
                run_id, end, datetime.fromtimestamp(float(ended), tz=UTC)
            )
    return len(pending)


def _gather_events(
    layout: StorageLayout,
    damaged: dict[Path, str],
    audit: AuditEvidence,
    known_runs: set[str],
    outcome: RebuildOutcome,
) -> dict[str, list[EventLogEntry]]:
    """Each run's events (and the run-less ones) from its best surviving source."""
    shards = {run_of(p): p for p in layout.shards() if p not in damaged}
    index = _index_events(layout.index_db) if layout.index_db not in damaged else {}
    runs = set(shards) | set(index) | set(audit.runs) | known_runs | {""}
    runs |= {run_of(p) for p in damaged if p.parent == layout.event_dir and p != layout.index_db}
    chosen: dict[str, list[EventLogEntry]] = {}
    counts: dict[str, int] = {}
    for run_id in sorted(runs):
        name = f"run {run_id}" if run_id else "run-less events (promotions, rollbacks)"
        if run_id in shards:
            chosen[run_id], source = _shard_events(shards[run_id]), "their own file"
        elif index.get(run_id):
            chosen[run_id], source = index[run_id], "the index"
            if run_id:  # the run-less log holds asset events only: the index has them all
                outcome.lost.append(
                    f"{name}: step logs (its event log was damaged; its asset, check and "
                    "run-status events came from the index)"
                )
        elif run_id and run_id in audit.runs:
            chosen[run_id], source = _events_of_run(audit.runs[run_id]), "the audit log"
            outcome.lost.append(
                f"{name}: step logs and planned-asset events (restored from its audit "
                "record: materializations and check verdicts)"
            )
        elif not run_id and audit.changes:
            chosen[run_id] = [_governance_event(r, log) for r, log in audit.changes]
            source = "the audit log"
        else:
            if run_id in {run_of(p) for p in damaged}:
                outcome.lost.append(f"{name}: its event log was damaged and no copy survives")
            continue
        counts[source] = counts.get(source, 0) + 1
    outcome.restored.append(
        "events: " + ", ".join(f"{n} log(s) from {source}" for source, n in sorted(counts.items()))
    )
    return chosen


def rebuild(home: Path, models: list[LoadedDeclaration]) -> RebuildOutcome:
    """Rebuild ``home``'s storage; see the module docstring for what comes from where."""
    import dagster as dg

    layout = StorageLayout.of(home)
    damaged = damaged_files(layout)
    runs_whole = layout.runs_db.exists() and layout.runs_db not in damaged
    busy = _in_use(layout, runs_whole)
    if busy:
        raise RebuildError(
            f"the instance at {home} is in use; rebuild refused, nothing was changed:\n  - "
            + "\n  - ".join(busy)
        )
    if not layout.history.is_dir():
        raise RebuildError(f"{layout.history} does not exist: nothing ran yet, nothing to rebuild")
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = layout.base / f"before-rebuild-{stamp}"
    staging = layout.base / f".rebuild-{stamp}"
    if aside.exists() or staging.exists():
        raise RebuildError(f"{aside} already exists: a rebuild ran this second; wait and retry")
    outcome = RebuildOutcome(home=home, kept_aside=aside, damaged=damaged)
    audit = AuditEvidence.load(outcome.lost)
    known_runs = set(_run_ids(layout.runs_db)) if runs_whole else set()
    events = _gather_events(layout, damaged, audit, known_runs, outcome)
    ordered = sorted(
        ((entry.timestamp, n, entry) for n, entry in enumerate(e for run in events.values()
                                                                for e in run)),
        key=lambda item: item[:2],
    )  # fmt: skip

    staging.mkdir()
    try:
        (staging / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
        if runs_whole:
            _copy(layout.runs_db, staging / "history" / "runs.db")
            outcome.restored.append(f"runs: {layout.runs_db} copied")
        schedules_whole = layout.schedules_db.exists() and layout.schedules_db not in damaged
        if schedules_whole:
            _copy(layout.schedules_db, staging / "schedules" / "schedules.db")
            outcome.restored.append(f"sensor and schedule state: {layout.schedules_db} copied")
        elif layout.schedules_db in damaged:
            outcome.lost.append(
                "sensor and schedule state, cursors and tick history: each sensor and schedule "
                "starts again from its declared default status"
            )
        with dg.DagsterInstance.from_config(str(staging)) as instance:
            for _, _, entry in ordered:
                instance.event_log_storage.store_event(entry)
            added = _add_runs(instance, events, audit, outcome)
            if added:
                outcome.restored.append(
                    f"runs: {added} from their audit records and run-status events"
                )
            if layout.index_db not in damaged and layout.index_db.exists():
                partitions = _index_partitions(layout.index_db)
                origin = "the index"
            else:
                partitions = _partitions_named([e for _, _, e in ordered], _partition_sets(models))
                origin = "the partitions their events name"
                outcome.lost.append(
                    "dynamic partitions no run ever used (a sensor adds them again on its next "
                    "tick)"
                )
            for name, keys in partitions.items():
                instance.add_dynamic_partitions(name, keys)
            outcome.restored.append(
                f"{len(ordered)} event(s); "
                + ", ".join(f"{len(k)} partition(s) of {n}" for n, k in sorted(partitions.items()))
                + f" from {origin}"
            )
        staged = StorageLayout(home=staging, base=staging)
        broken = {p: w for p in staged.files() if (w := sqlite_problem(p)) and w != "missing"}
        if broken:
            raise RebuildError(
                f"the rebuilt storage in {staging} does not check out ({broken}); nothing was "
                "swapped in, the instance is as it was"
            )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # ours alone: nothing was swapped in yet
        raise
    # The swap: two renames per folder on one file system; the old folders stay whole.
    aside.mkdir()
    for name in FOLDERS:
        if (layout.base / name).exists():
            (layout.base / name).rename(aside / name)
    for name in FOLDERS:
        if (staging / name).exists():
            (staging / name).rename(layout.base / name)
    shutil.rmtree(staging)  # what is left is the staging instance's own scratch
    return outcome
